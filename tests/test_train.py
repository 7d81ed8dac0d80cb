"""One run end to end: outputs, exact resume after SIGKILL, divergence, schedules."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.config import RunSpec
from benchmarks.optim import lr_at
from benchmarks.train import train_one
from conftest import REPO, write_matrix

TIMING = ["train_seconds", "eval_seconds"]


def _run_cli(matrix: Path, data_root: Path, results: Path, *extra: str,
             env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "benchmarks", "run", str(matrix),
                             "--data-root", str(data_root), "--results", str(results),
                             "--no-download", "--device", "cpu", *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _only_run(results: Path) -> Path:
    runs = [p for p in (results / "t").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1
    return runs[0]


def test_outputs_follow_the_schema(tiny_root, tiny_defaults, tmp_path):
    spec = RunSpec.from_dict({**tiny_defaults, "matrix": "t"})
    res = train_one(spec, tmp_path / "run", data_root=tiny_root, download=False, device="cpu")
    assert res.status == "done"
    d = tmp_path / "run"
    it = pd.read_csv(d / "iterations.csv")
    ep = pd.read_csv(d / "epochs.csv")
    assert list(it.columns) == ["iteration", "epoch", "loss", "lr", "backprops", "forwards"]
    assert list(ep.columns)[:9] == ["epoch", "iteration", "train_loss", "test_loss", "test_acc",
                                    "backprops", "forwards", "train_seconds", "eval_seconds"]
    assert len(it) == 2 * (96 // 16) and list(ep.epoch) == [0, 1, 2]
    assert ep.train_loss.isna().tolist() == [True, False, False]
    assert (it.backprops == it.iteration * 16).all() and (it.forwards == it.backprops).all()
    assert it.lr.iloc[0] == pytest.approx(0.05) and it.lr.iloc[-1] == pytest.approx(0.001)
    assert ep.train_loss.iloc[1] == pytest.approx(it[it.epoch == 1].loss.mean())
    info = json.loads((d / "run.json").read_text())
    assert info["status"] == "done" and info["run_id"] == spec.run_id
    assert info["dataset"]["name"] == "tiny" and info["dataset"]["n_train"] == 96
    assert {"python", "torch", "torchvision", "cuda", "cudnn"} <= set(info["versions"])
    assert "commit" in info["git"] and info["seconds"] > 0
    assert (d / "config.yaml").exists() and (d / "checkpoint.pt").exists()


def test_sigkill_mid_epoch_then_resume_replays_exactly(tiny_root, tiny_defaults, tmp_path):
    defaults = {**tiny_defaults, "epochs": 4, "batch_size": 8, "model": {"name": "resnet18", "width": 0.125}}
    matrix = write_matrix(tmp_path / "m.yaml", defaults, {"seed": [3], "arm": [{"name": "sgd"}]})
    ref = _run_cli(matrix, tiny_root, tmp_path / "ref")
    assert ref.wait(timeout=300) == 0, ref.stdout.read().decode()

    results = tmp_path / "killed"
    # The child kills itself after step 3 of epoch 2 (12 steps per epoch): a known point
    # inside an epoch, whatever the machine's speed (see benchmarks/faults.py).
    proc = _run_cli(matrix, tiny_root, results, env_extra={"IMPON_TEST_KILL_AT": "epoch:2:iteration:3"})
    assert proc.wait(timeout=300) == -signal.SIGKILL, proc.stdout.read().decode()
    run = _only_run(results)
    killed_epochs = pd.read_csv(run / "epochs.csv")
    assert killed_epochs.epoch.tolist() == [0, 1]  # killed inside epoch 2
    assert len(pd.read_csv(run / "iterations.csv")) == 12
    assert json.loads((run / "run.json").read_text())["status"] == "running"

    again = _run_cli(matrix, tiny_root, results)
    assert again.wait(timeout=300) == 0, again.stdout.read().decode()
    ref_run = _only_run(tmp_path / "ref")
    assert (run / "iterations.csv").read_bytes() == (ref_run / "iterations.csv").read_bytes()
    a = pd.read_csv(run / "epochs.csv").drop(columns=TIMING)
    b = pd.read_csv(ref_run / "epochs.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert json.loads((run / "run.json").read_text())["status"] == "done"


def test_nan_loss_marks_run_diverged_and_keeps_rows(tiny_root, tiny_defaults, tmp_path):
    spec = RunSpec.from_dict({**tiny_defaults, "matrix": "t", "epochs": 3,
                              "optimizer": {"name": "sgd", "lr": 1.0e12, "momentum": 0.9},
                              "schedule": {"name": "constant"}})
    res = train_one(spec, tmp_path / "run", data_root=tiny_root, download=False, device="cpu")
    assert res.status == "diverged" and "non-finite" in res.error
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "diverged" and "iteration" in info["error"]
    it = pd.read_csv(tmp_path / "run" / "iterations.csv")
    assert len(it) >= 1 and not pd.Series(it.loss.iloc[-1:]).apply(lambda v: v == v and abs(v) < float("inf")).all()
    assert it.loss.iloc[:-1].apply(lambda v: abs(v) < float("inf")).all()


@pytest.mark.parametrize("name,params,expect", [
    ("constant", {}, [0.1, 0.1, 0.1]),
    ("linear", {"final_lr": 0.0}, [0.1, 0.05, 0.0]),
    ("cosine", {"final_lr": 0.0}, [0.1, 0.05, 0.0]),
])
def test_schedules_endpoints(name, params, expect):
    got = [lr_at(i, 3, 1, 0.1, {"name": name, **params}) for i in range(3)]
    assert got == pytest.approx(expect)


def test_step_schedule_uses_epoch_milestones():
    sched = {"name": "step", "milestones": [2, 3], "gamma": 0.1}
    got = [lr_at(i, 8, 2, 1.0, sched) for i in range(8)]
    assert got == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])


def test_diagnostics_change_neither_training_nor_its_cost(tiny_root, tiny_defaults, tmp_path):
    """IMPON with diagnose_every on trains exactly as with it off: same iterations.csv
    (losses, forwards), the diagnostic forwards in their own column, timed apart."""
    runs = {}
    for k in (0, 2):
        spec = RunSpec.from_dict({**tiny_defaults, "matrix": "t", "sampler": {
            "name": "impon", "bank_size": 32, "lr": 1e-4, "diagnose_every": k}})
        d = tmp_path / f"diag{k}"
        assert train_one(spec, d, data_root=tiny_root, download=False, device="cpu").status == "done"
        runs[k] = (d / "iterations.csv").read_text(), pd.read_csv(d / "epochs.csv")
    assert runs[0][0] == runs[2][0]
    off, on = runs[0][1], runs[2][1]
    assert (off.forwards == on.forwards).all() and (off.test_acc == on.test_acc).all()
    assert off.diag_forwards.tolist() == [0, 0, 0]
    # 6 steps per epoch, every 2nd diagnosed: 3 banks of 32 per epoch.
    assert on.diag_forwards.tolist() == [0, 96, 192]
    assert (on.diag_seconds.iloc[1:] > 0).all() and (off.diag_seconds == 0).all()
    assert on.impon_precision_at_b.iloc[1:].between(0, 1).all()


def test_fault_points_parse_strictly():
    from benchmarks.faults import parse_point

    assert parse_point("epoch:2:iteration:3") == (2, 3)
    for bad in ("epoch:0:iteration:1", "2:3", "epoch:a:iteration:1", "iteration:3"):
        with pytest.raises(ValueError, match="expected epoch:E:iteration:I"):
            parse_point(bad)
