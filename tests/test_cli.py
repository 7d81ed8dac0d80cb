"""Bad input: one line per problem, exit code 2, no traceback, nothing on disk changed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.config import RunSpec, parse_set, resolve
from benchmarks.errors import UserError
from conftest import write_matrix, run_cli, snapshot


_snapshot, _cli = snapshot, run_cli  # helpers shared by the CLI tests (tests/conftest.py)


@pytest.fixture
def done_results(tmp_path, tiny_root, tiny_defaults, capsys):
    """A results folder that already holds one finished run (must survive bad input)."""
    m = write_matrix(tmp_path / "ok.yaml", {**tiny_defaults, "epochs": 1}, {"arm": [{"name": "sgd"}]})
    rc, _, err = _cli(capsys, m, tiny_root, tmp_path / "results")
    assert rc == 0, err
    return tmp_path / "results"


@pytest.mark.parametrize("defaults_patch,grid,needle", [
    ({"epochs": 1, "bacth_size": 4}, {}, "defaults.bacth_size: unknown key (did you mean batch_size?)"),
    ({"epochs": "two"}, {}, "defaults.epochs: expected int, got 'two'"),
    ({"optimizer": {"name": "sgdd"}}, {}, "defaults.optimizer.name: unknown optimizer 'sgdd' (did you mean sgd?)"),
    ({"schedule": {"name": "poly"}}, {}, "defaults.schedule.name: unknown schedule 'poly'"),
    ({}, {"arm": [{"name": "a", "sampler": {"name": "impon", "bank_sise": 300}}]},
     "grid.arm[0].sampler.bank_sise: unknown key (did you mean bank_size?)"),
    ({}, {"arm": [{"name": "a", "sampler": {"name": "nope"}}]}, "grid.arm[0].sampler.name: unknown sampler 'nope'"),
    ({}, {"dataset": ["cifar11"]}, "cifar11"),
    ({"batch_size": 1000}, {}, "batch_size: 1000 is larger than the training set"),
    ({}, {"arm": [{"name": "a", "sampler": {"name": "impon", "bank_size": 8}}]}, "smaller than the batch"),
])
def test_bad_config_is_one_clear_line_exit_2(tmp_path, tiny_root, tiny_defaults, capsys, done_results,
                                            defaults_patch, grid, needle):
    before = _snapshot(done_results)
    grid = {"arm": [{"name": "sgd"}], **grid}
    m = write_matrix(tmp_path / "bad.yaml", {**tiny_defaults, **defaults_patch}, grid)
    rc, out, err = _cli(capsys, m, tiny_root, done_results)
    assert rc == 2
    assert needle in err, err
    assert "Traceback" not in err
    assert _snapshot(done_results) == before


def test_all_problems_reported_at_once(tmp_path, tiny_root, tiny_defaults, capsys):
    m = write_matrix(tmp_path / "bad.yaml", {**tiny_defaults, "epoch": 3, "optimizer": {"name": "sgd", "lr": "x"}},
                     {"arm": [{"name": "a"}, {"name": "b", "sampler": {"name": "uniform", "beta": 1}}]})
    rc, _, err = _cli(capsys, m, tiny_root, tmp_path / "r")
    assert rc == 2
    assert "defaults.epoch: unknown key (did you mean epochs?)" in err
    assert "defaults.optimizer.lr: expected float" in err
    assert "grid.arm[1].sampler.beta: unknown key" in err
    assert not (tmp_path / "r").exists()


def test_missing_and_unreadable_data(tmp_path, tiny_root, tiny_defaults, capsys):
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "dataset": "cifar10"}, {"arm": [{"name": "sgd"}]})
    rc, _, err = _cli(capsys, m, tmp_path / "nodata", tmp_path / "r")
    assert rc == 2 and "cifar10" in err and str(tmp_path / "nodata") in err
    (tiny_root / "broken").mkdir()
    (tiny_root / "broken" / "train.npz").write_bytes(b"not a zip")
    np.savez(tiny_root / "broken" / "test.npz", x=np.zeros((2, 32, 32, 3), np.uint8), y=np.zeros(2, np.int64))
    m2 = write_matrix(tmp_path / "m2.yaml", {**tiny_defaults, "dataset": "broken"}, {"arm": [{"name": "sgd"}]})
    rc, _, err = _cli(capsys, m2, tiny_root, tmp_path / "r")
    assert rc == 2 and "train.npz" in err
    assert not (tmp_path / "r").exists()


def test_unwritable_results_folder(tmp_path, tiny_root, tiny_defaults, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file")
    m = write_matrix(tmp_path / "m.yaml", tiny_defaults, {"arm": [{"name": "sgd"}]})
    rc, _, err = _cli(capsys, m, tiny_root, blocker / "results")
    assert rc == 2 and "--results" in err and "not a folder" in err
    assert blocker.read_text() == "I am a file"


def test_unknown_matrix_name(capsys):
    assert main(["run", "paperr"]) == 2
    assert "unknown matrix" in capsys.readouterr().err


def test_set_overrides_and_named_section_replacement():
    over = parse_set(["epochs=2", "model.width=0.25", "optimizer.lr=1e-3"])
    assert over == {"epochs": 2, "model": {"width": 0.25}, "optimizer": {"lr": "1e-3"}}
    spec = resolve({"dataset": "x", **over})
    assert spec["optimizer"]["lr"] == 1e-3 and spec["model"]["width"] == 0.25
    from benchmarks.config import deep_merge
    merged = deep_merge({"optimizer": {"name": "sgd", "momentum": 0.9}}, {"optimizer": {"name": "adam"}})
    assert merged["optimizer"] == {"name": "adam"}  # SGD's momentum not carried to Adam


def test_run_id_readable_and_stable():
    a = RunSpec.from_dict({"dataset": "cifar10", "seed": 0, "sampler": {"name": "uniform"}, "matrix": "x"})
    b = RunSpec.from_dict({"dataset": "cifar10", "seed": 0, "sampler": {"name": "uniform"}, "matrix": "y"})
    assert a.run_id == b.run_id and a.run_id.startswith("cifar10-uniform-seed0-")
    c = RunSpec.from_dict({"dataset": "cifar10", "seed": 0, "epochs": 3})
    assert c.run_id != a.run_id
    with pytest.raises(UserError):
        RunSpec.from_dict({"seed": 0})  # dataset required


def test_cpu_guard_asks_for_yes_before_a_long_matrix(tmp_path, tiny_root, tiny_defaults, capsys,
                                                     done_results):
    # A million epochs of the tiny run: the measured estimate is far beyond two hours on
    # any CPU, so the runner must refuse without --yes, point to the short matrices, and
    # start nothing. (The dry run still prints the estimate.)
    before = _snapshot(done_results)
    m = write_matrix(tmp_path / "long.yaml", {**tiny_defaults, "epochs": 1_000_000},
                     {"arm": [{"name": "sgd"}]})
    rc, out, err = _cli(capsys, m, tiny_root, done_results)
    assert rc == 2 and "Traceback" not in err
    assert "pass --yes" in err and "make smoke" in err and "cpu-mini" in err, err
    assert "h on this CPU" in err
    assert _snapshot(done_results) == before
    rc, out, _ = _cli(capsys, m, tiny_root, done_results, "--dry-run")
    assert rc == 0 and "estimated cost of the runs to do" in out


def test_keys_added_later_do_not_rename_published_runs(monkeypatch):
    """A schema key listed in HASH_STABLE_DEFAULTS leaves the run id unchanged while it
    holds its 'as before' value, and changes it otherwise."""
    from benchmarks import config
    from benchmarks.config import RunSpec
    spec = {"dataset": "tiny", "sampler": {"name": "uniform"}}
    before = RunSpec.from_dict(spec).run_id
    published = dict(config.HASH_STABLE_DEFAULTS)  # keys already listed stay listed
    monkeypatch.setattr(config, "HASH_STABLE_DEFAULTS", {**published, "epochs": 30, "sampler.name": "uniform"})
    same = RunSpec.from_dict(spec)
    assert same.run_id != before  # both keys dropped from the hash: a different body...
    monkeypatch.setattr(config, "HASH_STABLE_DEFAULTS", {**published, "future_key": 1.0})
    assert RunSpec.from_dict(spec).run_id == before  # ...an absent key changes nothing
    body = RunSpec.from_dict(spec).to_dict()
    body["future_key"] = 1.0
    assert RunSpec(body).run_id == before
    body["future_key"] = 0.5
    assert RunSpec(body).run_id != before
