"""Progress without a terminal: one line per epoch per run, and a line when a run resumes."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import matrix
from benchmarks.progress import EpochLog
from benchmarks.train import train_one
from conftest import write_matrix

REPO = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(?P<run>\S+): epoch (?P<e>\d+)/(?P<n>\d+)  train_loss (?P<loss>[\d.]+)  "
                  r"test_acc (?P<acc>[\d.]+)  (?P<s>[\d.]+) s  matrix ETA (?P<eta>.+)$")


def test_epoch_log_lines_and_matrix_eta_with_a_fake_clock():
    now = [100.0]
    lines: list[str] = []
    log = EpochLog({"a": 2, "b": 2}, write=lines.append, clock=lambda: now[0])
    log("a", 0, {})                                    # fresh start: no line
    log("b", 1, {})                                    # resumed from its epoch-1 checkpoint
    assert lines == ["b: resuming from epoch 1/2 (checkpoint)"]
    now[0] = 130.0                                     # 30 s for a's first epoch
    log("a", 1, {"train_loss": 2.25, "test_acc": 0.5, "train_seconds": 20.0, "eval_seconds": 5.0,
                 "diag_seconds": 0.0})
    # 2 epochs left (a: 1, b: 1) at 30 s per epoch
    assert lines[-1] == "a: epoch 1/2  train_loss 2.2500  test_acc 0.5000  25.0 s  matrix ETA 60 s"
    log.run_finished("b")                              # e.g. b failed: it needs no more epochs
    now[0] = 160.0
    log("a", 2, {"train_loss": float("nan"), "test_acc": 0.75, "train_seconds": 1.0})
    assert lines[-1] == "a: epoch 2/2  train_loss -  test_acc 0.7500  1.0 s  matrix ETA 0 s"


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "benchmarks", "run", *args], cwd=REPO, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=600)


def _epoch_lines(out: str) -> dict[str, list[tuple[int, int]]]:
    got: dict[str, list[tuple[int, int]]] = {}
    for ln in out.splitlines():
        m = LINE.match(ln)
        if m:
            assert 0 <= float(m["acc"]) <= 1
            got.setdefault(m["run"], []).append((int(m["e"]), int(m["n"])))
    return got


def test_cli_without_a_terminal_prints_epochs_and_resume(tmp_path, tiny_root, tiny_defaults):
    m = write_matrix(tmp_path / "m.yaml", tiny_defaults,
                     {"arm": [{"name": "sgd"}, {"name": "psgd", "sampler": {"name": "p_sgd"}}]})
    specs = matrix.load(str(m)).runs
    results = tmp_path / "results"
    # interrupt the first run after its epoch-1 checkpoint, as a kill would
    first = specs[0]

    def stop(epoch: int, row: dict) -> None:
        if epoch == 1:
            raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError):
        train_one(first, results / first["matrix"] / first.run_id, data_root=tiny_root,
                  download=False, device="cpu", on_epoch=stop)

    r = _run_cli(str(m), "--data-root", str(tiny_root), "--results", str(results), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert f"{first.run_id}: resuming from epoch 1/2 (checkpoint)" in r.stdout.splitlines()
    got = _epoch_lines(r.stdout)
    assert got == {first.run_id: [(2, 2)], specs[1].run_id: [(1, 2), (2, 2)]}, r.stdout
    assert f"[2/2] {specs[1].run_id}: done" in r.stdout


def test_cli_with_two_jobs_prints_every_epoch_from_the_parent(tmp_path, tiny_root, tiny_defaults):
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "epochs": 1},
                     {"arm": [{"name": "sgd"}, {"name": "csgd", "sampler": {"name": "c_sgd"}}]})
    specs = matrix.load(str(m)).runs
    r = _run_cli(str(m), "--data-root", str(tiny_root), "--results", str(tmp_path / "results"),
                 "--device", "cpu", "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert _epoch_lines(r.stdout) == {s.run_id: [(1, 1)] for s in specs}, r.stdout
