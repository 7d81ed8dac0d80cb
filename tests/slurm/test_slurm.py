"""The SLURM launcher against a real single-node SLURM (``make test-slurm``; not in ``make test``).

Each test submits through the CLI (``--launcher slurm``) to the session's throwaway cluster
(conftest.py). Where a run must be interrupted at a known point, the task holds after a
given epoch's checkpoint until a signal ends it (``BENCHMARKS_TEST_HOLD_AFTER_EPOCH``, once
per run), so "training longer than the time limit" and "preempted mid-run" do not depend on
the machine's speed. Waiting is polling a condition with a generous deadline, never a sleep.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.slurm import HOLD_ENV, HOLD_MARKER, REQUEUES_FILE
from conftest import REPO, write_matrix
from localslurm import slurm  # noqa: F401  (the session's cluster fixture)

SLURM_ARGS = ("--launcher", "slurm", "--gpus", "0", "--cpus", "1", "--mem-gb", "1")
TIMING = {"train_seconds", "eval_seconds", "diag_seconds"}  # wall-clock columns differ by nature


def _cli(slurm, matrix: Path, root: Path, results: Path, *extra: str, hold: int | None = None,
         wait: bool = True) -> subprocess.Popen:
    env = {**slurm.env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop(HOLD_ENV, None)
    if hold is not None:
        env[HOLD_ENV] = str(hold)
    argv = [sys.executable, "-m", "benchmarks", "run", str(matrix), "--data-root", str(root),
            "--results", str(results), "--no-download", "--device", "cpu", *SLURM_ARGS, *extra]
    if wait:
        argv.append("--wait")
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _submitted_id(proc: subprocess.Popen) -> str:
    """Read the CLI's first line ("... as job array N ...") without waiting for the rest."""
    line = proc.stdout.readline()
    m = re.search(r"as job array (\d+)", line)
    assert m, line + proc.stdout.read()
    return m.group(1)


def _poll(cond, what: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _finish(proc: subprocess.Popen, timeout_s: float = 420) -> str:
    out, _ = proc.communicate(timeout=timeout_s)
    return out


def _lines(out: str) -> dict[str, list[str]]:
    """run_id -> the task outcomes the CLI printed for it ("[k/n] RUN: STATUS (job J)...")."""
    found: dict[str, list[str]] = {}
    for run_id, status in re.findall(r"^\[\d+/\d+\] (\S+): (\S+) \(job", out, flags=re.M):
        found.setdefault(run_id, []).append(status)
    return found


def _run_folders(results: Path) -> list[Path]:
    return sorted(p.parent for p in (results / "t").glob("*/run.json"))


def _status(folder: Path) -> str:
    return json.loads((folder / "run.json").read_text())["status"]


def _csv_without_timing(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def _assert_same_csvs(a: Path, b: Path) -> None:
    assert (a / "iterations.csv").read_bytes() == (b / "iterations.csv").read_bytes()
    assert _csv_without_timing(a / "epochs.csv") == _csv_without_timing(b / "epochs.csv")


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    """A one-run, two-epoch matrix and its uninterrupted result (trained locally)."""
    from conftest import TINY_DEFAULTS
    from data_fixtures import make_prepared

    base = tmp_path_factory.mktemp("two_epoch")
    root = base / "data"
    make_prepared(root, "tiny", n_train=96, n_test=40, num_classes=4, seed=0)
    m = write_matrix(base / "m.yaml", {**TINY_DEFAULTS, "epochs": 2}, {"seed": [0], "arm": [{"name": "sgd"}]})
    ref = base / "reference"
    # the same process setup as the SLURM task (OMP_NUM_THREADS=1): on a CPU, bit-identical
    # floats need the same number of threads
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(HOLD_ENV, None)
    done = subprocess.run([sys.executable, "-m", "benchmarks", "run", str(m), "--data-root", str(root),
                           "--results", str(ref), "--no-download", "--device", "cpu"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    (folder,) = _run_folders(ref)
    return m, root, folder


def test_array_trains_every_run_exactly_once(slurm, tmp_path, tiny_root, tiny_defaults):
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "epochs": 1},
                     {"seed": [0, 1, 2], "arm": [{"name": "sgd"}]})
    results = tmp_path / "r"
    proc = _cli(slurm, m, tiny_root, results, "--time", "10")
    array = _submitted_id(proc)
    out = _finish(proc)
    assert proc.returncode == 0, out
    folders = _run_folders(results)
    assert len(folders) == 3 and all(_status(f) == "done" for f in folders)
    assert _lines(out) == {f.name: ["done"] for f in folders}, out
    # quiet on a cluster without accounting: no sacct noise from submitit's polling
    assert "sacct" not in out and "Bypassing" not in out, out
    for task in range(3):
        assert slurm.job_field(f"{array}_{task}", "JobState") == "COMPLETED"
        assert slurm.job_field(f"{array}_{task}", "Restarts") == "0"
    script = next((results / "t" / ".submitit").glob("*_submission.sh")).read_text()
    assert "#SBATCH --array=0-2%3" in script and "#SBATCH --time=10" in script


def test_time_limit_requeues_and_resumes_to_identical_csvs(slurm, tmp_path, two_epoch_run):
    m, root, reference = two_epoch_run
    results = tmp_path / "r"
    # --time 2: SLURM's warning signal (USR2, 60 s before the limit) reaches the task while
    # it holds after epoch 1; it requeues itself and the restarted job trains epoch 2.
    proc = _cli(slurm, m, root, results, "--time", "2", hold=1)
    job = _submitted_id(proc)
    out = _finish(proc)
    assert proc.returncode == 0, out
    (folder,) = _run_folders(results)
    assert (folder / HOLD_MARKER).exists()  # the first job was still running at its limit
    assert _status(folder) == "done" and _lines(out) == {folder.name: ["done"]}, out
    history = json.loads((folder / REQUEUES_FILE).read_text())
    assert history[-1]["epoch_reached"] == 1 and all(h["requeued"] for h in history), history
    assert int(slurm.job_field(job, "Restarts")) == len(history) >= 1
    assert "#SBATCH --signal=USR2@60" in next((results / "t" / ".submitit").glob("*.sh")).read_text()
    _assert_same_csvs(folder, reference)


def test_preempted_job_is_requeued_and_resumes_to_identical_csvs(slurm, tmp_path, two_epoch_run):
    m, root, reference = two_epoch_run
    results = tmp_path / "r"
    proc = _cli(slurm, m, root, results, "--time", "10", hold=1)
    job = _submitted_id(proc)
    marker = results / "t" / reference.name / HOLD_MARKER
    _poll(marker.exists, "the job to hold after epoch 1")
    slurm.run("scontrol", "requeue", job)  # what an administrator or PreemptMode=REQUEUE does
    out = _finish(proc)
    assert proc.returncode == 0, out
    folder = results / "t" / reference.name
    assert _status(folder) == "done" and _lines(out) == {folder.name: ["done"]}, out
    assert slurm.job_field(job, "Restarts") == "1"
    _assert_same_csvs(folder, reference)


def test_two_submissions_never_train_a_run_twice(slurm, tmp_path, tiny_root, tiny_defaults):
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "epochs": 1},
                     {"seed": [0, 1], "arm": [{"name": "sgd"}]})
    results = tmp_path / "r"
    # A holds the first run (after its epoch-0 checkpoint) while B runs the whole matrix.
    a = _cli(slurm, m, tiny_root, results, "--time", "10", "--array-parallelism", "1", hold=0)
    a_id = _submitted_id(a)
    _poll(lambda: any((f / HOLD_MARKER).exists() for f in (results / "t").glob("tiny-*")),
          "A to hold its first run")
    (held,) = [f.name for f in (results / "t").glob("tiny-*") if (f / HOLD_MARKER).exists()]
    b = _cli(slurm, m, tiny_root, results, "--time", "10", "--array-parallelism", "1")
    _submitted_id(b)
    out_b = _finish(b)
    other = next(f.name for f in _run_folders(results) if f.name != held)
    assert _lines(out_b) == {held: ["skipped-locked"], other: ["done"]}, out_b
    # Release A's hold with the preemption signal submitit listens to (USR2): A requeues
    # itself (no epoch finished yet: one stall is allowed) and finishes the held run.
    slurm.run("scancel", "--signal=USR2", f"{a_id}_0")
    out_a = _finish(a)
    assert a.returncode == 0, out_a
    assert _lines(out_a) == {held: ["done"], other: ["skipped-finished"]}, out_a
    assert all(_status(f) == "done" for f in _run_folders(results))
    history = json.loads((results / "t" / held / REQUEUES_FILE).read_text())
    assert [(h["epoch_reached"], h["requeued"]) for h in history] == [(0, True)]
