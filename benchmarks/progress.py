"""One line per epoch per run, for logs that are not a terminal (nohup, SLURM, CI).

Why: a progress bar redraws one line in place, which in a log file is either nothing or
garbage; someone reading ``nohup.out`` or a SLURM log needs plain lines that say which
run is where, how it is doing and when the matrix will be finished. Format::

    cifar10-5k-sgd-seed0-20b87c15: epoch 3/10  train_loss 1.4231  test_acc 0.4867  41.2 s  matrix ETA 52 min
    cifar10-5k-sgd-seed1-703d2fb4: resuming from epoch 4/10 (checkpoint)

The ETA is the wall-clock time per epoch observed in this invocation (all runs, all
workers together, so ``--jobs K`` is accounted for) times the epochs still to train in the
matrix. With ``--jobs K > 1`` the workers send each epoch's row back to the parent
process through a queue (``runner.run_local``), and only the parent prints, so every line
carries the whole matrix's ETA. A SLURM task prints its own run's lines into its log.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any, Callable, Iterable

#: epochs.csv keys a line needs (all a worker sends back to the parent).
ROW_KEYS = ("train_loss", "test_acc", "train_seconds", "eval_seconds", "diag_seconds")


def slim_row(row: dict[str, Any]) -> dict[str, Any]:
    """The part of an epochs.csv row the progress line needs (small and picklable)."""
    return {k: row.get(k) for k in ROW_KEYS}


def _fmt_eta(seconds: float) -> str:
    from .estimate import format_seconds

    return format_seconds(seconds)


def _num(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


class EpochLog:
    """Callable ``(run_id, epoch, row)`` that prints the line for one finished epoch.

    The runner calls it once when a run starts (``epoch`` = the epoch it starts from: 0
    for a fresh run, k > 0 when it resumes from a checkpoint) and after every epoch.
    ``runs`` maps each run id still to train to its total epochs. ``clock`` and ``write``
    are injectable so tests need no sleeps and can read the lines.
    """

    def __init__(self, runs: dict[str, int], write: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = dict(runs)
        self.at = {run_id: 0 for run_id in runs}      # last epoch reached, per run
        self.finished: set[str] = set()
        self.started: set[str] = set()
        self.trained = 0                               # epochs trained in this invocation
        self.clock = clock
        self.t0 = clock()
        self.write = write or (lambda line: print(line, file=sys.stdout, flush=True))
        self._lock = threading.Lock()

    def remaining_epochs(self) -> int:
        return sum(max(0, n - self.at[r]) for r, n in self.total.items() if r not in self.finished)

    def eta_seconds(self) -> float | None:
        """Seconds until every run is done at this invocation's pace; None before any epoch."""
        if self.trained == 0:
            return None
        return (self.clock() - self.t0) / self.trained * self.remaining_epochs()

    def __call__(self, run_id: str, epoch: int, row: dict[str, Any]) -> None:
        with self._lock:
            total = self.total.setdefault(run_id, epoch)
            self.at.setdefault(run_id, 0)
            if run_id not in self.started:
                self.started.add(run_id)
                self.at[run_id] = epoch
                if epoch > 0:
                    self.write(f"{run_id}: resuming from epoch {epoch}/{total} (checkpoint)")
                return
            self.at[run_id] = max(self.at[run_id], epoch)
            self.trained += 1
            secs = sum(float(row.get(k) or 0.0) for k in ("train_seconds", "eval_seconds", "diag_seconds"))
            eta = self.eta_seconds()
            self.write(f"{run_id}: epoch {epoch}/{total}  train_loss {_num(row.get('train_loss'), '.4f')}  "
                       f"test_acc {_num(row.get('test_acc'), '.4f')}  {secs:.1f} s  "
                       f"matrix ETA {_fmt_eta(eta) if eta is not None else '?'}")

    def run_finished(self, run_id: str) -> None:
        """A run ended (done, diverged early, failed, skipped): it needs no more epochs."""
        with self._lock:
            self.finished.add(run_id)

    @classmethod
    def for_specs(cls, specs: Iterable[Any], **kw: Any) -> "EpochLog":
        return cls({s.run_id: int(s["epochs"]) for s in specs}, **kw)
