"""Label noise (``label_noise``): the draw, the CIFAR-N file, the schema and the trainer's
noisy-fraction diagnostic."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks import noise
from benchmarks.config import RunSpec
from benchmarks.data import load_run_data
from benchmarks.errors import UserError
from benchmarks.train import train_one
from data_fixtures import make_cifar10_dir, make_prepared, relaxed_torchvision_checksums  # noqa: F401

SYM = {"kind": "symmetric", "rate": 0.25}


def _labels(n: int = 400, c: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, c, size=n).astype(np.int64)


def test_symmetric_flips_exactly_the_rate_to_other_classes_and_depends_on_the_data_seed_only():
    y = _labels()
    a = noise.corrupt(y, SYM, num_classes=10, seed=3, dataset="tiny")
    assert np.count_nonzero(a != y) == 100           # exactly round(0.25 * 400), none kept by chance
    assert np.array_equal(a, noise.corrupt(y, SYM, num_classes=10, seed=3, dataset="tiny"))
    assert not np.array_equal(a, noise.corrupt(y, SYM, num_classes=10, seed=4, dataset="tiny"))
    assert set(np.unique(a)) <= set(range(10)) and y.sum() == _labels().sum()  # y untouched
    # every wrong class is reachable: the flips are spread over the other classes
    moved = (a - y)[a != y] % 10
    assert set(np.unique(moved)) == set(range(1, 10))


def test_asymmetric_cifar10_map_moves_only_its_source_classes():
    y = np.repeat(np.arange(10), 40)
    cfg = noise.resolve({"kind": "asymmetric", "rate": 0.4})
    a = noise.corrupt(y, cfg, num_classes=10, seed=0, dataset="cifar10-5k")
    for src in range(10):
        changed = a[(y == src) & (a != y)]
        if src in noise.CIFAR10_MAP:
            assert changed.size == 16 and set(changed) == {noise.CIFAR10_MAP[src]}
        else:
            assert changed.size == 0
    assert noise.CIFAR10_MAP[3] == 5 and noise.CIFAR10_MAP[5] == 3   # cat <-> dog
    # other datasets: the next class (pair flipping)
    y100 = np.repeat(np.arange(100), 5)
    b = noise.corrupt(y100, noise.resolve({"kind": "asymmetric", "rate": 0.4}),
                      num_classes=100, seed=0, dataset="cifar100")
    moved = b != y100
    assert moved.sum() == 200 and np.array_equal(b[moved], (y100[moved] + 1) % 100)
    with pytest.raises(UserError, match="needs 10 classes"):
        noise.class_map("cifar100", 100, "cifar10")


@pytest.mark.parametrize("cfg,match", [
    ({"kind": "gaussian", "rate": 0.2}, r"label_noise.kind: expected one of symmetric"),
    ({"kind": "symmetric", "rate": 0.0}, r"label_noise.rate: must be a number in \(0, 1\)"),
    ({"kind": "symmetric", "rate": 1.2}, r"label_noise.rate"),
    ({"kind": "symmetric"}, r"label_noise.rate"),
    ({"kind": "symmetric", "rate": 0.2, "map": "cifar10"}, r"label_noise.map: only asymmetric"),
    ({"kind": "asymmetric", "rate": 0.2, "map": "superclass"}, r"label_noise.map: expected one of"),
    ({"kind": "human", "labels": "worst"}, r"label_noise.labels: name the key"),
    ({"kind": "human", "labels": "worse_label", "rate": 0.4}, r"label_noise.rate: human labels"),
    ({"kind": "symmetric", "rate": 0.2, "rat": 1}, r"label_noise.rat: unknown key"),
])
def test_bad_settings_are_one_line_errors(cfg, match):
    with pytest.raises(UserError, match=match):
        RunSpec.from_dict({"dataset": "tiny", "label_noise": cfg})


def test_clean_runs_keep_their_ids_and_noisy_runs_say_so_in_theirs():
    clean = RunSpec.from_dict({"dataset": "tiny"})
    assert RunSpec.from_dict({"dataset": "tiny", "label_noise": None}).run_id == clean.run_id
    assert "label_noise" not in json.dumps(clean.to_dict()) or clean["label_noise"] is None
    sym = RunSpec.from_dict({"dataset": "tiny", "label_noise": SYM})
    assert "-sym0.25-seed0-" in sym.run_id and sym.hash != clean.hash
    asym = RunSpec.from_dict({"dataset": "tiny", "label_noise": {"kind": "asymmetric", "rate": 0.4}})
    assert asym["label_noise"] == {"kind": "asymmetric", "rate": 0.4, "map": "auto"}
    assert "-asym0.4-" in asym.run_id


def test_only_training_labels_change_and_validation_is_carved_out_first(tmp_path):
    make_prepared(tmp_path, "tiny", n_train=120, n_test=40, num_classes=4, seed=0)
    tr0, te0, va0, info0 = load_run_data("tiny", tmp_path, False, {"train": 100, "seed": 5}, 20)
    tr, te, va, info = load_run_data("tiny", tmp_path, False, {"train": 100, "seed": 5}, 20, SYM)
    assert np.array_equal(te.y, te0.y) and np.array_equal(va.y, va0.y)
    assert np.array_equal(tr.clean_y, tr0.y) and np.count_nonzero(tr.y != tr0.y) == 20
    assert info.label_noise["noisy"] == 20 and info.label_noise["fraction"] == pytest.approx(0.25)
    assert info.fingerprint != info0.fingerprint and info.n_train == info0.n_train == 80
    assert "label_noise" not in info0.to_dict()   # clean runs' run.json as before


def _human_file(path: Path, clean: np.ndarray, worse: np.ndarray) -> None:
    """The official CIFAR-10N file format: ``torch.save`` of a dict of numpy arrays."""
    torch.save({"clean_label": clean, "worse_label": worse, "aggre_label": clean.copy(),
                "random_label1": worse.copy(), "random_label2": clean.copy(),
                "random_label3": worse.copy()}, path)


def test_cifar10n_human_labels_follow_the_official_order_through_a_subset(
        tmp_path, relaxed_torchvision_checksums):
    want, _ = make_cifar10_dir(tmp_path, n_train_per_batch=8, n_test=10)
    worse = (want.y + 1 + np.arange(len(want.y)) % 3) % 10   # differs everywhere
    _human_file(tmp_path / "cifar10" / "CIFAR-10_human.pt", want.y, worse)
    human = {"kind": "human", "labels": "worse_label"}
    full, _, _, info = load_run_data("cifar10", tmp_path, False, None, 0, human)
    assert np.array_equal(full.y, worse) and info.label_noise["fraction"] == 1.0
    sub, _, _, _ = load_run_data("cifar10", tmp_path, False, {"train": 20, "seed": 1}, 0, human)
    assert np.array_equal(sub.y, worse[sub.index]) and np.array_equal(sub.clean_y, want.y[sub.index])
    # a file whose clean labels are not the loaded ones (other order / other file) is refused
    _human_file(tmp_path / "cifar10" / "CIFAR-10_human.pt", np.roll(want.y, 1), worse)
    with pytest.raises(UserError, match="does not match the loaded cifar10"):
        load_run_data("cifar10", tmp_path, False, None, 0, human)
    (tmp_path / "cifar10" / "CIFAR-10_human.pt").unlink()
    with pytest.raises(UserError, match="no .*CIFAR-10_human.pt; download"):
        load_run_data("cifar10", tmp_path, False, None, 0, human)


def test_trainer_reports_the_noisy_fraction_of_what_each_epoch_trained_on(tiny_root, tiny_defaults, tmp_path):
    rows = {}
    for arm, sampler in (("sgd", {"name": "uniform"}), ("oracle", {"name": "loss_oracle", "bank_size": 32})):
        spec = RunSpec.from_dict({**tiny_defaults, "matrix": "t", "arm": arm, "sampler": sampler,
                                  "label_noise": SYM})
        assert train_one(spec, tmp_path / arm, data_root=tiny_root, download=False,
                         device="cpu").status == "done"
        rows[arm] = pd.read_csv(tmp_path / arm / "epochs.csv")
        record = json.loads((tmp_path / arm / "run.json").read_text())["dataset"]["label_noise"]
        assert record["noisy"] == 24 and record["kind"] == "symmetric"
    ep = rows["sgd"]
    assert np.isnan(ep.noisy_frac.iloc[0]) and ep.noisy_frac.iloc[1:].between(0, 1).all()
    # a uniform epoch of 6 x 16 = 96 examples is a permutation of the 96: exactly the rate
    assert ep.noisy_frac.iloc[1:].tolist() == [0.25, 0.25]
    # the same noisy labels for every arm (seeded by the data seed, not the arm or run seed)
    fps = {json.loads((tmp_path / a / "run.json").read_text())["dataset"]["fingerprint"] for a in rows}
    assert len(fps) == 1
    # a selective method's column is its own count, not the rate
    assert rows["oracle"].noisy_frac.iloc[1:].notna().all()
    # the plots draw it against the recorded noise fraction (and only where it exists)
    from plots import outputs
    from plots.aggregate import load_matrix
    from plots.noise import noisy_fraction
    res = load_matrix(tmp_path)
    assert "noisy" in [o.name for o in outputs.registry(res)]
    fig = noisy_fraction(res)
    refs = [line for ax in fig.axes for line in ax.get_lines() if line.get_gid() == "reference"]
    assert [tuple(line.get_ydata()) for line in refs] == [(0.25, 0.25)]
