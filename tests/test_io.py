"""Crash-safe writes: file modes follow the umask, temps of interrupted writes are cleaned."""
from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from benchmarks import io
from benchmarks.data import write_npz_atomic


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask,want", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_every_writer_respects_the_umask(tmp_path, mask, want):
    from plots.aggregate import atomic_path

    with umask(mask):
        io.write_text(tmp_path / "a.txt", "x\n")                       # run.json, epochs.csv, ...
        io.atomic_write(tmp_path / "b.pt", lambda f: f.write(b"\0"), mode="wb")  # checkpoint
        write_npz_atomic(tmp_path / "train.npz", np.zeros((1, 2, 2, 3), np.uint8),
                         np.zeros(1, np.int64))                        # dataset cache
        with atomic_path(tmp_path / "fig.png") as tmp:                 # figures, report, summary
            tmp.write_bytes(b"png")
        with io.flocked(tmp_path / ".lock", wait=False):
            pass
    for name in ("a.txt", "b.pt", "train.npz", "fig.png", ".lock"):
        assert _mode(tmp_path / name) == want, name


def test_a_trained_run_folder_is_group_readable_under_umask_002(tiny_root, tiny_defaults, tmp_path):
    from benchmarks.config import RunSpec
    from benchmarks.train import train_one

    spec = RunSpec.from_dict({**tiny_defaults, "matrix": "t", "epochs": 1})
    with umask(0o002):
        assert train_one(spec, tmp_path / "run", data_root=tiny_root, download=False,
                         device="cpu").status == "done"
    files = sorted(p for p in (tmp_path / "run").iterdir() if p.is_file())
    assert {p.name for p in files} >= {"run.json", "config.yaml", "iterations.csv", "epochs.csv",
                                       "checkpoint.pt"}
    assert {p.name: _mode(p) for p in files} == {p.name: 0o664 for p in files}


def test_stale_temps_of_interrupted_writes_are_removed_but_not_a_live_writers(tmp_path):
    target = tmp_path / "checkpoint.pt"
    stale = [tmp_path / ".checkpoint.pt.abcd_123.tmp", tmp_path / ".checkpoint.pt.zz99zz99.tmp"]
    live = tmp_path / ".checkpoint.pt.live0000.tmp"
    unrelated = [tmp_path / ".checkpoint.pt.notes.tmp",       # not mkstemp's 8 random chars
                 tmp_path / ".epochs.csv.abcd1234.tmp",        # another file's temp
                 tmp_path / "checkpoint.pt.abcd1234.tmp"]      # not hidden: not ours
    for p in [*stale, live, *unrelated]:
        p.write_bytes(b"half a checkpoint")
    with open(live, "rb+") as held:  # a live writer holds its temp locked while it writes
        fcntl.flock(held, fcntl.LOCK_EX)
        io.atomic_write(target, lambda f: f.write(b"new"), mode="wb")
        assert not any(p.exists() for p in stale)
        assert live.exists() and all(p.exists() for p in unrelated)
    assert target.read_bytes() == b"new"
    # Once its writer is gone (a SIGKILL releases the lock), the next write removes it.
    io.atomic_write(target, lambda f: f.write(b"newer"), mode="wb")
    assert not live.exists() and all(p.exists() for p in unrelated)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["checkpoint.pt", *(p.name for p in unrelated)])


def test_a_failed_write_leaves_no_temp_and_the_old_file(tmp_path):
    target = tmp_path / "run.json"
    io.write_text(target, "old\n")

    def boom(f):
        f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.atomic_write(target, boom)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
