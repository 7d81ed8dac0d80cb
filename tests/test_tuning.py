"""Validation split (RunSpec ``validation: N``) and LR choice on it (plots/tuning.py)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from benchmarks import matrix as matrix_mod  # noqa: E402
from benchmarks.config import RunSpec  # noqa: E402
from benchmarks.data import load_run_data, load_splits  # noqa: E402
from benchmarks.errors import UserError  # noqa: E402
from benchmarks.train import Trainer, train_one  # noqa: E402
from plots.aggregate import load_matrix  # noqa: E402
from plots.tuning import best_lrs, lr_sweep_table, write_tuning  # noqa: E402
from results_fixtures import FakeRun, write_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the split itself
def test_validation_split_is_stratified_disjoint_and_seed_free(tiny_root):
    full, _, _ = load_splits("tiny", tiny_root, False)
    train, test, val, info = load_run_data("tiny", tiny_root, False, None, 24)
    assert len(val) == 24 and len(train) == 96 - 24 and info.n_train == 72 and info.n_val == 24
    # disjoint and together exactly the training set (rows of random images are unique)
    rows = {r.tobytes() for r in full.x}
    tr_rows, va_rows = {r.tobytes() for r in train.x}, {r.tobytes() for r in val.x}
    assert not tr_rows & va_rows and tr_rows | va_rows == rows
    # stratified: per-class counts proportional to the training set's (4 classes)
    full_counts = np.bincount(full.y, minlength=4)
    np.testing.assert_allclose(np.bincount(val.y, minlength=4), full_counts * 24 / 96, atol=1)
    # without validation: exactly load_splits (same fingerprint as before the option)
    tr0, _, val0, info0 = load_run_data("tiny", tiny_root, False, None, 0)
    assert val0 is None and info0.fingerprint == load_splits("tiny", tiny_root, False)[2].fingerprint
    assert info.fingerprint != info0.fingerprint


def test_validation_split_is_the_same_for_every_run_seed(tiny_root, tiny_defaults):
    vals = []
    for seed in (0, 1):
        spec = RunSpec.from_dict({**tiny_defaults, "seed": seed, "validation": 20})
        t = Trainer(spec, tiny_root / "unused", data_root=tiny_root, download=False,
                    device=__import__("torch").device("cpu"))
        vals.append((t.data.x_val.clone(), t.data.y_val.clone(), t.info.n_train))
    assert vals[0][2] == vals[1][2] == 76
    assert bool((vals[0][0] == vals[1][0]).all()) and bool((vals[0][1] == vals[1][1]).all())


def test_validation_too_large_is_a_user_error(tiny_root):
    with pytest.raises(UserError, match="validation"):
        load_run_data("tiny", tiny_root, False, None, 96)


def test_validation_key_is_hash_stable_and_range_checked():
    base = RunSpec.from_dict({"dataset": "x"})
    assert RunSpec.from_dict({"dataset": "x", "validation": 0}).run_id == base.run_id
    assert RunSpec.from_dict({"dataset": "x", "validation": 10}).run_id != base.run_id
    with pytest.raises(UserError, match="validation: must be >= 0"):
        RunSpec.from_dict({"dataset": "x", "validation": -1})


def test_run_with_validation_writes_val_columns(tmp_path, tiny_root, tiny_defaults):
    spec = RunSpec.from_dict({**tiny_defaults, "epochs": 1, "validation": 16})
    run = tmp_path / "run"
    assert train_one(spec, run, data_root=tiny_root, device="cpu").status == "done"
    ep = pd.read_csv(run / "epochs.csv")
    assert list(ep["epoch"]) == [0, 1]
    assert ep["val_acc"].between(0, 1).all() and ep["val_loss"].gt(0).all()
    info = json.loads((run / "run.json").read_text())["dataset"]
    assert info["n_train"] == 80 and info["n_val"] == 16
    # 80 training examples at batch 16: 5 steps
    assert len(pd.read_csv(run / "iterations.csv")) == 5
    # and without validation the columns are absent
    plain = tmp_path / "plain"
    train_one(RunSpec.from_dict({**tiny_defaults, "epochs": 1}), plain, data_root=tiny_root,
              device="cpu")
    assert "val_acc" not in pd.read_csv(plain / "epochs.csv").columns


# ------------------------------------------------------------------ choosing the lr
def _sweep_run(tmp_path: Path, arm: str, lr: float, seed: int, test_acc: float,
               val_acc: float) -> FakeRun:
    # impon carries its bank size, as real IMPON runs do: a property of the arm, not a
    # sweep axis, so the tuned matrix must keep the arm's own name
    run = FakeRun(arm=arm, seed=seed, epochs=3, matrix="sweep",
                  bank_size=200 if arm == "impon" else None,
                  extra_spec={"optimizer": {"lr": lr}, "validation": 64},
                  acc=lambda e, a=test_acc: a * e / 3)
    folder = write_run(tmp_path, run)
    ep = pd.read_csv(folder / "epochs.csv")
    ep["val_acc"] = [val_acc * e / 3 for e in ep["epoch"]]
    ep["val_loss"] = [2.3 * (1 - v) for v in ep["val_acc"]]
    ep.to_csv(folder / "epochs.csv", index=False)
    return run


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """sgd: test favours lr 0.3, validation favours lr 0.03; impon: validation favours 0.01.
    Two seeds each, so the choice is a mean over seeds."""
    root = tmp_path / "sweep"
    for seed, jitter in ((0, 0.01), (1, -0.01)):
        for lr, test_acc, val_acc in ((0.3, 0.90, 0.50), (0.1, 0.70, 0.60), (0.03, 0.40, 0.80)):
            _sweep_run(root, "sgd", lr, seed, test_acc + jitter, val_acc + jitter)
        for lr, test_acc, val_acc in ((0.1, 0.95, 0.30), (0.01, 0.20, 0.70)):
            _sweep_run(root, "impon", lr, seed, test_acc, val_acc + jitter)
    return root


def test_best_lr_is_chosen_on_validation_never_on_test(sweep):
    res = load_matrix(sweep)
    best = best_lrs(res).set_index("arm")
    assert best.loc["sgd", "lr"] == 0.03 and best.loc["impon", "lr"] == 0.01
    assert best.loc["sgd", "val_acc"] == pytest.approx(0.80) and best.loc["sgd", "seeds"] == 2
    assert best.loc["sgd", "lrs_compared"] == 3
    # the choice does not move if the test columns are scrambled (or removed)
    scrambled = res.epochs.assign(test_acc=np.random.default_rng(0).random(len(res.epochs)))
    res2 = type(res)(**{**res.__dict__, "epochs": scrambled.drop(columns=["test_loss"])})
    assert list(best_lrs(res2)["lr"]) == list(best_lrs(res)["lr"])
    assert not any(c.startswith("test") for c in lr_sweep_table(res).columns)


def test_write_tuning_outputs_and_a_tuned_matrix_that_validates(sweep, tmp_path):
    res = load_matrix(sweep)
    (sweep / "report.md").write_text("# Results\n\n## Runs left out\n\nNone.\n")
    written = write_tuning(res)
    assert [p.name for p in written] == ["best_lr.csv", "tuned.yaml", "report.md"]
    csv = pd.read_csv(sweep / "best_lr.csv").set_index("arm")
    assert csv.loc["sgd", "lr"] == 0.03
    report = (sweep / "report.md").read_text()
    section = report.split("## Learning rate chosen on validation", 1)[1]
    assert section.index("**best**") and "## Runs left out" in section  # inserted before it
    assert "tuned.yaml" in section and "test_acc" not in section
    write_tuning(res)  # idempotent: one section
    assert (sweep / "report.md").read_text().count("## Learning rate chosen on validation") == 1
    # the tuned matrix loads with the real loader: each arm at its own lr, 3 seeds
    doc = yaml.safe_load((sweep / "tuned.yaml").read_text())
    assert doc["name"] == "sweep_tuned"
    m = matrix_mod.load(str(sweep / "tuned.yaml"))
    lrs = {(r["arm"], r["optimizer"]["lr"], r["validation"]) for r in m.runs}
    assert lrs == {("sgd", 0.03, 64), ("impon", 0.01, 64)}
    assert sorted({r["seed"] for r in m.runs}) == [0, 1, 2] and len(m.runs) == 6


def test_matrix_without_validation_gets_no_tuning(tmp_path):
    write_run(tmp_path, FakeRun(seed=0))
    assert write_tuning(load_matrix(tmp_path)) == []
    assert not (tmp_path / "best_lr.csv").exists()


@pytest.mark.parametrize("name,count", [("lr_sweep", 4 * 3 * 5), ("cpu_lr_sweep", 4 * 5)])
def test_lr_sweep_matrices_validate(name, count):
    m = matrix_mod.load(name)
    assert len(m.runs) == count
    assert all(r["validation"] > 0 for r in m.runs)
    assert {r["arm"] for r in m.runs} == {"sgd", "impon", "selective_backprop", "p_sgd"}


def test_one_lr_per_arm_is_not_a_sweep(tmp_path):
    # the tuned reruns have validation columns too, but nothing to choose between
    for seed in (0, 1):
        _sweep_run(tmp_path, "sgd", 0.03, seed, 0.5, 0.6)
        _sweep_run(tmp_path, "impon", 0.01, seed, 0.5, 0.6)
    assert write_tuning(load_matrix(tmp_path)) == []
    assert not (tmp_path / "tuned.yaml").exists() and not (tmp_path / "best_lr.csv").exists()
