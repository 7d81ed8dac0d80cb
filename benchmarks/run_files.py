"""A run folder's files: ``iterations.csv``, ``epochs.csv`` and ``checkpoint.pt``.

Kept apart from :class:`benchmarks.train.Trainer` so that the trainer holds the step,
epoch and evaluation, and this module holds everything about what is on disk: the CSV
formats, the checkpoint, and how a resume puts the folder back to the checkpoint.

Crash safety: at the end of each epoch the epoch's rows are appended to
``iterations.csv``, ``epochs.csv`` is rewritten atomically, and then a checkpoint (the
trainer's state, the epoch rows, the byte length of ``iterations.csv``) replaces the
previous one atomically. Resume loads it and cuts ``iterations.csv`` back, so a run killed
at any instant and resumed writes the same rows as an uninterrupted one.

Before resuming, :meth:`RunFiles.resume_state` checks that the folder adds up: the
checkpoint loads and belongs to this run, ``iterations.csv`` holds at least the bytes the
checkpoint vouches for and those bytes are the ones written (sha256 recorded in the
checkpoint, plus a row-by-row check), and the data has the fingerprint the run started
with. What can be recovered exactly is (rows written after the checkpoint are cut back, a
missing ``epochs.csv`` is rewritten from the checkpoint, a missing ``iterations.csv`` of a
run that never finished an epoch is recreated). Anything else raises
:class:`RunFolderError`: one line saying what disagrees and the command that restarts the
run; nothing is padded, guessed or silently thrown away.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import math
import shlex
from pathlib import Path
from typing import Any, Optional

import torch

from . import io
from .errors import RunFolderError

ITER_COLUMNS = ["iteration", "epoch", "loss", "lr", "backprops", "forwards"]
EPOCH_COLUMNS = ["epoch", "iteration", "train_loss", "test_loss", "test_acc", "backprops",
                 "forwards", "train_seconds", "eval_seconds", "diag_forwards", "diag_seconds"]
CHECKPOINT = "checkpoint.pt"
ITERATIONS = "iterations.csv"
EPOCHS = "epochs.csv"


def restart_hint(run_dir: Path) -> str:
    """How to restart a run whose folder cannot be resumed, keeping the old folder.

    The folder is moved aside (not deleted: it may be worth a look) under a name starting
    with ``_``, which both the runner and the plots ignore.
    """
    run_dir = Path(run_dir)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    aside = run_dir.parent / f"_broken-{run_dir.name}-{stamp}"
    return (f"to restart this run from scratch, move its folder aside "
            f"(mv {shlex.quote(str(run_dir))} {shlex.quote(str(aside))}) and run the same command again")


class RunFiles:
    """The files of one run folder and the bookkeeping that ties them to the checkpoint.

    ``epoch_rows`` are the rows of ``epochs.csv`` (kept in memory and in the checkpoint,
    so the file is always rewritten whole); ``iter_bytes`` is the byte length of
    ``iterations.csv`` that the last checkpoint vouches for.
    """

    def __init__(self, run_dir: Path, run_id: str, data_fingerprint: Optional[str] = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.data_fingerprint = data_fingerprint
        self.epoch_rows: list[dict[str, Any]] = []
        self.iter_bytes = 0
        self._iter_hash = hashlib.sha256()  # of the first iter_bytes bytes of iterations.csv
        self._inspected: Optional[tuple[Optional[dict[str, Any]]]] = None
        self._prefix_hash = hashlib.sha256()

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    @property
    def iter_path(self) -> Path:
        return self.run_dir / ITERATIONS

    @property
    def epochs_path(self) -> Path:
        return self.run_dir / EPOCHS

    # --- a fresh run --------------------------------------------------------------------
    def start(self) -> None:
        """Write ``iterations.csv`` with its header only (a fresh run)."""
        header = ",".join(ITER_COLUMNS) + "\n"
        io.write_text(self.iter_path, header)
        self.iter_bytes = len(header.encode())
        self._iter_hash = hashlib.sha256(header.encode())
        self.epoch_rows = []

    # --- growing ------------------------------------------------------------------------
    def append_iterations(self, rows: list[str]) -> None:
        """Append one finished epoch's rows; the checkpoint saved next vouches for them."""
        self.iter_bytes = io.append_lines(self.iter_path, rows)
        self._iter_hash.update("".join(rows).encode())

    def append_unfinished(self, rows: list[str]) -> None:
        """Append rows of an epoch that did not finish (a diverged run keeps them)."""
        io.append_lines(self.iter_path, rows)

    def add_epoch(self, row: dict[str, Any]) -> None:
        self.epoch_rows.append(row)
        self.write_epochs()

    def write_epochs(self) -> None:
        cols = list(EPOCH_COLUMNS)
        for row in self.epoch_rows:
            cols += [k for k in row if k not in cols]

        def fmt(v: Any) -> str:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return ""
            return repr(v) if isinstance(v, float) else str(v)

        lines = [",".join(cols) + "\n"]
        lines += [",".join(fmt(row.get(k)) for k in cols) + "\n" for row in self.epoch_rows]
        io.write_text(self.epochs_path, "".join(lines))

    # --- checkpoint ---------------------------------------------------------------------
    def save_checkpoint(self, epoch: int, training_state: dict[str, Any]) -> None:
        """Atomically replace the checkpoint with ``training_state`` plus the file state."""
        state = {
            "epoch": epoch,
            **training_state,
            "epoch_rows": self.epoch_rows,
            "iter_bytes": self.iter_bytes,
            "iter_sha256": self._iter_hash.hexdigest(),
            "data_fingerprint": self.data_fingerprint,
            "run_id": self.run_id,
        }
        io.atomic_write(self.ckpt_path, lambda f: torch.save(state, f), mode="wb")

    # --- resume -------------------------------------------------------------------------
    def resume_state(self, map_location: Any, recorded_fingerprint: Optional[str] = None
                     ) -> Optional[dict[str, Any]]:
        """The checkpoint to resume from after checking the folder, or None for a fresh start.

        Read-only (the folder is put back by :meth:`resume`) and memoised, so the caller can
        check before it records anything and the trainer reuses the answer.
        ``recorded_fingerprint`` is the data fingerprint run.json recorded at the start.
        Raises :class:`RunFolderError`.
        """
        if self._inspected is None:
            self._inspected = (self._inspect(map_location, recorded_fingerprint),)
        return self._inspected[0]

    def _fail(self, what: str, alternative: str = "") -> RunFolderError:
        return RunFolderError(f"{self.run_dir}: {what}, so it cannot resume exactly; "
                              + (f"{alternative}, or " if alternative else "") + restart_hint(self.run_dir))

    def _inspect(self, map_location: Any, recorded_fingerprint: Optional[str]) -> Optional[dict[str, Any]]:
        header = (",".join(ITER_COLUMNS) + "\n").encode()
        if not self.ckpt_path.exists():
            # Checkpoint 0 is written before the first step, so without one nothing was
            # trained, unless iterations.csv says otherwise (someone deleted the checkpoint).
            rows = _count_rows(self.iter_path) if self.iter_path.exists() else 0
            if rows:
                raise self._fail(f"{CHECKPOINT} is missing but {ITERATIONS} holds {rows} rows")
            return None
        size = self.ckpt_path.stat().st_size
        if size == 0:
            raise self._fail(f"{CHECKPOINT} is empty (0 bytes)")
        try:
            state = torch.load(self.ckpt_path, map_location=map_location, weights_only=False)
        except Exception as e:  # torch raises several types for a truncated zip/pickle
            raise self._fail(f"{CHECKPOINT} is unreadable, truncated or corrupt "
                             f"({size} bytes; {type(e).__name__})") from None
        needed = ("epoch", "epoch_rows", "iter_bytes", "run_id", "counters", "model",
                  "optimizer", "sampler")
        if not isinstance(state, dict) or any(k not in state for k in needed):
            raise self._fail(f"{CHECKPOINT} is not a checkpoint of this suite (keys missing)")
        if state["run_id"] != self.run_id:
            raise self._fail(f"{CHECKPOINT} belongs to run {state['run_id']}, not {self.run_id}")
        now = self.data_fingerprint
        for where, then in (("checkpoint.pt", state.get("data_fingerprint")),
                            ("run.json", recorded_fingerprint)):
            if then and now and then != now:
                raise self._fail(f"the data changed since the run started: {where} records data "
                                 f"fingerprint {then}, the data found now has {now}",
                                 "point --data-root at the original data")
        epoch, want = int(state["epoch"]), int(state["iter_bytes"])
        rows_wanted = int(state["counters"]["iteration"])
        if not self.iter_path.exists():
            if rows_wanted == 0 and want == len(header):
                return state  # nothing trained yet: resume() recreates the header exactly
            raise self._fail(f"{ITERATIONS} is missing but {CHECKPOINT} records {rows_wanted} rows "
                             f"(to epoch {epoch})")
        have = self.iter_path.stat().st_size
        if have < want:
            raise self._fail(f"{ITERATIONS} is shorter ({have} bytes) than {CHECKPOINT} records "
                             f"({want} bytes, {rows_wanted} rows to epoch {epoch})")
        with open(self.iter_path, "rb") as f:
            prefix = f.read(want)
        problem = _check_rows(prefix, header, rows_wanted)
        if problem is None and state.get("iter_sha256") not in (None, hashlib.sha256(prefix).hexdigest()):
            problem = "do not match what was written (sha256 differs)"
        if problem:
            raise self._fail(f"{ITERATIONS}: the {rows_wanted} rows {CHECKPOINT} records (to epoch "
                             f"{epoch}) {problem}")
        self._prefix_hash = hashlib.sha256(prefix)
        return state

    def resume(self, state: dict[str, Any]) -> None:
        """Put the folder back to ``state`` (from :meth:`resume_state`): cut ``iterations.csv``
        back to the checkpointed rows (rows of an epoch that did not finish go), recreate it
        if it never had rows, rewrite ``epochs.csv``."""
        self.epoch_rows = state["epoch_rows"]
        self.iter_bytes = int(state["iter_bytes"])
        self._iter_hash = self._prefix_hash
        if not self.iter_path.exists():
            self.start()
            self.epoch_rows = state["epoch_rows"]
        else:
            io.truncate(self.iter_path, self.iter_bytes)
        self.write_epochs()

    # --- the end of a run ---------------------------------------------------------------
    def check_complete(self, epochs: int) -> None:
        """Raise :class:`RunFolderError` unless the folder's files add up to a finished run.

        Called before a run is marked ``done``: ``epochs.csv`` has epochs 0..``epochs``,
        ``iterations.csv`` has rows numbered 1..N with N the last epoch's iteration counter,
        and it is byte for byte what this process wrote. Why: a second process writing
        into the folder (a double training, a copy over a live run) leaves duplicated or
        missing rows that no later step would notice; such a run must fail, not be
        plotted as a result.
        """
        header = (",".join(ITER_COLUMNS) + "\n").encode()
        try:
            data = self.iter_path.read_bytes()
            with open(self.epochs_path, newline="") as f:
                rows = list(csv.DictReader(f))
            seen = [int(r["epoch"]) for r in rows]
            n_rows = int(rows[-1]["iteration"]) if rows else 0
        except (OSError, KeyError, ValueError, TypeError) as e:
            problem = f"{type(e).__name__}: {e}"
        else:
            problem = None
            if seen != list(range(epochs + 1)):
                problem = f"{EPOCHS} has epochs {_span(seen)}, not 0..{epochs}"
            elif (why := _check_rows(data, header, n_rows)) is not None:
                problem = f"{ITERATIONS}: its rows {why} ({EPOCHS} counts {n_rows} iterations)"
            elif hashlib.sha256(data).hexdigest() != self._iter_hash.hexdigest():
                problem = (f"{ITERATIONS} is not what this run wrote ({len(data)} bytes, "
                           f"it wrote {self.iter_bytes})")
        if problem:
            raise RunFolderError(
                f"{self.run_dir}: the run's files do not add up after its last epoch ({problem}); "
                "another process may have written into the folder (two runners training it at "
                f"once?), so it is not marked done; {restart_hint(self.run_dir)}")


def _span(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:6]))
    return f"[{shown}{', ...' if len(numbers) > 6 else ''}] ({len(numbers)} rows)"


def _count_rows(path: Path) -> int:
    """Data rows (non-empty lines after the header) in a CSV file."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    return sum(1 for line in lines[1:] if line.strip())


def _check_rows(data: bytes, header: bytes, n_rows: int) -> Optional[str]:
    """None if ``data`` is the header plus ``n_rows`` well-formed rows numbered 1..n_rows."""
    if not data.startswith(header):
        return "do not start with the header " + header.decode().strip()
    body = data[len(header):]
    if body and not body.endswith(b"\n"):
        return "end in a partial line"
    lines = body.split(b"\n")[:-1] if body else []
    if len(lines) != n_rows:
        return f"are {len(lines)} lines, not {n_rows}"
    for i, line in enumerate(lines, start=1):
        fields = line.split(b",")
        try:
            ok = len(fields) == len(ITER_COLUMNS) and int(fields[0]) == i
            [float(x) for x in fields[1:]]
        except ValueError:
            ok = False
        if not ok:
            return f"are not well-formed (line {i + 1}: {line[:60]!r})"
    return None
