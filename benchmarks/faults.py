"""Fault injection for the kill-and-resume tests: stop a run at a known step, not after a sleep.

A test that kills a training process "0.4 s after epoch 1 was written" depends on the
machine's speed: on a fast machine the kill comes too late, on a slow one too early.
Instead the child process stops *itself* at an exact optimizer step:

- ``IMPON_TEST_KILL_AT="epoch:E:iteration:I"``: SIGKILL this process right after the I-th
  optimizer step (1-based) of epoch E, i.e. mid-epoch, before that epoch's rows are
  written: exactly what a power cut or an OOM kill does.
- ``IMPON_TEST_PAUSE_AT="epoch:E:iteration:I"``: at the same point, write the line
  ``IMPON_TEST_PAUSED <pid>`` to stderr and block until killed, so a test can act while the
  run is provably in the middle of training (e.g. try a second runner) and then kill it.
- ``IMPON_TEST_RUN=TEXT`` (optional): only runs whose run_id contains TEXT are affected,
  so a matrix test can stop inside its second run.

Nothing is installed when none of these is set (the normal case), so training code pays
nothing. The hooks wrap the trainer's ``begin_epoch``/``train_step`` from outside.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Callable, Mapping

from .errors import UserError

KILL_ENV = "IMPON_TEST_KILL_AT"
PAUSE_ENV = "IMPON_TEST_PAUSE_AT"
RUN_ENV = "IMPON_TEST_RUN"
PAUSED_LINE = "IMPON_TEST_PAUSED"


def parse_point(text: str) -> tuple[int, int]:
    """``"epoch:E:iteration:I"`` -> (E, I); ValueError with the expected form otherwise."""
    parts = text.strip().split(":")
    try:
        if len(parts) != 4 or parts[0] != "epoch" or parts[2] != "iteration":
            raise ValueError
        epoch, it = int(parts[1]), int(parts[3])
        if epoch < 1 or it < 1:
            raise ValueError
    except ValueError:
        raise ValueError(f"{text!r}: expected epoch:E:iteration:I with E, I >= 1") from None
    return epoch, it


def check_environ(environ: Mapping[str, str] | None = None) -> None:
    """Raise UserError if a fault variable is set but malformed.

    Called by the CLI before anything is written: a typo would otherwise fail every run
    at its setup (a ValueError in :func:`install`) instead of saying what is wrong.
    """
    env = os.environ if environ is None else environ
    for name in (KILL_ENV, PAUSE_ENV):
        if env.get(name):
            try:
                parse_point(env[name])
            except ValueError as e:
                raise UserError(f"environment variable {name}={e}; it is a test hook: "
                                f"fix it or unset it (unset {name})") from None


def _stop(action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    print(f"{PAUSED_LINE} {os.getpid()}", file=sys.stderr, flush=True)
    threading.Event().wait()  # blocks until the test kills this process


def install(trainer: Any, environ: dict[str, str] | None = None) -> None:
    """Wrap ``trainer.begin_epoch``/``train_step`` if a fault is requested for its run."""
    env = os.environ if environ is None else environ
    requests = [(a, env[k]) for a, k in (("kill", KILL_ENV), ("pause", PAUSE_ENV)) if env.get(k)]
    if not requests or env.get(RUN_ENV, "") not in trainer.spec.run_id:
        return
    points = {parse_point(text): action for action, text in requests}
    where = {"epoch": 0, "step": 0}
    begin: Callable[[int], None] = trainer.begin_epoch
    step: Callable[[float], Any] = trainer.train_step

    def begin_epoch(epoch: int) -> None:
        where["epoch"], where["step"] = epoch, 0
        begin(epoch)

    def train_step(lr: float) -> Any:
        out = step(lr)
        where["step"] += 1
        action = points.get((where["epoch"], where["step"]))
        if action:
            _stop(action)
        return out

    trainer.begin_epoch = begin_epoch
    trainer.train_step = train_step
