"""The matrix runner: skip/resume, locks, failure isolation, shards, SLURM (local executor)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import matrix as matrix_mod
from benchmarks.cli import main
from benchmarks.errors import UserError
from benchmarks.runner import shard
from conftest import REPO, write_matrix, wait_paused


def _cli_proc(matrix: Path, root: Path, results: Path, *extra: str,
              env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "benchmarks", "run", str(matrix), "--data-root", str(root),
                             "--results", str(results), "--no-download", "--device", "cpu", *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _statuses(results: Path, name: str = "t") -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["status"] for p in (results / name).glob("*/run.json")}


def _fingerprint(run: Path) -> tuple:
    return tuple((f, (run / f).stat().st_mtime_ns) for f in ("run.json", "iterations.csv", "checkpoint.pt"))


@pytest.mark.parametrize("name,count", [("paper", 63), ("ablation_bank", 54)])
def test_dry_run_counts(capsys, name, count):
    assert main(["run", name, "--dry-run", "--device", "cpu", "--data-root", "/nonexistent"]) == 0
    out = capsys.readouterr().out
    assert f"{count} runs (0 done, {count} to run)" in out
    assert "estimated cost" in out


def test_every_shipped_matrix_validates():
    for path in sorted((REPO / "benchmarks" / "matrices").glob("*.yaml")):
        m = matrix_mod.load(str(path))
        assert m.runs and m.name == path.stem


def test_bank_axis_crossed_with_bankless_sampler_is_an_error(tmp_path, tiny_defaults):
    m = write_matrix(tmp_path / "m.yaml", tiny_defaults,
                     {"bank_size": [32, 64], "arm": [{"name": "impon", "sampler": {"name": "impon"}},
                                                     {"name": "sgd", "sampler": {"name": "uniform"}}]})
    with pytest.raises(UserError) as e:
        matrix_mod.load(str(m))
    assert "grid.bank_size: crossed with arm 'sgd' (grid.arm[1])" in str(e.value)


def test_bank_axis_expands_into_sampler(tmp_path, tiny_defaults):
    m = write_matrix(tmp_path / "m.yaml", tiny_defaults,
                     {"bank_size": [16, 32, 64], "seed": [0, 1], "arm": [{"name": "impon", "sampler": {"name": "impon"}}]})
    runs = matrix_mod.load(str(m)).runs
    assert sorted({r["sampler"]["bank_size"] for r in runs}) == [16, 32, 64] and len(runs) == 6
    assert len({r.run_id for r in runs}) == 6 and all("-bank" in r.run_id for r in runs)


def test_shards_partition_the_runs():
    runs = list(matrix_mod.load("paper").runs)
    parts = [shard(runs, f"{i}/4") for i in range(4)]
    ids = [r.run_id for p in parts for r in p]
    assert sorted(ids) == sorted(r.run_id for r in runs) and len(ids) == len(set(ids))
    with pytest.raises(UserError):
        shard(runs, "4/4")


def _register_raising_sampler(monkeypatch) -> None:
    """A sampler that fails mid-run (bad input such as a bank larger than the training set
    is now refused before anything runs, so it cannot play this part), registered in a
    private copy of the registry (undone after the test)."""
    import samplers
    from samplers import registry
    from samplers.uniform import Uniform

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @samplers.register("test_raises_in_training")
    class RaisesInTraining(Uniform):
        def next_batch(self, ctx):
            raise RuntimeError("boom in epoch 1")


def test_failing_and_diverging_runs_do_not_stop_the_matrix(tmp_path, tiny_root, tiny_defaults, capsys,
                                                           monkeypatch):
    _register_raising_sampler(monkeypatch)
    grid = {"arm": [
        {"name": "explodes", "optimizer": {"name": "sgd", "lr": 1.0e12}, "schedule": {"name": "constant"}},
        {"name": "raises", "sampler": {"name": "test_raises_in_training"}},
        {"name": "fine"},
    ]}
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "epochs": 1}, grid)
    rc = main(["run", str(m), "--data-root", str(tiny_root), "--results", str(tmp_path / "r"),
               "--no-download", "--device", "cpu"])
    assert rc == 1  # not everything finished
    st = _statuses(tmp_path / "r")
    by_arm = {k.split("-")[1]: v for k, v in st.items()}
    assert by_arm == {"explodes": "diverged", "raises": "failed", "fine": "done"}
    failed = next(p for p in (tmp_path / "r" / "t").glob("tiny-raises*/run.json"))
    assert "boom in epoch 1" in json.loads(failed.read_text())["error"]
    # Re-running retries only the failed run; done and diverged ones are finished.
    capsys.readouterr()
    rc = main(["run", str(m), "--data-root", str(tiny_root), "--results", str(tmp_path / "r"),
               "--no-download", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 1 and out.count(": failed") == 1 and "explodes" not in out.split("status:")[0]


def test_sigkilled_matrix_resumes_without_retraining_finished_runs(tmp_path, tiny_root, tiny_defaults):
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "epochs": 2},
                     {"seed": [0, 1, 2], "arm": [{"name": "sgd"}]})
    results = tmp_path / "r"
    # The second run (seed 1) kills its process after step 2 of epoch 1: seed 0 is done,
    # seed 1 is half-trained, seed 2 never started (benchmarks/faults.py, no sleeps).
    proc = _cli_proc(m, tiny_root, results,
                     env_extra={"IMPON_TEST_KILL_AT": "epoch:1:iteration:2", "IMPON_TEST_RUN": "-seed1-"})
    assert proc.wait(timeout=300) == -signal.SIGKILL, proc.stdout.read()
    before = _statuses(results)
    finished = [k for k, v in before.items() if v == "done"]
    assert [k.split("-")[2] for k in finished] == ["seed0"], before
    assert [k.split("-")[2] for k, v in before.items() if v == "running"] == ["seed1"], before
    stamps = {k: _fingerprint(results / "t" / k) for k in finished}
    again = _cli_proc(m, tiny_root, results)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    assert set(_statuses(results).values()) == {"done"} and len(_statuses(results)) == 3
    for k in finished:
        assert _fingerprint(results / "t" / k) == stamps[k], f"{k} was re-trained"
        assert k not in out.split("status:")[0]


def test_two_runners_train_each_run_exactly_once(tmp_path, tiny_root, tiny_defaults):
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "epochs": 1},
                     {"seed": [0, 1, 2, 3], "arm": [{"name": "sgd"}]})
    results = tmp_path / "r"
    a, b = _cli_proc(m, tiny_root, results), _cli_proc(m, tiny_root, results)
    out_a, _ = a.communicate(timeout=300)
    out_b, _ = b.communicate(timeout=300)
    trained_a = set(re.findall(r"\] (\S+): done", out_a))
    trained_b = set(re.findall(r"\] (\S+): done", out_b))
    assert not trained_a & trained_b, (out_a, out_b)
    assert len(trained_a | trained_b) == 4
    assert set(_statuses(results).values()) == {"done"}


def test_lock_is_exclusive_and_released(tmp_path, tiny_defaults):
    from benchmarks.config import RunSpec
    from benchmarks.runner import RunOptions, run_lock

    spec = RunSpec.from_dict({**tiny_defaults, "matrix": "t"})
    opts = RunOptions(results=str(tmp_path))
    with run_lock(opts, spec) as first:
        assert first
        code = ("import sys; sys.path.insert(0, %r); from benchmarks.runner import RunOptions, run_lock;"
                "from benchmarks.config import RunSpec; import json;"
                "spec = RunSpec.from_dict(json.loads(sys.argv[1]));"
                "cm = run_lock(RunOptions(results=sys.argv[2]), spec); print(cm.__enter__())") % str(REPO)
        held = subprocess.run([sys.executable, "-c", code, json.dumps(spec.to_dict()), str(tmp_path)],
                              capture_output=True, text=True, cwd=REPO)
        assert held.stdout.strip() == "False", held.stderr
    with run_lock(opts, spec) as again:
        assert again


def test_slurm_path_submits_and_completes_with_local_executor(tmp_path, tiny_root, tiny_defaults, capsys):
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "epochs": 1},
                     {"seed": [0, 1], "arm": [{"name": "sgd"}]})
    rc = main(["run", str(m), "--data-root", str(tiny_root), "--results", str(tmp_path / "r"),
               "--no-download", "--device", "cpu", "--launcher", "slurm", "--slurm-cluster", "local",
               "--wait", "--time", "10"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "submitted 2 runs" in out
    assert set(_statuses(tmp_path / "r").values()) == {"done"} and len(_statuses(tmp_path / "r")) == 2
    assert (tmp_path / "r" / "t" / ".submitit").is_dir()


def test_jobs_run_in_parallel_processes(tmp_path, tiny_root, tiny_defaults, capsys):
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "epochs": 1},
                     {"seed": [0, 1], "arm": [{"name": "sgd"}]})
    rc = main(["run", str(m), "--data-root", str(tiny_root), "--results", str(tmp_path / "r"),
               "--no-download", "--device", "cpu", "--jobs", "2"])
    assert rc == 0, capsys.readouterr()
    assert set(_statuses(tmp_path / "r").values()) == {"done"}
    # each of the 2 workers gets its share of the cores (no thread oversubscription)
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    for run_json in (tmp_path / "r").glob("*/*/run.json"):
        assert f"{share} threads" in json.loads(run_json.read_text())["device"]


def test_deleting_lock_folders_mid_run_does_not_let_a_second_runner_train(tmp_path, tiny_root, tiny_defaults):
    """The lock lives in the run folder: whatever lock folder a user deletes mid-run, a
    second runner still sees the run as taken, and says by whom."""
    import shutil

    from benchmarks.faults import PAUSED_LINE

    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "epochs": 1}, {"seed": [0], "arm": [{"name": "sgd"}]})
    results = tmp_path / "r"
    first = _cli_proc(m, tiny_root, results, env_extra={"IMPON_TEST_PAUSE_AT": "epoch:1:iteration:2"})
    try:
        line = wait_paused(first)  # blocks until the first runner is provably mid-epoch
        assert line.split() == [PAUSED_LINE, str(first.pid)]
        for lock_dir in [p for p in results.rglob("*lock*") if p.is_dir()] + [results / "t" / ".locks"]:
            shutil.rmtree(lock_dir, ignore_errors=True)
        second = _cli_proc(m, tiny_root, results)
        out, _ = second.communicate(timeout=300)
        assert second.returncode == 1, out
        assert re.search(rf": skipped-locked \(being trained by pid {first.pid} on host \S+\)", out), out
        run = next((results / "t").glob("tiny-*"))
        assert (run / "iterations.csv").read_text().count("\n") == 1  # header only: nobody trained
    finally:
        first.kill()
        first.wait()


def test_a_run_that_never_starts_leaves_only_its_failure_record(tmp_path, tiny_defaults):
    from benchmarks.config import RunSpec
    from benchmarks.runner import RunOptions, execute, run_dir

    spec = RunSpec.from_dict({**tiny_defaults, "matrix": "t"})
    opts = RunOptions(results=str(tmp_path / "r"), data_root=str(tmp_path / "no-data"), download=False,
                      device="cpu")
    out = execute(spec, opts)
    assert out.status == "failed" and "no file" in out.error
    # The failed setup is recorded (so the report lists it), and nothing else is left.
    folder = run_dir(opts, spec)
    assert sorted(p.name for p in folder.iterdir() if p.name != ".lock") == ["run.json"]
    assert json.loads((folder / "run.json").read_text())["status"] == "failed"


def test_lock_file_names_its_holder_and_sits_in_the_run_folder(tmp_path, tiny_defaults):
    from benchmarks.config import RunSpec
    from benchmarks.runner import RunOptions, hold_run, run_dir

    spec = RunSpec.from_dict({**tiny_defaults, "matrix": "t"})
    folder = run_dir(RunOptions(results=str(tmp_path)), spec)
    with hold_run(folder) as holder:
        assert holder is None
        text = (folder / ".lock").read_text()
        assert text.startswith(f"pid {os.getpid()} on host ")
        with hold_run(folder) as other:  # a second open file description: a second runner
            assert other == text.strip()
    assert not folder.exists()  # nothing but the lock was ever in it
