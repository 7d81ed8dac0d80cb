"""``prepare cifar10-5k`` takes exactly the documented prefixes of the official batches."""
import numpy as np

from benchmarks.cli import main
from benchmarks.data import load_splits
from data_fixtures import make_cifar10_dir, relaxed_checksums


def test_prepare_refuses_a_partial_archive_with_one_line(tmp_path, capsys):
    root = tmp_path / "data"
    make_cifar10_dir(root, n_train_per_batch=20, n_test=30)
    with relaxed_checksums():
        rc = main(["prepare", "cifar10-5k", "--data-root", str(root), "--no-download"])
    err = capsys.readouterr().err
    assert rc == 2 and "50,000" in err and not (root / "cifar10-5k").exists()


def test_recipe_indices():
    from benchmarks.data import Split
    from benchmarks.prepare import cifar10_5k

    x = np.zeros((50_000, 32, 32, 3), np.uint8)
    y = np.arange(50_000, dtype=np.int64)
    tr, te = cifar10_5k(Split(x, y), Split(x[:10_000], y[:10_000]))
    assert len(tr) == 5170 and len(te) == 1017
    assert tr.y[:1102].tolist() == list(range(1102))
    assert tr.y[1102:1102 + 1017].tolist() == list(range(10_000, 11_017))
    assert tr.y[-1] == 40_000 + 1016 and te.y[-1] == 1016


def test_prepare_smoke_data_offline_says_what_it_wrote(tmp_path, capsys):
    from benchmarks.synthetic import SMOKE_DATASETS

    root = tmp_path / "data"
    assert main(["prepare", "smoke-data", "--data-root", str(root), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "not real data" in out and all(name in out for name in SMOKE_DATASETS)
    for name, (classes, n_train, n_test) in SMOKE_DATASETS.items():
        tr, te, info = load_splits(name, root, download=False)
        assert (len(tr), len(te), info.num_classes) == (n_train, n_test, classes)
