"""Shared fixtures: tiny prepared datasets and tiny matrices (real formats, tiny sizes)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
torch.set_num_threads(min(2, os.cpu_count() or 1))

from data_fixtures import make_prepared  # noqa: E402


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """A data root with prepared dataset ``tiny`` (96 train / 40 test, 4 classes)."""
    root = tmp_path / "data"
    make_prepared(root, "tiny", n_train=96, n_test=40, num_classes=4, seed=0)
    return root


def write_matrix(path: Path, defaults: dict, grid: dict, name: str = "t") -> Path:
    path.write_text(yaml.safe_dump({"name": name, "defaults": defaults, "grid": grid}))
    return path


TINY_DEFAULTS = {
    "dataset": "tiny",
    "epochs": 2,
    "batch_size": 16,
    "eval_batch_size": 64,
    "model": {"name": "resnet18", "width": 0.0625},
    "optimizer": {"name": "sgd", "lr": 0.05},
    "schedule": {"name": "linear", "final_lr": 0.001},
}


@pytest.fixture
def tiny_defaults() -> dict:
    import copy
    return copy.deepcopy(TINY_DEFAULTS)


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``: "nothing on disk changed" is equality."""
    import hashlib
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(capsys, matrix, root, results, *extra):
    """``benchmarks run MATRIX`` in-process on CPU without downloads: (rc, stdout, stderr)."""
    from benchmarks.cli import main
    rc = main(["run", str(matrix), "--data-root", str(root), "--results", str(results),
               "--no-download", "--device", "cpu", *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


def wait_paused(proc) -> str:
    """Read ``proc``'s output until the runner says it paused (``IMPON_TEST_PAUSE_AT``):
    no sleep, the pause line is the proof the run is mid-epoch. Returns that line."""
    from benchmarks.faults import PAUSED_LINE
    for line in proc.stdout:
        if line.startswith(PAUSED_LINE):
            return line
    pytest.fail("the first runner ended without reaching the pause point")


class Interrupt(Exception):
    """Raised by :func:`stop_after`: a run stopped as if killed right after a checkpoint."""


def stop_after(epoch: int):
    """An ``on_epoch`` hook that raises :class:`Interrupt` once epoch ``epoch`` is
    checkpointed (the runner calls ``on_epoch`` after each epoch's checkpoint)."""
    def hook(e: int, row: dict) -> None:
        if e == epoch:
            raise Interrupt
    return hook
