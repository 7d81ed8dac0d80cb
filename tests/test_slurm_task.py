"""The SLURM launcher's parts that need no cluster: sbatch options, the requeue rule, the
job-state watcher without accounting. The real-cluster tests are in tests/slurm
(``make test-slurm``)."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from benchmarks import slurm as slurm_mod
from benchmarks.cli import main
from benchmarks.config import RunSpec
from benchmarks.errors import UserError
from benchmarks.runner import RunOptions, run_dir
from benchmarks.slurm import SlurmOptions, slurm_parameters
from conftest import write_matrix


def _spec(tiny_defaults: dict) -> RunSpec:
    return RunSpec.from_dict({**tiny_defaults, "matrix": "t"})


def test_cluster_options_reach_sbatch(tiny_defaults):
    from submitit.slurm.slurm import _make_sbatch_string

    opts = SlurmOptions(partition="gpu", time_min=30, gpus_per_task=2, account="proj", qos="low",
                        constraint="a100", array_parallelism=3, sbatch=("mail-type=END", "--exclusive"),
                        setup=("module load cuda",))
    p = slurm_parameters([_spec(tiny_defaults)], opts)
    assert p["slurm_account"] == "proj" and p["slurm_qos"] == "low" and p["slurm_constraint"] == "a100"
    assert p["slurm_partition"] == "gpu" and p["slurm_array_parallelism"] == 3
    assert p["slurm_additional_parameters"] == {"mail-type": "END", "exclusive": True}
    assert p["slurm_setup"] == ["module load cuda"] and p["gpus_per_node"] == 2
    assert p["slurm_signal_delay_s"] == 90 and p["timeout_min"] == 30
    # what submitit writes from them (its own names: time, gpus_per_node, ...)
    native = {k.removeprefix("slurm_"): v for k, v in p.items()
              if k.startswith("slurm_") and k != "slurm_additional_parameters"}
    text = _make_sbatch_string(command="run", folder="/tmp/x", map_count=5,
                               additional_parameters=p["slurm_additional_parameters"], **native)
    for line in ("#SBATCH --account=proj", "#SBATCH --qos=low", "#SBATCH --constraint=a100",
                 "#SBATCH --array=0-4%3", "#SBATCH --mail-type=END", "#SBATCH --exclusive",
                 "#SBATCH --signal=USR2@90", "module load cuda"):
        assert line in text, text


def test_short_time_limits_get_the_warning_inside_the_job_and_no_gpu_flag(tiny_defaults):
    p = slurm_parameters([_spec(tiny_defaults)], SlurmOptions(time_min=1, gpus_per_task=0))
    assert p["slurm_signal_delay_s"] == 30  # half of 1 minute, not 90 s before the start
    assert "gpus_per_node" not in p


@pytest.mark.parametrize("bad,expected", [
    (["--sbatch", "=x"], "--sbatch '=x': expected an sbatch flag"),
    (["--sbatch", "mail-type="], "--sbatch 'mail-type='"),
    (["--time", "0"], "--time 0: must be >= 1"),
    (["--array-parallelism", "0"], "--array-parallelism 0: must be >= 1"),
])
def test_bad_slurm_options_are_one_line_and_touch_nothing(tmp_path, tiny_root, tiny_defaults, capsys,
                                                         bad, expected):
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "epochs": 1}, {"seed": [0], "arm": [{"name": "sgd"}]})
    rc = main(["run", str(m), "--data-root", str(tiny_root), "--results", str(tmp_path / "r"),
               "--no-download", "--device", "cpu", "--launcher", "slurm", "--slurm-cluster", "local", *bad])
    err = capsys.readouterr().err
    assert rc == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def _task(tmp_path: Path, tiny_defaults: dict) -> slurm_mod.RunTask:
    spec = _spec({**tiny_defaults, "epochs": 5})
    return slurm_mod.RunTask(spec.to_dict(), {**RunOptions(results=str(tmp_path)).__dict__}, time_min=7)


def _signal_at(task: slurm_mod.RunTask, start: int, reached: int):
    task._start_epoch, task._reached = start, reached
    return task.checkpoint()


def test_requeue_continues_while_epochs_progress_and_stops_when_they_do_not(tmp_path, tiny_defaults):
    task = _task(tmp_path, tiny_defaults)
    folder = run_dir(RunOptions(results=str(tmp_path)), _spec({**tiny_defaults, "epochs": 5}))
    folder.mkdir(parents=True)
    nxt = _signal_at(task, 0, 2).function          # progress: requeue, no stall
    assert (nxt.stalls, nxt.requeues) == (0, 1)
    nxt = _signal_at(nxt, 2, 2).function           # first job without a new epoch: one more try
    assert (nxt.stalls, nxt.requeues) == (1, 2)
    again = _signal_at(nxt, 2, 3).function         # progress again resets the count
    assert again.stalls == 0
    with pytest.raises(slurm_mod.RunStalled) as e:  # two in a row: stop, say what to do
        _signal_at(_signal_at(again, 3, 3).function, 3, 3)
    msg = str(e.value)
    assert "without finishing an epoch (stuck at epoch 3 of 5)" in msg and "raise --time (now 7 min)" in msg
    history = json.loads((folder / slurm_mod.REQUEUES_FILE).read_text())
    assert [(h["epoch_reached"], h["requeued"]) for h in history] == \
        [(2, True), (2, True), (3, True), (3, True), (3, False)]


def test_signal_before_the_first_epoch_counts_as_no_progress(tmp_path, tiny_defaults):
    task = _task(tmp_path, tiny_defaults)
    run_dir(RunOptions(results=str(tmp_path)), _spec({**tiny_defaults, "epochs": 5})).mkdir(parents=True)
    task._start_epoch = task._reached = None          # killed while loading data
    assert task.checkpoint().function.stalls == 1
    # only the state that must survive a requeue is pickled
    assert task.__getstate__()["_reached"] is None


def _fake_bin(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_watcher_without_accounting_is_quiet_and_uses_squeue(tmp_path, monkeypatch, caplog):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _fake_bin(bindir, "sacct", "echo 'Slurm accounting storage is disabled' >&2; exit 1\n")
    _fake_bin(bindir, "squeue", f"cat {tmp_path / 'queue'}\n")
    (tmp_path / "queue").write_text("12_0|RUNNING|node1\n12_1|PENDING|\n")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    watcher = slurm_mod.quiet_watcher()
    with caplog.at_level(logging.DEBUG, logger="submitit"):
        assert not watcher.is_done("12_0", mode="force")
        assert watcher.get_state("12_1", mode="force") == "PENDING"
        (tmp_path / "queue").write_text("12_1|RUNNING|node1\n")  # 12_0 left the queue
        watcher.update()  # (a "force" poll within 1 ms of the last one is skipped by submitit)
        assert watcher.is_done("12_0", mode="cache") and not watcher.is_done("12_1", mode="cache")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_sbatch_flags_reject_bad_names():
    assert slurm_mod.sbatch_flags(["--gres=gpu:2", "requeue"]) == {"gres": "gpu:2", "requeue": True}
    with pytest.raises(UserError):
        slurm_mod.sbatch_flags(["Bad Flag"])
