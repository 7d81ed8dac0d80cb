"""``--log tensorboard`` / ``--log wandb`` (benchmarks/sinks.py), read back with each tool's
own reader: the logged points are exactly the CSVs' rows, each step once, also after a
kill and a resume; a missing package is one line naming the extra, with nothing written;
run ids do not depend on ``--log``.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmarks.sinks import MARKER, wandb_run_id
from conftest import REPO, run_cli, write_matrix

ARM = {"name": "p_sgd", "sampler": {"name": "p_sgd"}}   # p-SGD adds sampler columns to epochs.csv


def _matrix(tmp_path: Path, defaults: dict) -> Path:
    # 16 of the 96 training examples held out: val_loss/val_acc columns; 80 train = 5 steps
    return write_matrix(tmp_path / "m.yaml", {**defaults, "validation": 16},
                        {"seed": [0], "arm": [ARM]})


def _run_folder(results: Path) -> Path:
    (folder,) = [p for p in (results / "t").iterdir() if p.is_dir() and not p.name.startswith(".")]
    return folder


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _f32(text: str) -> float:
    return float(np.float32(float(text)))


def _expected(folder: Path, convert=_f32) -> dict[str, dict[int, float]]:
    """tag -> {step: value} the CSVs hold (``convert``: the sink's precision)."""
    out: dict[str, dict[int, float]] = {}
    for row in _csv(folder / "iterations.csv"):
        it = int(row["iteration"])
        out.setdefault("train/loss", {})[it] = convert(row["loss"])
        out.setdefault("train/lr", {})[it] = convert(row["lr"])
    names = {"test_loss": "test/loss", "test_acc": "test/acc", "val_loss": "val/loss",
             "val_acc": "val/acc", "train_loss": "train/epoch_loss", "backprops": "counters/backprops",
             "forwards": "counters/forwards", "diag_forwards": "counters/diag_forwards",
             "train_seconds": "seconds/train", "eval_seconds": "seconds/eval",
             "diag_seconds": "seconds/diag", "epoch": "epoch"}
    for row in _csv(folder / "epochs.csv"):
        for col, text in row.items():
            if col != "iteration" and text:   # empty cells (NaN) are not logged
                tag = names.get(col, f"sampler/{col}")
                out.setdefault(tag, {})[int(row["iteration"])] = convert(text)
    return out


# --- TensorBoard ------------------------------------------------------------------------------
def _tb_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows: its own EventAccumulator (purges applied), in file order."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(folder / "tensorboard"), size_guidance={SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _tb_raw_counts(folder: Path) -> Counter:
    """(tag, step) -> how often it is physically in the event files (no purging)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    counts: Counter = Counter()
    for path in sorted((folder / "tensorboard").glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                counts[(value.tag, event.step)] += 1
    return counts


def _assert_tb_matches_csvs(folder: Path) -> None:
    shown = _tb_scalars(folder)
    expected = _expected(folder)
    for tag, points in expected.items():
        assert tag in shown, (tag, sorted(shown))
        steps = [s for s, _ in shown[tag]]
        assert steps == sorted(points), (tag, steps)      # each step once, in order
        assert dict(shown[tag]) == points, tag
    assert set(shown) == set(expected)


def _tb_needed():
    pytest.importorskip("tensorboard")
    pytest.importorskip("torch.utils.tensorboard")


def test_tensorboard_holds_exactly_the_csv_values(capsys, tmp_path, tiny_root, tiny_defaults):
    _tb_needed()
    m = _matrix(tmp_path, tiny_defaults)
    rc, out, err = run_cli(capsys, m, tiny_root, tmp_path / "r", "--log", "tensorboard")
    assert rc == 0, out + err
    folder = _run_folder(tmp_path / "r")
    _assert_tb_matches_csvs(folder)
    shown = _tb_scalars(folder)
    epochs = _csv(folder / "epochs.csv")
    # every epoch's test metrics, the epoch-0 row (before training) at step 0 included
    assert [s for s, _ in shown["test/acc"]] == [int(r["iteration"]) for r in epochs] == [0, 5, 10]
    assert len(shown["train/loss"]) == 10 and "sampler/psgd_ess" in shown and "val/acc" in shown
    assert json.loads((folder / "tensorboard" / MARKER).read_text()) == {"step": 10}
    # (e) --log is a run option: the run id (folder) is the one a run without it gets
    rc, plain, _ = run_cli(capsys, m, tiny_root, tmp_path / "r", "--dry-run")
    rc2, logged, _ = run_cli(capsys, m, tiny_root, tmp_path / "r", "--dry-run", "--log", "tensorboard")
    assert rc == rc2 == 0 and plain == logged and folder.name in plain


def _cli_proc(matrix: Path, root: Path, results: Path, *extra: str, env_extra=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "benchmarks", "run", str(matrix), "--data-root",
                             str(root), "--results", str(results), "--no-download", "--device", "cpu",
                             *extra], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("case", ["resume", "record_behind", "added_on_resume"])
def test_killed_and_resumed_run_has_each_step_once(capsys, tmp_path, tiny_root, tiny_defaults, case):
    """SIGKILL mid-epoch 2 (after epoch 1's checkpoint), then resume. ``record_behind``: the
    sink's record says less than its event files hold (a kill between the two writes), so
    the resumed writer must purge; ``added_on_resume``: --log only on the resumed run, which
    backfills every earlier step from the CSVs."""
    _tb_needed()
    m = _matrix(tmp_path, tiny_defaults)
    results = tmp_path / "r"
    first = () if case == "added_on_resume" else ("--log", "tensorboard")
    proc = _cli_proc(m, tiny_root, results, *first, env_extra={"IMPON_TEST_KILL_AT": "epoch:2:iteration:2"})
    assert proc.wait(timeout=300) == -signal.SIGKILL, proc.stdout.read()
    folder = _run_folder(results)
    if case == "added_on_resume":
        assert not (folder / "tensorboard").exists()
    else:
        assert json.loads((folder / "tensorboard" / MARKER).read_text()) == {"step": 5}
        assert {s for (t, s) in _tb_raw_counts(folder) if t == "train/loss"} == {1, 2, 3, 4, 5}
    if case == "record_behind":
        (folder / "tensorboard" / MARKER).write_text(json.dumps({"step": 2}))
    rc, out, err = run_cli(capsys, m, tiny_root, results, "--log", "tensorboard")
    assert rc == 0, out + err
    _assert_tb_matches_csvs(folder)
    raw = _tb_raw_counts(folder)
    if case == "record_behind":   # steps 3..5 are in both files; the purge hides the old ones
        assert raw[("train/loss", 4)] == 2 and raw[("test/acc", 5)] == 2
        assert len(list((folder / "tensorboard").glob("events.out.tfevents.*"))) == 2
    else:                         # physically once, too
        assert max(raw.values()) == 1, [k for k, v in raw.items() if v > 1]


def test_diverged_run_logs_the_rows_it_keeps(tmp_path, tiny_root, tiny_defaults):
    """A diverged run keeps the iteration rows up to its first non-finite loss: so does the sink."""
    _tb_needed()
    from benchmarks.config import RunSpec
    from benchmarks.train import train_one

    spec = RunSpec.from_dict({**tiny_defaults, "matrix": "t", "optimizer": {"name": "sgd", "lr": 1e12}})
    folder = tmp_path / "t" / spec.run_id
    result = train_one(spec, folder, data_root=tiny_root, download=False, device="cpu", log=("tensorboard",))
    assert result.status == "diverged", result
    rows = _csv(folder / "iterations.csv")
    shown = dict(_tb_scalars(folder)["train/loss"])
    assert sorted(shown) == [int(r["iteration"]) for r in rows]
    assert not math.isfinite(shown[len(rows)]) and not math.isfinite(float(rows[-1]["loss"]))


# --- W&B --------------------------------------------------------------------------------------
def _wandb_records(path: Path):
    """The records of an offline ``run-<id>.wandb`` file, decoded with wandb's own protobuf
    schema. The framing is LevelDB's log format (wandb no longer ships a Python reader)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1, data[:7]
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:                    # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:                   # zero padding up to the next block
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            payload = chunk
        elif kind == 2:
            pending = chunk
            continue
        elif kind == 3:
            pending += chunk
            continue
        else:
            payload, pending = pending + chunk, b""
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def _item_value(item):
    which = item.WhichOneof("value")
    if which == "json":
        return json.loads(item.json)
    if which is not None and which != "none":
        return getattr(item, which)
    return json.loads(item.value_json) if item.value_json else None


def _wandb_history(path: Path) -> tuple[dict[str, dict[int, float]], list]:
    """(tag -> {step: value}, the run records) of one offline run file; a step twice fails."""
    history: dict[str, dict[int, float]] = {}
    runs = []
    for record in _wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            runs.append(record.run)
        elif kind == "history":
            step = record.history.step.num
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if key.startswith("_"):
                    continue
                assert step not in history.get(key, {}), (key, step)
                history.setdefault(key, {})[step] = _item_value(item)
    return history, runs


@pytest.fixture
def wandb_env(monkeypatch, tmp_path):
    """wandb installed, offline by our default (no WANDB_MODE), nothing outside tmp_path."""
    pytest.importorskip("wandb")
    for var in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(var, raising=False)
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))


class Interrupt(Exception):
    pass


def test_wandb_offline_resumes_the_same_run_and_logs_each_step_once(wandb_env, tmp_path, tiny_root,
                                                                       tiny_defaults):
    from benchmarks.config import RunSpec
    from benchmarks.train import train_one

    spec = RunSpec.from_dict({**tiny_defaults, "validation": 16, "arm": ARM["name"],
                              "sampler": ARM["sampler"], "matrix": "t", "seed": 3})
    folder = tmp_path / "r" / "t" / spec.run_id

    def stop_after_epoch_1(epoch, row):
        if epoch == 1:
            raise Interrupt  # as if killed right after epoch 1's checkpoint

    with pytest.raises(Interrupt):
        train_one(spec, folder, data_root=tiny_root, download=False, device="cpu",
                  on_epoch=stop_after_epoch_1, log=("wandb",))
    started = json.loads((folder / "run.json").read_text())["started"]
    assert train_one(spec, folder, data_root=tiny_root, download=False, device="cpu",
                     log=("wandb",)).status == "done"
    assert json.loads((folder / "run.json").read_text())["started"] == started

    run_id = wandb_run_id("t", spec.run_id, started)
    sessions = sorted((folder / "wandb").glob("offline-run-*"))
    # wandb names a session offline-run-<second>-<run id>, adding "-1" when the resumed
    # session starts within the same second as the first one (a fast machine)
    assert len(sessions) == 2 and all(re.search(rf"-{re.escape(run_id)}(-\d+)?$", p.name)
                                      for p in sessions), sessions
    merged: dict[str, dict[int, float]] = {}
    for i, session in enumerate(sessions):
        history, runs = _wandb_history(session / f"run-{run_id}.wandb")
        assert runs, f"no run record in {session}"
        run = runs[0]
        assert run.run_id == run_id and run.run_group == "t" and run.display_name == spec.run_id
        assert list(run.tags) == ["p_sgd", "seed3", "tiny"]
        steps = {s for points in history.values() for s in points}
        assert steps == (set(range(0, 6)) if i == 0 else set(range(6, 11))), (i, sorted(steps))
        for key, points in history.items():
            assert not set(points) & set(merged.get(key, {})), key   # no step in both sessions
            merged.setdefault(key, {}).update(points)
    expected = _expected(folder, convert=float)   # JSON doubles: exact
    for tag, points in expected.items():
        assert merged.get(tag) == points, tag
    assert json.loads((folder / "wandb" / MARKER).read_text()) == {"step": 10}


def test_wandb_respects_wandb_mode(wandb_env, monkeypatch, capsys, tmp_path, tiny_root, tiny_defaults):
    monkeypatch.setenv("WANDB_MODE", "disabled")   # the user's setting wins over our offline default
    m = _matrix(tmp_path, {**tiny_defaults, "epochs": 1})
    rc, out, err = run_cli(capsys, m, tiny_root, tmp_path / "r", "--log", "wandb")
    assert rc == 0, out + err
    folder = _run_folder(tmp_path / "r")
    assert not list((folder / "wandb").glob("offline-run-*"))
    assert json.loads((folder / "wandb" / MARKER).read_text()) == {"step": 5}


# --- missing packages, run ids ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tensorboard", "wandb"])
def test_missing_package_is_one_line_naming_the_extra(monkeypatch, capsys, tmp_path, tiny_root,
                                                      tiny_defaults, name):
    monkeypatch.setitem(sys.modules, name, None)   # as if not installed: import fails
    m = _matrix(tmp_path, tiny_defaults)
    rc, out, err = run_cli(capsys, m, tiny_root, tmp_path / "r", "--log", name)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: --log {name}: ") and f"pip install -e '.[{name}]'" in err, err
    assert not (tmp_path / "r").exists()


def test_unknown_sink_is_a_usage_error(capsys, tmp_path, tiny_root, tiny_defaults):
    m = _matrix(tmp_path, tiny_defaults)
    with pytest.raises(SystemExit) as e:
        run_cli(capsys, m, tiny_root, tmp_path / "r", "--log", "mlflow")
    assert e.value.code == 2 and not (tmp_path / "r").exists()


def test_log_is_a_run_option_that_reaches_worker_processes():
    from dataclasses import asdict

    from benchmarks.runner import RunOptions

    opts = RunOptions(log=("tensorboard", "wandb"))
    assert RunOptions(**asdict(opts)) == opts   # how execute_dict / SLURM tasks rebuild it
