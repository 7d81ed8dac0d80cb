"""A run folder's files: ``iterations.csv``, ``epochs.csv`` and ``checkpoint.pt``.

Kept apart from :class:`benchmarks.train.Trainer` so that the trainer holds the step,
epoch and evaluation, and this module holds everything about what is on disk: the CSV
formats, the checkpoint, and how a resume puts the folder back to the checkpoint.

Crash safety: at the end of each epoch the epoch's rows are appended to
``iterations.csv``, ``epochs.csv`` is rewritten atomically, and then a checkpoint (the
trainer's state, the epoch rows, the byte length of ``iterations.csv``) replaces the
previous one atomically. Resume loads it and cuts ``iterations.csv`` back, so a run killed
at any instant and resumed writes the same rows as an uninterrupted one.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from . import io
from .errors import UserError

ITER_COLUMNS = ["iteration", "epoch", "loss", "lr", "backprops", "forwards"]
EPOCH_COLUMNS = ["epoch", "iteration", "train_loss", "test_loss", "test_acc", "backprops",
                 "forwards", "train_seconds", "eval_seconds", "diag_forwards", "diag_seconds"]
CHECKPOINT = "checkpoint.pt"
ITERATIONS = "iterations.csv"
EPOCHS = "epochs.csv"


class RunFiles:
    """The files of one run folder and the bookkeeping that ties them to the checkpoint.

    ``epoch_rows`` are the rows of ``epochs.csv`` (kept in memory and in the checkpoint,
    so the file is always rewritten whole); ``iter_bytes`` is the byte length of
    ``iterations.csv`` that the last checkpoint vouches for.
    """

    def __init__(self, run_dir: Path, run_id: str) -> None:
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.epoch_rows: list[dict[str, Any]] = []
        self.iter_bytes = 0

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
    def can_resume(self) -> bool:
        """True when the folder holds a checkpoint to resume from."""
        return self.ckpt_path.exists() and self.iter_path.exists()

    def start(self) -> None:
        """Write ``iterations.csv`` with its header only (a fresh run)."""
        header = ",".join(ITER_COLUMNS) + "\n"
        io.write_text(self.iter_path, header)
        self.iter_bytes = len(header.encode())
        self.epoch_rows = []

    # --- growing ------------------------------------------------------------------------
    def append_iterations(self, rows: list[str]) -> None:
        """Append one finished epoch's rows; the checkpoint saved next vouches for them."""
        self.iter_bytes = io.append_lines(self.iter_path, rows)

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
            "run_id": self.run_id,
        }
        io.atomic_write(self.ckpt_path, lambda f: torch.save(state, f), mode="wb")

    def load_checkpoint(self, map_location: Any) -> dict[str, Any]:
        """Load the checkpoint, put the folder back to it, return the whole state dict."""
        state = torch.load(self.ckpt_path, map_location=map_location, weights_only=False)
        if state.get("run_id") != self.run_id:
            raise UserError(f"{self.ckpt_path}: checkpoint belongs to run {state.get('run_id')}, "
                            f"not {self.run_id}; move it away to start this run afresh")
        self.epoch_rows = state["epoch_rows"]
        self.iter_bytes = state["iter_bytes"]
        io.truncate(self.iter_path, self.iter_bytes)
        self.write_epochs()
        return state
