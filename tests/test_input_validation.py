"""Issue 10, validation holes: every bad input is one line, exit 2, nothing on disk changed.

Items: 4 (labels and the class count), 7 (value ranges; setup failures recorded),
8 (plain names), 9 (non-UTF-8 matrix, run.json not an object), 10 (YAML hazards),
11 (--set of a grid axis).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks import matrix as matrix_mod
from benchmarks import runner
from benchmarks.cli import main
from benchmarks.config import RunSpec, parse_set
from benchmarks.data import load_splits
from benchmarks.errors import UserError
from conftest import write_matrix, run_cli, snapshot
from data_fixtures import make_images
from results_fixtures import FakeRun, write_run


_snapshot, _cli = snapshot, run_cli  # helpers shared by the CLI tests (tests/conftest.py)


def _one_line_exit_2(rc: int, err: str, needle: str) -> None:
    assert rc == 2, err
    assert needle in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# ----------------------------------------------------------------- 4: labels
def _prepared(root: Path, name: str, y_train, y_test, **extra) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    np.savez(folder / "train.npz", x=make_images(len(y_train)), y=np.asarray(y_train, np.int64), **extra)
    np.savez(folder / "test.npz", x=make_images(len(y_test), 1), y=np.asarray(y_test, np.int64))


@pytest.mark.parametrize("y_train,y_test,extra,needle", [
    # a label 10 for a dataset that states 10 classes
    ([*range(10), 10], list(range(10)), {"num_classes": np.int64(10)}, "train label 10"),
    # {0..8, 999}: was a 1000-class model
    ([*range(9), 999], list(range(9)), {}, "are not 0..C-1"),
    # C read from the labels: a label only in train (0..10 vs 0..9) is caught
    ([*range(10), 10], list(range(10)), {}, "train label(s) 10 never occur in test.npz"),
    # a test label the training set never shows
    (list(range(9)), list(range(10)), {"num_classes": np.int64(10)}, "test label(s) 9 never occur"),
    (list(range(10)), [*range(10), 12], {}, "test label 12"),
])
def test_labels_outside_the_stated_classes_are_an_error(tmp_path, tiny_defaults, capsys,
                                                        y_train, y_test, extra, needle):
    root = tmp_path / "data"
    _prepared(root, "lab", y_train, y_test, **extra)
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "dataset": "lab", "batch_size": 4},
                     {"arm": [{"name": "sgd"}]})
    rc, _, err = _cli(capsys, m, root, tmp_path / "r")
    _one_line_exit_2(rc, err, needle)
    assert not (tmp_path / "r").exists()


def test_class_count_rule_for_prepared_datasets(tmp_path):
    # stated: a train split without class 9 still builds a 10-class model
    _prepared(tmp_path, "stated", list(range(9)), list(range(9)), num_classes=np.int64(10))
    assert load_splits("stated", tmp_path, False)[2].num_classes == 10
    # read from the labels: contiguous 0..C-1 in both splits
    _prepared(tmp_path, "read", list(range(7)) * 2, list(range(7)))
    assert load_splits("read", tmp_path, False)[2].num_classes == 7
    _prepared(tmp_path, "badstated", list(range(3)), list(range(3)), num_classes=np.array([3, 4]))
    with pytest.raises(UserError, match="num_classes is"):
        load_splits("badstated", tmp_path, False)


# ----------------------------------------------------------------- 7: value ranges
@pytest.mark.parametrize("patch,needle", [
    ({"model": {"name": "resnet18", "width": 0}}, "defaults.model.width: must be a finite number > 0"),
    ({"augment": {"crop_padding": -1}}, "defaults.augment.crop_padding: must be >= 0"),
    ({"optimizer": {"name": "sgd", "lr": 0.05, "momentum": -1}}, "defaults.optimizer.momentum: must be in [0, 1)"),
    ({"optimizer": {"name": "adam", "betas": [2, 3]}}, "defaults.optimizer.betas: must be a list of two"),
    ({"optimizer": {"name": "adam", "betas": [0.9]}}, "defaults.optimizer.betas: must be a list of two"),
    ({"sampler": {"name": "selective_backprop", "beta": -1}}, "defaults.sampler.beta: beta must be a finite number >= 0"),
    ({"schedule": {"name": "step", "milestones": ["a"]}}, "defaults.schedule.milestones: must be a list of positive"),
    ({"schedule": {"name": "step", "milestones": [0]}}, "defaults.schedule.milestones: must be a list of positive"),
    ({"optimizer": {"name": "sgd", "lr": float("nan")}}, "defaults.optimizer.lr: must be a finite number > 0"),
    ({"optimizer": {"name": "sgd", "lr": float("inf")}}, "defaults.optimizer.lr: must be a finite number > 0"),
    ({"epochs": 0}, "defaults.epochs: must be >= 1"),
    ({"batch_size": 0}, "defaults.batch_size: must be >= 1"),
    ({"sampler": {"name": "impon", "bank_size": 200}}, "sampler.bank_size: 200 (arm sgd) is larger than the training set"),
    ({"validation": 90}, "batch_size: 16 is larger than the training set"),
])
def test_out_of_range_values_are_one_line_exit_2(tmp_path, tiny_root, tiny_defaults, capsys,
                                                 patch, needle):
    done = tmp_path / "results"
    m = write_matrix(tmp_path / "ok.yaml", {**tiny_defaults, "epochs": 1}, {"arm": [{"name": "sgd"}]})
    assert _cli(capsys, m, tiny_root, done)[0] == 0
    before = _snapshot(done)
    bad = write_matrix(tmp_path / "bad.yaml", {**tiny_defaults, **patch}, {"arm": [{"name": "sgd"}]})
    rc, _, err = _cli(capsys, bad, tiny_root, done)
    _one_line_exit_2(rc, err, needle)
    assert _snapshot(done) == before


def test_nan_lr_from_yaml_and_from_set(tmp_path, tiny_defaults):
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"name": "t", "defaults": tiny_defaults, "grid": {}})
                 + "")
    with pytest.raises(UserError, match="optimizer.lr: must be a finite number > 0"):
        matrix_mod.load(str(m), parse_set(["optimizer.lr=.nan"]))
    with pytest.raises(UserError, match="optimizer.lr: must be a finite number > 0"):
        matrix_mod.load(str(m), parse_set(["optimizer.lr=.inf"]))


def test_setup_failure_is_written_to_run_json_and_listed_by_the_report(tmp_path, tiny_defaults):
    """A run whose setup fails after validation (here: its data vanished) is recorded as
    failed with the error, and plots list it among the runs left out."""
    spec = RunSpec.from_dict({**tiny_defaults, "matrix": "t"})
    opts = runner.RunOptions(results=str(tmp_path / "r"), data_root=str(tmp_path / "nodata"),
                             download=False, device="cpu")
    out = runner.execute(spec, opts)
    assert out.status == "failed"
    info = json.loads((runner.run_dir(opts, spec) / "run.json").read_text())
    assert info["status"] == "failed" and "setup failed" in info["error"] and "tiny" in info["error"]
    assert runner.read_status(runner.run_dir(opts, spec)) == "failed"  # retried next time
    from plots.aggregate import load_matrix
    write_run(tmp_path / "r" / "t", FakeRun(seed=0, matrix="t"))
    res = load_matrix(tmp_path / "r" / "t")
    left = res.left_out.set_index("run_id")
    assert left.loc[spec.run_id, "status"] == "failed"
    assert "setup failed" in left.loc[spec.run_id, "error"]


# ----------------------------------------------------------------- 8: names
@pytest.mark.parametrize("name", ["/abs/path", "../x", "..", "a/b", "a b"])
def test_matrix_name_must_be_a_plain_identifier(tmp_path, tiny_root, tiny_defaults, capsys, name):
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"name": name, "defaults": tiny_defaults, "grid": {"arm": [{"name": "sgd"}]}}))
    (tmp_path / "r").mkdir()
    rc, _, err = _cli(capsys, m, tiny_root, tmp_path / "r")
    _one_line_exit_2(rc, err, "name: ")
    assert "not a plain name" in err
    assert list((tmp_path / "r").iterdir()) == [] and not (tmp_path / "x").exists()


def test_arm_name_must_be_a_plain_identifier(tmp_path, tiny_defaults):
    m = write_matrix(tmp_path / "m.yaml", tiny_defaults, {"arm": [{"name": "../up"}]})
    with pytest.raises(UserError, match=r"grid.arm\[0\].name: '../up' is not a plain name"):
        matrix_mod.load(str(m))


# ----------------------------------------------------------------- 9: encodings, run.json
def test_matrix_that_is_not_utf8_is_one_line(tmp_path, capsys):
    m = tmp_path / "m.yaml"
    m.write_bytes("name: t\ndescription: caf\u00e9\n".encode("latin-1"))
    rc, _, err = _cli(capsys, m, tmp_path, tmp_path / "r")
    _one_line_exit_2(rc, err, "not UTF-8 text (byte 0xe9 at offset")


def test_run_json_that_is_not_an_object_does_not_stop_the_runner(tmp_path, tiny_root, tiny_defaults,
                                                                 capsys):
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "epochs": 1},
                     {"arm": [{"name": "a"}, {"name": "b"}]})
    specs = matrix_mod.load(str(m)).runs
    folder = tmp_path / "r" / "t" / specs[0].run_id
    folder.mkdir(parents=True)
    (folder / "run.json").write_text("[1, 2, 3]\n")
    assert runner.read_status(folder) == "pending"
    rc, out, err = _cli(capsys, m, tiny_root, tmp_path / "r")
    assert rc == 0 and "Traceback" not in err, err
    assert json.loads((folder / "run.json").read_text())["status"] == "done"


def test_plots_leave_out_a_run_json_that_is_not_an_object(tmp_path):
    from plots.aggregate import load_matrix
    write_run(tmp_path, FakeRun(seed=0))
    bad = write_run(tmp_path, FakeRun(seed=1))
    (bad / "run.json").write_text('"done"\n')
    res = load_matrix(tmp_path)
    (row,) = res.left_out.itertuples()
    assert row.run_id == bad.name and "not an object" in row.reason
    assert res.runs["included"].sum() == 1


# ----------------------------------------------------------------- 10: YAML hazards
def test_alias_bomb_is_rejected_with_one_line(tmp_path, capsys):
    lines = ["name: t", "defaults:", "  l0: &l0 [a, a, a, a, a, a, a, a, a, a]"]
    for i in range(1, 10):  # 10^10 values once expanded
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    m = tmp_path / "bomb.yaml"
    m.write_text("\n".join(lines) + "\n")
    rc, _, err = _cli(capsys, m, tmp_path, tmp_path / "r")
    _one_line_exit_2(rc, err, "alias bomb")


def test_small_aliases_and_merge_keys_still_work(tmp_path, tiny_defaults):
    text = yaml.safe_dump({"name": "t", "defaults": tiny_defaults}) + (
        "grid:\n  arm:\n    - &base {name: a, sampler: {name: uniform}}\n"
        "    - {<<: *base, name: b}\n")
    (tmp_path / "m.yaml").write_text(text)
    assert [r["arm"] for r in matrix_mod.load(str(tmp_path / "m.yaml")).runs] == ["a", "b"]


def test_duplicate_keys_are_rejected_naming_key_and_line(tmp_path, capsys):
    m = tmp_path / "dup.yaml"
    m.write_text("name: t\ndefaults:\n  dataset: tiny\n  epochs: 30\n  batch_size: 8\n  epochs: 3\n")
    rc, _, err = _cli(capsys, m, tmp_path, tmp_path / "r")
    _one_line_exit_2(rc, err, "line 6: duplicate key 'epochs' (first at line 4)")


def test_oversized_matrix_file_is_rejected(tmp_path, capsys):
    m = tmp_path / "big.yaml"
    m.write_text("name: t\ndescription: " + "x" * (2 << 20) + "\n")
    rc, _, err = _cli(capsys, m, tmp_path, tmp_path / "r")
    _one_line_exit_2(rc, err, "larger than 1024 KiB")


# ----------------------------------------------------------------- 11: --set of a grid axis
def test_set_of_a_grid_axis_replaces_the_axis(tmp_path, tiny_defaults):
    m = write_matrix(tmp_path / "m.yaml", tiny_defaults,
                     {"dataset": ["tiny", "other"], "seed": [0, 1, 2], "model.width": [0.0625, 0.125],
                      "arm": [{"name": "a"}, {"name": "b"}]})
    assert len(matrix_mod.load(str(m)).runs) == 2 * 3 * 2 * 2
    runs = matrix_mod.load(str(m), parse_set(["seed=5"])).runs
    assert len(runs) == 2 * 2 * 2 and {r["seed"] for r in runs} == {5}
    runs = matrix_mod.load(str(m), parse_set(["dataset=tiny"])).runs
    assert {r["dataset"] for r in runs} == {"tiny"} and len(runs) == 12
    runs = matrix_mod.load(str(m), parse_set(["model.width=0.25"])).runs
    assert {r["model"]["width"] for r in runs} == {0.25} and len(runs) == 12
    runs = matrix_mod.load(str(m), parse_set(["arm=b", "seed=0", "epochs=1"])).runs
    assert [(r["arm"], r["seed"], r["epochs"]) for r in runs] == [("b", 0, 1)] * 4  # 2 datasets x 2 widths
    with pytest.raises(UserError, match="--set arm=c: no arm of that name; the matrix has a, b"):
        matrix_mod.load(str(m), parse_set(["arm=c"]))


def test_set_of_the_bank_size_axis(tmp_path, tiny_defaults):
    m = write_matrix(tmp_path / "m.yaml", tiny_defaults,
                     {"bank_size": [32, 64], "arm": [{"name": "i", "sampler": {"name": "impon"}}]})
    runs = matrix_mod.load(str(m), parse_set(["sampler.bank_size=48"])).runs
    assert [r["sampler"]["bank_size"] for r in runs] == [48]
