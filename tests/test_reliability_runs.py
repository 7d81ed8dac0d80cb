"""Issue "Never silently wrong, round two": points 1 (locks, done-check), 3 (SLURM launcher
without SLURM) and 8 (tracebacks left). Each test failed before its fix.

Waiting is on a condition (a line the paused runner prints), never a sleep.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_cli, snapshot, write_matrix, wait_paused
from results_fixtures import FakeRun, write_run


def _one_line_exit_2(rc: int, err: str, needle: str) -> None:
    assert rc == 2, err
    assert needle in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def _one_run_matrix(tmp_path: Path, defaults: dict) -> Path:
    return write_matrix(tmp_path / "m.yaml", {**defaults, "epochs": 1},
                        {"seed": [0], "arm": [{"name": "sgd"}]})


# ----------------------------------------------------------------- 1: locks
def test_a_removed_lock_file_still_keeps_a_second_holder_out(tmp_path):
    from benchmarks.runner import LOCK_FILE, hold_run

    folder = tmp_path / "t" / "run"
    with hold_run(folder) as holder:
        assert holder is None
        (folder / LOCK_FILE).unlink()  # a user or a clean-up script
        with hold_run(folder) as other:  # a second open file description: a second runner
            assert other is not None
        (folder / "iterations.csv").write_text("iteration\n")  # the run's files keep it
    with hold_run(folder) as again:  # released on exit
        assert again is None


def test_deleting_the_lock_file_mid_run_does_not_let_a_second_runner_train(tmp_path, tiny_root,
                                                                          tiny_defaults, capsys):
    m = _one_run_matrix(tmp_path, tiny_defaults)
    results = tmp_path / "r"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "IMPON_TEST_PAUSE_AT": "epoch:1:iteration:2"}
    first = subprocess.Popen([sys.executable, "-m", "benchmarks", "run", str(m), "--data-root",
                              str(tiny_root), "--results", str(results), "--no-download", "--device", "cpu"],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_paused(first)  # blocks until the first runner is provably mid-epoch
        run = next((results / "t").glob("tiny-*"))
        (run / ".lock").unlink()
        rc, out, _ = run_cli(capsys, m, tiny_root, results)
        assert rc == 1, out
        assert ": skipped-locked (being trained by another process" in out, out
        assert (run / "iterations.csv").read_text().count("\n") == 1  # header only: nobody trained
        assert json.loads((run / "run.json").read_text())["status"] == "running"
    finally:
        first.kill()
        first.wait()


def _duplicate_last_row(path: Path) -> None:
    with open(path, "a") as f:
        f.write(path.read_text().splitlines(keepends=True)[-1])


def _drop_last_row(path: Path) -> None:
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))


@pytest.mark.parametrize("damage,needle", [
    (_duplicate_last_row, "its rows are 7 lines, not 6"),
    (_drop_last_row, "its rows are 5 lines, not 6"),
])
def test_a_run_whose_rows_do_not_add_up_is_never_marked_done(tmp_path, tiny_root, tiny_defaults,
                                                              damage, needle):
    """What a second writer leaves (rows written twice, or cut back under the trainer),
    made at the last epoch, after its checkpoint, before run.json would say done."""
    from benchmarks.config import RunSpec
    from benchmarks.runner import RunOptions, execute, run_dir

    spec = RunSpec.from_dict({**tiny_defaults, "epochs": 1, "matrix": "t"})
    opts = RunOptions(results=str(tmp_path / "r"), data_root=str(tiny_root), download=False, device="cpu")
    folder = run_dir(opts, spec)

    def second_writer(epoch: int, row: dict) -> None:
        if epoch == spec["epochs"]:
            damage(folder / "iterations.csv")

    out = execute(spec, opts, on_epoch=second_writer)
    assert out.status == "failed", out
    assert "do not add up" in out.error and needle in out.error and "mv " in out.error, out.error
    assert len(out.error.splitlines()) == 1
    assert json.loads((folder / "run.json").read_text())["status"] == "failed"


def test_lock_held_by_job_reads_the_lock_file_the_runner_writes(tmp_path, tiny_defaults):
    """A restarted SLURM task waits for its own killed incarnation: it must read the lock
    file where and as the runner writes it (it looked in a former ``.locks/`` folder)."""
    from benchmarks.config import RunSpec
    from benchmarks.runner import RunOptions
    from benchmarks.slurm import _lock_held_by_job

    spec = RunSpec.from_dict({**tiny_defaults, "matrix": "t"})
    code = ("import json, sys; from benchmarks.runner import RunOptions, run_lock;"
            "from benchmarks.config import RunSpec;"
            "cm = run_lock(RunOptions(results=sys.argv[2]), RunSpec.from_dict(json.loads(sys.argv[1])));"
            "print(cm.__enter__(), flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, json.dumps(spec.to_dict()), str(tmp_path)],
                              cwd=REPO, env={**os.environ, "SLURM_JOB_ID": "4242"}, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "True"
        opts = RunOptions(results=str(tmp_path))
        assert _lock_held_by_job(spec, opts, "4242")
        assert not _lock_held_by_job(spec, opts, "4243")
    finally:
        holder.kill()
        holder.wait()


# ----------------------------------------------------------------- 3: --launcher slurm without SLURM
_NO_CONTROLLER = ("sbatch: error: Batch job submission failed: "
                  "Unable to contact slurm controller (connect failure)")


def _fake_bin(tmp_path: Path, scripts: dict[str, str]) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, body in scripts.items():
        (folder / name).write_text("#!/bin/sh\n" + body)
        (folder / name).chmod(0o755)
    return folder


@pytest.mark.parametrize("scripts,needle", [
    ({}, "sbatch and srun not found on PATH"),
    ({"srun": "exit 1\n"}, "sbatch not found on PATH"),
    ({"srun": "exit 1\n", "sbatch": f"echo '{_NO_CONTROLLER}' >&2\nexit 1\n"},
     "submission failed (" + _NO_CONTROLLER + ")"),
])
@pytest.mark.parametrize("earlier_submission", [False, True])
def test_slurm_launcher_without_slurm_is_one_line_and_writes_nothing(tmp_path, tiny_root, tiny_defaults,
                                                                      capsys, monkeypatch, scripts,
                                                                      needle, earlier_submission):
    m = _one_run_matrix(tmp_path, tiny_defaults)
    results = tmp_path / "r"
    if earlier_submission:  # logs of an earlier array stay as they are
        (results / "t" / ".submitit").mkdir(parents=True)
        (results / "t" / ".submitit" / "17_0_log.out").write_text("an earlier job's log\n")
    before = snapshot(tmp_path)
    monkeypatch.setenv("PATH", str(_fake_bin(tmp_path, scripts)))
    rc, out, err = run_cli(capsys, m, tiny_root, results, "--launcher", "slurm", "--time", "10")
    _one_line_exit_2(rc, err, needle)
    assert "submitted" not in out
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("bin/")}
    assert after == before
    assert results.exists() == earlier_submission
    if earlier_submission:
        assert sorted(p.name for p in (results / "t").rglob("*")) == [".submitit", "17_0_log.out"]


# ----------------------------------------------------------------- 8: tracebacks left
@pytest.mark.parametrize("where", ["/proc/impon-results", "/sys/impon-results"])
def test_results_under_proc_or_sys_is_one_line(tmp_path, tiny_root, tiny_defaults, capsys, where):
    m = _one_run_matrix(tmp_path, tiny_defaults)
    rc, _, err = run_cli(capsys, m, tiny_root, where)
    _one_line_exit_2(rc, err, f"--results {where}: ")
    assert not Path(where).exists()


def _read_only(folder: Path, argv: list[str]) -> list[str]:
    """``argv`` run with ``folder`` read-only: by its mode, or for root (whom modes do not
    stop) on a read-only bind mount in a private mount namespace."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir():
                path.chmod(0o555)
        return argv
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode:
        pytest.skip("running as root without unshare: cannot make a folder read-only")
    return ["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(folder), *argv]


def test_plots_on_a_read_only_results_folder_is_one_line(tmp_path):
    results = tmp_path / "r"
    for seed in range(2):
        write_run(results / "m", FakeRun(seed=seed, matrix="m", epochs=3, batch_size=64))
    before = snapshot(results)
    argv = _read_only(results / "m", [sys.executable, "-m", "plots", "m", "--results", str(results)])
    try:
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        for path in [results, *results.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
    _one_line_exit_2(proc.returncode, proc.stderr, "is not writable")
    assert snapshot(results) == before


def test_shard_out_of_range_is_an_error_under_python_O():
    proc = subprocess.run([sys.executable, "-O", "-m", "benchmarks", "run", "paper", "--shard", "3/2",
                           "--dry-run", "--device", "cpu", "--data-root", "/nonexistent"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    _one_line_exit_2(proc.returncode, proc.stderr, "--shard '3/2': expected i/n with 0 <= i < n")


@pytest.mark.parametrize("name", ["IMPON_TEST_KILL_AT", "IMPON_TEST_PAUSE_AT"])
def test_malformed_fault_variable_is_a_usage_error(tmp_path, tiny_root, tiny_defaults, capsys,
                                                   monkeypatch, name):
    m = _one_run_matrix(tmp_path, tiny_defaults)
    monkeypatch.setenv(name, "epoch:1:step:2")
    rc, _, err = run_cli(capsys, m, tiny_root, tmp_path / "r")
    _one_line_exit_2(rc, err, f"{name}='epoch:1:step:2': expected epoch:E:iteration:I")
    assert not (tmp_path / "r").exists()
