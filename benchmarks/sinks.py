"""Logger sinks: ``--log tensorboard`` and ``--log wandb`` on ``python -m benchmarks run``.

The CSVs stay the source of truth; a sink is a view of them. After every checkpoint (the
run's start and each finished epoch: the trainer's ``on_epoch`` callback) each sink is
brought up to date from what the run folder already holds: the new rows of
``iterations.csv`` (read from where the last call stopped; the losses reached the host
once per epoch, in one read-back, long before) and the epoch rows the checkpoint carries.
Nothing is added to the training step, so logging costs no host sync.

What is logged, at step = iteration (the epoch-0 row, before training, at step 0):

- per iteration: ``train/loss``, ``train/lr``;
- per epoch (at the epoch's last iteration): ``test/loss``, ``test/acc``, ``val/loss``,
  ``val/acc`` (with a validation split), ``train/epoch_loss`` (the epoch's mean),
  ``counters/backprops``, ``counters/forwards``, ``counters/diag_forwards``,
  ``seconds/train``, ``seconds/eval``, ``seconds/diag``, ``epoch``, and every extra column
  the sampler adds to ``epochs.csv`` as ``sampler/<column>``. Empty cells (NaN) are not
  logged.

Exactly once, also across kills and resumes: a sink logs only checkpointed rows and then
records the last step it logged in ``<sink folder>/impon_logged.json``. On (re)opening it
continues after that step, backfilling from the CSVs whatever it missed (a kill between a
checkpoint and the sink's write, or ``--log`` added when resuming). TensorBoard reopens
with ``purge_step`` = that step + 1, so points a killed process wrote after its last
record are hidden by TensorBoard's own readers. W&B resumes the same run id
(``resume="allow"``) and logs only later steps; it cannot delete points, so a kill in the
instant between handing an epoch to wandb and writing the record repeats that one epoch's
steps in the next session.

Files go into the run folder: ``<run>/tensorboard/`` (event files) and ``<run>/wandb/``.
W&B runs offline unless ``WANDB_MODE`` is set (``wandb sync <run>/wandb/offline-run-*``
uploads later); runs are grouped by matrix and tagged by arm, seed and dataset.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import math
import numbers
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from . import io
from .errors import UserError

SINKS = ("tensorboard", "wandb")
MARKER = "impon_logged.json"
WANDB_PROJECT = "impon-bench"

#: epochs.csv column -> logged name; any other column (the sampler's) is ``sampler/<col>``.
EPOCH_NAMES = {
    "epoch": "epoch", "train_loss": "train/epoch_loss", "test_loss": "test/loss",
    "test_acc": "test/acc", "val_loss": "val/loss", "val_acc": "val/acc",
    "backprops": "counters/backprops", "forwards": "counters/forwards",
    "diag_forwards": "counters/diag_forwards", "train_seconds": "seconds/train",
    "eval_seconds": "seconds/eval", "diag_seconds": "seconds/diag",
}


def check_available(names: Iterable[str]) -> None:
    """Raise a one-line UserError naming the extra to install if a sink's package is
    missing or cannot be imported. Called by the CLI before anything is written."""
    missing, broken = [], []
    for name in dict.fromkeys(names):
        try:
            importlib.import_module(name)  # the package itself: "tensorboard" / "wandb"
            if name == "tensorboard":
                importlib.import_module("torch.utils.tensorboard")
        except ImportError as e:
            (missing if _is_missing(e, name) else broken).append((name, e))
        except Exception as e:  # a broken install (e.g. a protobuf clash) says why
            broken.append((name, e))
    if missing:
        extras = ",".join(n for n, _ in missing)
        pkgs = " and ".join(n for n, _ in missing)
        flags = " ".join(f"--log {n}" for n, _ in missing)
        raise UserError(f"{flags}: the {pkgs} package{'s are' if len(missing) > 1 else ' is'} "
                        f"not installed; install the extra with pip install -e '.[{extras}]' "
                        f"(or pip install {' '.join(n for n, _ in missing)})")
    if broken:
        name, e = broken[0]
        first = (str(e).splitlines() or [""])[0][:160]
        raise UserError(f"--log {name}: the {name} package cannot be imported "
                        f"({type(e).__name__}: {first}); reinstall it with pip install -e '.[{name}]'")


def _is_missing(e: ImportError, name: str) -> bool:
    """The package (not one of its own imports) is absent, or blocked in sys.modules."""
    missing = getattr(e, "name", None)
    return missing in (None, name) or (name == "tensorboard" and missing.startswith("tensorboard"))


def wandb_run_id(matrix: str, run_id: str, started: str) -> str:
    """The W&B id of a run folder: readable, deterministic, the same on every resume.

    Derived from the suite's ``run_id`` (and matrix) plus the run folder's start time from
    ``run.json`` (kept across resumes), so a resumed run continues its W&B run while a
    fresh run of the same spec (another ``--results``, a folder moved aside) gets its own
    instead of being appended to, or dropped by W&B as steps it already has.
    """
    digest = hashlib.sha256(f"{matrix}/{run_id}/{started}".encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[:48]
    return f"{safe}-{digest}"


class _Sink:
    """One destination. ``logged`` = last step written and recorded (-1: none)."""

    name = ""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.logged = -1
        marker = self.folder / MARKER
        if marker.exists():
            try:
                self.logged = int(io.read_json(marker)["step"])
            except (ValueError, KeyError, TypeError, OSError):
                self.logged = -1  # unreadable: start over (TensorBoard purges; W&B may repeat)

    def open(self, checkpoint_step: int) -> None:
        raise NotImplementedError

    def log(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def record(self, step: int) -> None:
        self.logged = step
        io.write_json(self.folder / MARKER, {"step": step})

    def close(self, ok: bool) -> None:
        pass


class TensorBoardSink(_Sink):
    name = "tensorboard"

    def __init__(self, run_dir: Path) -> None:
        super().__init__(Path(run_dir) / "tensorboard")
        self.writer: Any = None

    def open(self, checkpoint_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.logged = min(self.logged, checkpoint_step)
        self.folder.mkdir(parents=True, exist_ok=True)
        old = list(self.folder.glob("events.out.tfevents.*"))
        purge = None
        if old:
            # Readers load event files in name order, i.e. by the start second in the
            # name: the new file must sort after the old ones for its purge to apply.
            _wait_past(max((_stamp(p) for p in old), default=0))
            purge = self.logged + 1
        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=purge,
                                    max_queue=10_000, flush_secs=3600)

    def log(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, ok: bool) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _stamp(path: Path) -> int:
    """The start second in ``events.out.tfevents.<seconds>.<host>.<pid>.<n>``."""
    try:
        return int(path.name.split(".")[3])
    except (IndexError, ValueError):
        return 0


def _wait_past(second: int, limit: float = 2.0) -> None:
    """Sleep until the clock is past ``second`` (at most ``limit`` s: a skewed clock never
    blocks a run; only a restart within the same second ever waits)."""
    deadline = time.monotonic() + limit
    while int(time.time()) <= second and time.monotonic() < deadline:
        time.sleep(0.05)


class WandbSink(_Sink):
    name = "wandb"

    def __init__(self, run_dir: Path, spec: Any, started: str) -> None:
        super().__init__(Path(run_dir) / "wandb")
        self.run_dir = Path(run_dir)
        self.spec = spec
        self.id = wandb_run_id(spec["matrix"], spec.run_id, started)
        self.run: Any = None

    def open(self, checkpoint_step: int) -> None:
        import wandb

        self.folder.mkdir(parents=True, exist_ok=True)
        spec = self.spec
        known = getattr(wandb.Settings, "model_fields", {})
        wanted = {"console": "off", "silent": True, "x_disable_stats": True,
                  "x_save_requirements": False}
        kwargs: dict[str, Any] = dict(
            dir=str(self.run_dir), id=self.id, name=spec.run_id, resume="allow",
            group=spec["matrix"], job_type="train",
            tags=[str(t)[:64] for t in (spec["arm"], f"seed{spec['seed']}", spec["dataset"])],
            config={**spec.to_dict(), "run_id": spec.run_id},
            settings=wandb.Settings(**{k: v for k, v in wanted.items() if k in known}))
        if "WANDB_PROJECT" not in os.environ:
            kwargs["project"] = WANDB_PROJECT
        # The user's WANDB_MODE wins (passed on explicitly: wandb reads the environment only
        # once per process); without one, never the network.
        kwargs["mode"] = os.environ.get("WANDB_MODE") or "offline"
        self.run = wandb.init(**kwargs)

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self, ok: bool) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            run.finish(exit_code=0 if ok else 1)


class Sinks:
    """The sinks of one run (none: every method is a no-op and ``hook`` returns its input)."""

    def __init__(self, names: Sequence[str], spec: Any, run_dir: Path,
                 epoch_rows: Callable[[], list[dict[str, Any]]], iterations: Path,
                 started: str = "") -> None:
        self.epoch_rows = epoch_rows
        self.iterations = Path(iterations)
        self.sinks: list[_Sink] = []
        for name in dict.fromkeys(names or ()):
            if name == "tensorboard":
                self.sinks.append(TensorBoardSink(run_dir))
            elif name == "wandb":
                self.sinks.append(WandbSink(run_dir, spec, started))
            else:
                raise UserError(f"--log {name!r}: expected one of {', '.join(SINKS)}")
        self._opened = False
        self._offset = 0   # bytes of iterations.csv already read

    def hook(self, on_epoch: Optional[Callable[[int, dict[str, Any]], None]]
             ) -> Optional[Callable[[int, dict[str, Any]], None]]:
        """``on_epoch`` preceded by bringing every sink up to the checkpoint just written."""
        if not self.sinks:
            return on_epoch

        def hooked(epoch: int, row: dict[str, Any]) -> None:
            self.catch_up(int(row["iteration"]))
            if on_epoch is not None:
                on_epoch(epoch, row)
        return hooked

    def catch_up(self, bound: float) -> None:
        """Log every point with step in (sink.logged, bound], then record ``bound``."""
        if not self._opened:
            for sink in self.sinks:
                sink.open(int(min(bound, 1 << 62)))
            self._opened = True
        low = min(s.logged for s in self.sinks)
        points: dict[int, dict[str, float]] = {}
        for it, loss, lr in self._new_iterations(bound):
            if it > low:
                points.setdefault(it, {}).update({"train/loss": loss, "train/lr": lr})
        for row in self.epoch_rows():
            step = int(row["iteration"])
            if low < step <= bound:
                points.setdefault(step, {}).update(epoch_values(row))
        if not points:
            return
        last = max(points)
        for sink in self.sinks:
            for step in sorted(points):
                if step > sink.logged:
                    sink.log(step, points[step])
            if last > sink.logged:
                sink.flush()
                sink.record(last)

    def _new_iterations(self, bound: float) -> list[tuple[int, float, float]]:
        """Rows of iterations.csv after the last read, up to iteration ``bound``."""
        try:
            with open(self.iterations, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        pos = 0
        while True:
            end = data.find(b"\n", pos)
            if end < 0:
                break
            fields = data[pos:end].decode().split(",")
            if fields[0] != "iteration":   # the header
                it = int(fields[0])
                if it > bound:
                    break
                out.append((it, float(fields[2]), float(fields[3])))
            pos = end + 1
        self._offset += pos
        return out

    def close(self, status: str) -> None:
        """End of the run: a diverged run's kept rows of its last epoch are logged too."""
        if not self.sinks:
            return
        try:
            if status == "diverged" and self._opened:
                self.catch_up(math.inf)
        finally:
            self._close_all(ok=status in ("done", "diverged"))

    def abort(self) -> None:
        """The run failed or was interrupted: close without raising (its error wins)."""
        with contextlib.suppress(Exception):
            self._close_all(ok=False)

    def _close_all(self, ok: bool) -> None:
        errors = []
        for sink in self.sinks:
            try:
                sink.close(ok)
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]


def epoch_values(row: dict[str, Any]) -> dict[str, float]:
    """An epochs.csv row as logged values (empty/NaN cells and ``iteration`` left out)."""
    out = {}
    for key, value in row.items():
        if key == "iteration" or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        value = int(value) if isinstance(value, numbers.Integral) else float(value)
        if isinstance(value, float) and math.isnan(value):
            continue
        out[EPOCH_NAMES.get(key, f"sampler/{key}")] = value
    return out
