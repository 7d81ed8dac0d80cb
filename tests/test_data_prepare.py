"""``prepare cifar10-5k`` takes exactly the documented prefixes of the official batches;
``prepare tinyimagenet|imagenet32|imagenet64`` converts the official files, resumably."""
import json
import shutil

import numpy as np
import pytest

from benchmarks import convert
from benchmarks.cli import main
from benchmarks.data import load_splits
from data_fixtures import (make_cifar10_dir, make_downsampled_imagenet_dir, make_tinyimagenet_dir,
                           relaxed_checksums)


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


# ------------------------------------------- issue 23: Tiny-ImageNet, downsampled ImageNet


def _same(got, want) -> None:
    assert got.x.dtype == np.uint8 and got.y.dtype == np.int64
    np.testing.assert_array_equal(got.x, want.x)
    np.testing.assert_array_equal(got.y, want.y)


def test_tinyimagenet_converts_the_official_layout(tmp_path, capsys):
    root = tmp_path / "data"
    want_tr, want_te = make_tinyimagenet_dir(root, classes=3, per_class=4, n_val=6)
    assert main(["prepare", "tinyimagenet", "--data-root", str(root)]) == 0
    assert "prepare tinyimagenet: 4/4 files converted" in capsys.readouterr().out  # no tty: lines
    tr, te, info = load_splits("tinyimagenet", root, download=False)
    _same(tr, want_tr)
    _same(te, want_te)
    assert tr.x.shape[1:] == (64, 64, 3) and info.num_classes == 200 and info.flip
    wnids = (root / "tinyimagenet" / "tiny-imagenet-200" / "wnids.txt").read_text().split()
    assert wnids != sorted(wnids) and tr.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4   # sorted ranks
    grey = tr.x[0]                                  # the greyscale JPEG: three equal channels
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    folder = root / "tinyimagenet"
    assert not (folder / convert.WORK).exists() and not list(folder.glob("*.tmp"))


@pytest.mark.parametrize("name,size,fmt", [("imagenet32", 32, "npz"), ("imagenet64", 64, "pickle")])
def test_downsampled_imagenet_converts_npz_and_the_older_pickles(tmp_path, name, size, fmt):
    root = tmp_path / "data"
    want_tr, want_te = make_downsampled_imagenet_dir(root, name, size, per_batch=3, n_val=5, fmt=fmt)
    assert main(["prepare", name, "--data-root", str(root)]) == 0
    tr, te, info = load_splits(name, root, download=False)
    _same(tr, want_tr)                     # batches 1..10 in order, labels 1-based -> 0-based
    _same(te, want_te)
    assert tr.x.shape == (30, size, size, 3) and info.num_classes == 1000


def test_a_killed_conversion_resumes_where_it_stopped(tmp_path, monkeypatch):
    root = tmp_path / "data"
    want_tr, want_te = make_downsampled_imagenet_dir(root, "imagenet32", 32, per_batch=2, n_val=3)
    real = convert.READERS["downsampled_imagenet"]
    reads: list[str] = []

    def reader(entry, folder, fail_at=None):
        parts = real(entry, folder)

        def read(part):
            def go():
                if len(reads) == fail_at:
                    raise KeyboardInterrupt      # what Ctrl-C (or a kill) does mid-conversion
                reads.append(part.key)
                return part.read()
            return go
        return [convert.Part(p.split, p.key, p.sources, read(p)) for p in parts]

    monkeypatch.setitem(convert.READERS, "downsampled_imagenet", lambda e, f: reader(e, f, fail_at=4))
    with pytest.raises(KeyboardInterrupt):
        convert.convert("imagenet32", root, progress=False)
    work = root / "imagenet32" / convert.WORK
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".")) == [
        f"train-{i:02d}.npz" for i in range(1, 5)]
    assert not (root / "imagenet32" / "train.npz").exists()
    (work / ".train-05.npz.half.tmp").write_bytes(b"PK\x03\x04 cut short")   # a half-written part
    (work / "train-06.npz").write_bytes(b"not a zip")                          # a corrupt one
    monkeypatch.setitem(convert.READERS, "downsampled_imagenet", lambda e, f: reader(e, f))
    reads.clear()
    convert.convert("imagenet32", root, progress=False)
    assert reads == ["05", "06", "07", "08", "09", "10", "val"]    # 1..4 kept, 6 redone
    tr, te, _ = load_splits("imagenet32", root, download=False)
    _same(tr, want_tr)
    _same(te, want_te)
    assert not work.exists()


def test_a_part_of_changed_sources_is_converted_again(tmp_path, monkeypatch):
    root = tmp_path / "data"
    make_downsampled_imagenet_dir(root, "imagenet32", 32, per_batch=2, n_val=3)
    entry = convert.BUILTINS["imagenet32"]
    parts = convert.READERS["downsampled_imagenet"](entry, root / "imagenet32")
    work = root / "imagenet32" / convert.WORK
    work.mkdir()
    list(convert._progress(parts[:1], work, "t", False))
    assert convert._part_done(work / parts[0].file, parts[0].stamp())
    src = parts[0].sources[0]
    new_tr, _ = make_downsampled_imagenet_dir(tmp_path / "other", "imagenet32", 32, per_batch=5)
    shutil.copy(tmp_path / "other" / "imagenet32" / src.relative_to(root / "imagenet32"), src)
    assert not convert._part_done(work / parts[0].file, parts[0].stamp())   # 5 images now, not 2
    convert.convert("imagenet32", root, progress=False)
    tr, _, _ = load_splits("imagenet32", root, download=False)
    _same(type(tr)(tr.x[:5], tr.y[:5]), type(tr)(new_tr.x[:5], new_tr.y[:5]))


def test_missing_or_wrong_files_are_one_line_and_write_nothing(tmp_path, capsys):
    root = tmp_path / "data"
    for name, needle in (("tinyimagenet", "http://cs231n.stanford.edu/tiny-imagenet-200.zip"),
                         ("imagenet64", "https://image-net.org/download-images")):
        assert main(["prepare", name, "--data-root", str(root)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err and f"{root / name}/" in err
        assert f"python -m benchmarks prepare {name}" in err
        assert not root.exists()                              # nothing created
    # a run before `prepare` says what to run, and says it before anything trains
    make_tinyimagenet_dir(root, classes=2, per_class=2, n_val=2)
    with pytest.raises(convert.UserError, match="not converted yet; run once: python -m benchmarks "
                                                "prepare tinyimagenet"):
        load_splits("tinyimagenet", root, download=False)
    # the 32-pixel batches put where the 64-pixel ones belong
    make_downsampled_imagenet_dir(root, "imagenet64", 32, per_batch=2, n_val=2)
    assert main(["prepare", "imagenet64", "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "expected uint8 (N, 12288) for 64x64 images" in err and "32x32 images" in err
    assert not (root / "imagenet64" / "train.npz").exists()


def test_tinyimagenet_screening_run_through_the_cli(tmp_path, capsys):
    """Issue 23 item 5: the tinyimagenet matrix's path on a tiny real-format sample:
    prepare, then one epoch of the ImageNet-stem ResNet-18 at 1/16 width."""
    from conftest import run_cli, write_matrix

    root, results = tmp_path / "data", tmp_path / "results"
    make_tinyimagenet_dir(root, classes=3, per_class=8, n_val=6)
    assert main(["prepare", "tinyimagenet", "--data-root", str(root)]) == 0
    m = write_matrix(tmp_path / "m.yaml", {
        "dataset": "tinyimagenet", "epochs": 1, "batch_size": 8, "eval_batch_size": 16,
        "model": {"name": "resnet18", "width": 0.0625, "stem": "imagenet"},
        "augment": {"crop_padding": 8}, "optimizer": {"name": "sgd", "lr": 0.05}},
        {"arm": [{"name": "sgd", "sampler": {"name": "uniform"}},
                 {"name": "loss_oracle", "sampler": {"name": "loss_oracle", "bank_size": 16}}]},
        name="tiny_screen")
    rc, out, err = run_cli(capsys, m, root, results)
    assert rc == 0, err
    runs = sorted((results / "tiny_screen").glob("tinyimagenet-*"))
    assert len(runs) == 2
    for run in runs:
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "done" and info["dataset"]["n_train"] == 24
        assert info["dataset"]["num_classes"] == 200 and info["dataset"]["source"] == "npz-cache"
        assert len((run / "epochs.csv").read_text().splitlines()) >= 2
