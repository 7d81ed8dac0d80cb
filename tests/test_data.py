"""Tests of benchmarks.data: real file formats through real torchvision classes, the npz
cache, prepared-dataset validation, stratified subsets, normalisation statistics, and the
vectorised on-device augmentation (offsets/flips recovered from coordinate-coded images)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.data import (BUILTIN, DatasetInfo, DeviceData, Split, channel_stats, load_splits,
                             stratified_indices)
from benchmarks.errors import UserError
from data_fixtures import (make_cifar10_dir, make_cifar100_dir, make_prepared, make_svhn_dir,
                           relaxed_checksums, relaxed_torchvision_checksums, write_prepared)

# ../shared/data beside the checkout (as in CI), else the development machine's copy.
SHARED = next((p for p in (Path(__file__).resolve().parents[2] / "shared" / "data",
                           Path("/work/shared/data")) if (p / "cifar10-5k").is_dir()),
              Path("/work/shared/data"))
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

relaxed = relaxed_torchvision_checksums  # the fixture, under a short name


def assert_split_equal(a: Split, b: Split) -> None:
    assert a.x.dtype == np.uint8 and a.y.dtype == np.int64
    assert a.x.shape == b.x.shape and a.x.flags.c_contiguous
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)


# ------------------------------------------------------------------- built-ins via torchvision
def test_builtin_list() -> None:
    assert BUILTIN[:3] == ("cifar10", "cifar100", "svhn")  # more only by a catalogue entry


def test_cifar10_round_trip_and_cache(tmp_path: Path, relaxed) -> None:
    want_tr, want_te = make_cifar10_dir(tmp_path, n_train_per_batch=3, n_test=7)
    tr, te, info = load_splits("cifar10", tmp_path, download=False)
    assert_split_equal(tr, want_tr)
    assert_split_equal(te, want_te)
    assert info.source == "torchvision" and info.num_classes == 10 and info.flip
    assert (info.n_train, info.n_test) == (15, 7)
    for f in ("train.npz", "test.npz"):
        with np.load(tmp_path / "cifar10" / f) as z:
            assert z["x"].dtype == np.uint8 and z["y"].dtype == np.int64
    assert not [p for p in (tmp_path / "cifar10").iterdir() if p.name.endswith(".tmp")]
    # the cache is used next time, even without the raw files
    for p in (tmp_path / "cifar10" / "cifar-10-batches-py").iterdir():
        p.unlink()
    tr2, te2, info2 = load_splits("cifar10", tmp_path, download=False)
    assert info2.source == "npz-cache"
    assert_split_equal(tr2, want_tr)
    assert_split_equal(te2, want_te)
    assert info2.fingerprint == info.fingerprint and info2.mean == info.mean


def test_cifar100_round_trip(tmp_path: Path, relaxed) -> None:
    want_tr, want_te = make_cifar100_dir(tmp_path, n_train=12, n_test=5)
    tr, te, info = load_splits("cifar100", tmp_path, download=False)
    assert_split_equal(tr, want_tr)
    assert_split_equal(te, want_te)
    assert info.num_classes == 100 and info.source == "torchvision"


def test_svhn_round_trip_labels_and_layout(tmp_path: Path, relaxed) -> None:
    want_tr, want_te = make_svhn_dir(tmp_path, n_train=14, n_test=6)
    assert (want_tr.y == 0).any()  # the .mat file stores these as label 10
    tr, te, info = load_splits("svhn", tmp_path, download=False)
    assert_split_equal(tr, want_tr)
    assert_split_equal(te, want_te)
    assert tr.x.shape == (14, 32, 32, 3)
    assert info.num_classes == 10 and not info.flip
    assert load_splits("svhn", tmp_path, download=False)[2].source == "npz-cache"


def test_cache_write_failure_is_skipped(tmp_path: Path, relaxed, monkeypatch) -> None:
    make_cifar10_dir(tmp_path, 1, 3)

    def deny(*a, **k):
        raise PermissionError("read-only")
    monkeypatch.setattr(os, "replace", deny)
    tr, _, info = load_splits("cifar10", tmp_path, download=False)
    assert info.source == "torchvision" and len(tr) == 5
    assert sorted(p.name for p in (tmp_path / "cifar10").iterdir()) == ["cifar-10-batches-py"]


@pytest.mark.parametrize("name,where", [("cifar10", "cifar10/cifar-10-batches-py"),
                                        ("cifar100", "cifar100/cifar-100-python"),
                                        ("svhn", "svhn/train_32x32.mat")])
def test_missing_builtin_without_download(tmp_path: Path, name: str, where: str) -> None:
    with pytest.raises(UserError) as e:
        load_splits(name, tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / where) in msg and "--no-download" in msg and "\n" not in msg


def test_corrupt_builtin_without_download(tmp_path: Path) -> None:
    make_cifar10_dir(tmp_path, 1, 2)  # checksums of these files can't match the official ones
    with pytest.raises(UserError, match="corrupted"):
        load_splits("cifar10", tmp_path, download=False)


def test_unwritable_root_when_download_needed(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot create"):
        load_splits("svhn", blocker / "data", download=True)


# --------------------------------------------------------------------------- prepared datasets
def test_prepared_round_trip(tmp_path: Path) -> None:
    want_tr, want_te = make_prepared(tmp_path, "toy", n_train=30, n_test=9, num_classes=7)
    tr, te, info = load_splits("toy", tmp_path, download=False)
    assert_split_equal(tr, want_tr)
    assert_split_equal(te, want_te)
    assert info.source == "prepared" and info.num_classes == 7 and info.flip
    assert info.subset is None and info.n_train_full == 30
    d = info.to_dict()
    assert d["mean"] == list(info.mean) and d["name"] == "toy" and d["fingerprint"] == info.fingerprint


def _bad(tmp_path: Path, **arrays) -> None:
    folder = tmp_path / "bad"
    folder.mkdir(exist_ok=True)
    good = make_prepared(tmp_path, "bad", 6, 4)[1]
    np.savez(folder / "test.npz", x=good.x, y=good.y)
    np.savez(folder / "train.npz", **arrays)


X = np.zeros((6, 32, 32, 3), np.uint8)
Y = np.arange(6, dtype=np.int64)


@pytest.mark.parametrize("arrays,needle", [
    (dict(x=X.astype(np.float32), y=Y), "dtype float32, expected uint8"),
    (dict(x=X, y=Y.astype(np.int32)), "dtype int32, expected int64"),
    (dict(x=X, y=Y[:5]), "6 examples but y has 5"),
    (dict(x=X.transpose(0, 3, 1, 2).copy(), y=Y), "looks like NCHW"),
    (dict(x=X[..., 0], y=Y), "expected NHWC"),
    (dict(x=X, y=Y[:, None]), "expected (N,)"),
    (dict(x=X, y=Y - 1), "negative labels"),
    (dict(x=X), "no array 'y'"),
    (dict(x=X[:, :16], y=Y), "same H, W"),
])
def test_prepared_validation(tmp_path: Path, arrays: dict, needle: str) -> None:
    _bad(tmp_path, **arrays)
    with pytest.raises(UserError) as e:
        load_splits("bad", tmp_path, download=False)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg
    if needle != "same H, W":
        assert str(tmp_path / "bad" / "train.npz") in msg


def test_prepared_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no file .*nothere.train\.npz"):
        load_splits("nothere", tmp_path, download=True)
    make_prepared(tmp_path, "half", 4, 4)
    (tmp_path / "half" / "test.npz").unlink()
    with pytest.raises(UserError, match=r"half.test\.npz"):
        load_splits("half", tmp_path, download=False)
    (tmp_path / "half" / "test.npz").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read"):
        load_splits("half", tmp_path, download=False)
    np.savez(tmp_path / "half" / "test.npz", x=np.array([object()] * 4), y=np.zeros(4, np.int64))
    with pytest.raises(UserError, match="cannot read"):
        load_splits("half", tmp_path, download=False)
    with pytest.raises(UserError, match="did you mean the built-in 'cifar10'"):
        load_splits("CIFAR10", tmp_path, download=False)
    with pytest.raises(UserError, match="not a folder name"):
        load_splits("../etc", tmp_path, download=False)


@pytest.mark.skipif(not (SHARED / "cifar10-5k").is_dir(), reason="shared cifar10-5k not present")
def test_shared_cifar10_5k() -> None:
    tr, te, info = load_splits("cifar10-5k", SHARED, download=False)
    assert (info.n_train, info.n_test, info.num_classes) == (5170, 1017, 10)
    assert info.source == "prepared" and info.flip
    assert tr.x.shape == (5170, 32, 32, 3) and te.y.shape == (1017,)
    # a real CIFAR-10 sample: its statistics are close to the full-set constants
    np.testing.assert_allclose(info.mean, (0.4914, 0.4822, 0.4465), atol=0.02)
    np.testing.assert_allclose(info.std, (0.2470, 0.2435, 0.2616), atol=0.02)


# ------------------------------------------------------------------------ statistics, subsets
def test_channel_stats_hand_made() -> None:
    x = np.zeros((2, 2, 2, 3), np.uint8)
    x[0, ..., 0] = 255           # channel 0: half 0, half 1 -> mean .5, std .5
    x[..., 1] = 51               # channel 1: constant .2 -> std 0 -> reported as 1
    x[..., 2] = np.array([0, 51, 102, 153]).reshape(2, 2)[None]   # 0, .2, .4, .6
    mean, std = channel_stats(x)
    np.testing.assert_allclose(mean, (0.5, 0.2, 0.3), rtol=0, atol=1e-15)
    np.testing.assert_allclose(std, (0.5, 1.0, np.sqrt(0.05)), rtol=0, atol=1e-15)
    r = np.random.default_rng(0).integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    f = r.astype(np.float64).reshape(-1, 3) / 255
    np.testing.assert_allclose(channel_stats(r)[0], f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(channel_stats(r)[1], f.std(0), rtol=1e-12)


def test_stats_use_full_train_split(tmp_path: Path) -> None:
    tr, _ = make_prepared(tmp_path, "toy", 60, 20, num_classes=3)
    full = load_splits("toy", tmp_path, False)[2]
    sub = load_splits("toy", tmp_path, False, {"train": 9, "test": 6})[2]
    assert sub.mean == full.mean and sub.std == full.std
    m, s = channel_stats(tr.x)
    assert full.mean == m and full.std == s
    assert (sub.n_train, sub.n_test, sub.n_train_full) == (9, 6, 60)
    assert sub.subset == {"train": 9, "test": 6, "seed": 0}
    assert sub.fingerprint != full.fingerprint


def test_stratified_largest_remainder_and_min_one() -> None:
    y = np.repeat(np.arange(3), [50, 30, 20])
    rng = np.random.default_rng(5)
    y = rng.permutation(y)
    for n, want in [(10, [5, 3, 2]), (7, [4, 2, 1]), (100, [50, 30, 20]), (1, [1, 0, 0])]:
        idx = stratified_indices(y, n, seed=0)
        assert len(idx) == n and len(np.unique(idx)) == n
        assert np.all(np.diff(idx) > 0)  # original order kept
        assert np.bincount(y[idx], minlength=3).tolist() == want
    y2 = np.repeat(np.arange(3), [97, 2, 1])
    assert np.bincount(y2[stratified_indices(y2, 10, 0)], minlength=3).tolist() == [8, 1, 1]
    assert np.bincount(y2[stratified_indices(y2, 3, 0)], minlength=3).tolist() == [1, 1, 1]


def test_subset_seeding_and_errors(tmp_path: Path) -> None:
    tr, te = make_prepared(tmp_path, "toy", 200, 50, num_classes=4, seed=3)
    a = load_splits("toy", tmp_path, False, {"train": 40, "test": 12, "seed": 0})
    b = load_splits("toy", tmp_path, False, {"train": 40, "test": 12, "seed": 0})
    c = load_splits("toy", tmp_path, False, {"train": 40, "test": 12, "seed": 1})
    assert_split_equal(a[0], b[0])
    assert a[2].fingerprint == b[2].fingerprint != c[2].fingerprint
    assert not np.array_equal(a[0].y, c[0].y) or not np.array_equal(a[0].x, c[0].x)
    counts = np.bincount(tr.y, minlength=4)
    got = np.bincount(a[0].y, minlength=4)
    assert np.all(np.abs(got - 40 * counts / 200) < 1)
    # the test subset does not depend on whether the train split was subsetted
    only_test = load_splits("toy", tmp_path, False, {"test": 12})
    assert_split_equal(only_test[1], a[1])
    assert len(only_test[0]) == 200 and only_test[2].subset == {"train": None, "test": 12, "seed": 0}
    # the global RNG is neither used nor disturbed
    state = np.random.get_state()
    np.random.seed(123)
    d = load_splits("toy", tmp_path, False, {"train": 40, "seed": 0})
    np.random.set_state(state)
    assert_split_equal(d[0], a[0])
    for bad, needle in [({"train": 201}, "only 200"), ({"train": 0}, "positive"), ({"tran": 3}, "unknown key"),
                        ({"seed": -1}, "subset.seed"), ({"test": 2.5}, "subset.test"), ([1], "mapping")]:
        with pytest.raises(UserError, match=needle):
            load_splits("toy", tmp_path, False, bad)


# ------------------------------------------------------------------------ device side
def coded_data(n: int, flip: bool = True, n_test: int = 5) -> tuple[Split, Split, DatasetInfo]:
    """Images whose pixels encode (row+1, col+1, example+1): zero only in padding."""
    r, c = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    x = np.empty((n, 32, 32, 3), np.uint8)
    x[..., 0] = r + 1
    x[..., 1] = c + 1
    x[..., 2] = (np.arange(n) % 250 + 1)[:, None, None]
    y = np.arange(n, dtype=np.int64) % 10
    train = Split(x, y)
    test = Split(x[:n_test].copy(), y[:n_test].copy())
    mean, std = channel_stats(x)
    info = DatasetInfo("coded", n, n_test, 10, mean, std, flip, "prepared", "0" * 16, None)
    return train, test, info


def unnormalize(dd: DeviceData, out: torch.Tensor) -> np.ndarray:
    """float (b,3,H,W) -> uint8 NHWC, inverting (x/255-mean)/std."""
    mean = torch.tensor(dd.info.mean).view(1, 3, 1, 1)
    std = torch.tensor(dd.info.std).view(1, 3, 1, 1)
    px = ((out.detach().cpu().double() * std + mean) * 255).round()
    assert px.min() >= 0 and px.max() <= 255
    return px.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def reference_view(img: np.ndarray, dy: int, dx: int, flipped: bool, p: int = 4) -> np.ndarray:
    """torchvision-style: zero-pad p, crop the 32x32 window at offset (dy, dx), then flip."""
    padded = np.pad(img, ((p, p), (p, p), (0, 0)))
    crop = padded[p + dy:p + dy + 32, p + dx:p + dx + 32]
    return crop[:, ::-1] if flipped else crop


def recover(views: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dy, dx, flipped) of each view, from its centre pixels (never padding for p<=4)."""
    c = views[:, 16, 16].astype(int)
    flipped = views[:, 16, 17, 1].astype(int) < c[:, 1]
    dy = c[:, 0] - 1 - 16
    dx = np.where(flipped, c[:, 1] - 1 - 15, c[:, 1] - 1 - 16)
    return dy, dx, flipped


@pytest.mark.parametrize("device", DEVICES)
def test_augment_matches_reference_crop_and_flip(device: str) -> None:
    train, test, info = coded_data(300)
    dd = DeviceData(train, test, info, torch.device(device))
    g = torch.Generator(device=device).manual_seed(0)
    idx = torch.arange(300, device=device).flip(0)
    out = dd.augment(idx, g)
    assert out.shape == (300, 3, 32, 32) and out.dtype == torch.float32 and out.device.type == device
    assert out.is_contiguous()
    views = unnormalize(dd, out)
    dy, dx, flipped = recover(views)
    assert dy.min() >= -4 and dy.max() <= 4 and dx.min() >= -4 and dx.max() <= 4
    src = idx.cpu().numpy()
    np.testing.assert_array_equal(views[:, 0, 0, 2][views[:, 0, 0, 2] > 0],
                                  (src % 250 + 1)[views[:, 0, 0, 2] > 0])
    for i in range(300):
        np.testing.assert_array_equal(views[i], reference_view(train.x[src[i]], dy[i], dx[i], flipped[i]))
    # each example its own crop and flip, all 9 offsets used, zero padding present
    assert len(set(zip(dy.tolist(), dx.tolist()))) > 40
    assert set(dy.tolist()) == set(range(-4, 5)) == set(dx.tolist())
    assert 0 < flipped.sum() < 300
    padded = (views == 0).all(-1)
    assert padded.any()
    assert ((dy < 0) == padded[:, 0, :].all(-1)).all()   # shifted down <=> top row is padding


@pytest.mark.parametrize("device", DEVICES)
def test_augment_flip_frequency_and_determinism(device: str) -> None:
    train, test, info = coded_data(64)
    dd = DeviceData(train, test, info, torch.device(device))
    g = torch.Generator(device=device).manual_seed(1)
    idx = torch.randint(0, 64, (4000,), generator=g, device=device)
    state = g.get_state()
    a = dd.augment(idx, g)
    g.set_state(state)
    b = dd.augment(idx, g)
    assert torch.equal(a, b)
    c = dd.augment(idx, g)
    assert not torch.equal(a, c)
    _, _, flipped = recover(unnormalize(dd, a))
    assert 0.46 < flipped.mean() < 0.54


@pytest.mark.parametrize("device", DEVICES)
def test_no_flip_for_svhn_or_flip_false(device: str) -> None:
    train, test, info = coded_data(64, flip=False)       # as load_splits sets for svhn
    g = torch.Generator(device=device).manual_seed(2)
    idx = torch.randint(0, 64, (1000,), generator=g, device=device)
    dd = DeviceData(train, test, info, torch.device(device))
    assert not dd.flip
    assert not recover(unnormalize(dd, dd.augment(idx, g)))[2].any()
    train, test, info = coded_data(64, flip=True)
    dd = DeviceData(train, test, info, torch.device(device), flip=False)
    dy, dx, flipped = recover(unnormalize(dd, dd.augment(idx, g)))
    assert not flipped.any() and len(set(dy.tolist())) == 9
    dd = DeviceData(train, test, info, torch.device(device), crop_padding=0, flip=False)
    assert torch.equal(dd.augment(idx[:10], g), dd.normalize(dd.x_train[idx[:10]].permute(0, 3, 1, 2)))


@pytest.mark.parametrize("device", DEVICES)
def test_unaugmented_normalisation_and_test_batches(device: str) -> None:
    tr = Split(np.random.default_rng(0).integers(0, 256, (37, 32, 32, 3), dtype=np.uint8),
               np.arange(37, dtype=np.int64) % 3)
    te = Split(tr.x[:23].copy(), tr.y[:23].copy())
    mean, std = channel_stats(tr.x)
    info = DatasetInfo("rand", 37, 23, 3, mean, std, True, "prepared", "0" * 16, None)
    for cl in (False, True):
        dd = DeviceData(tr, te, info, torch.device(device), channels_last=cl)
        assert dd.x_train.dtype == torch.uint8 and dd.y_train.dtype == torch.int64
        assert (dd.n_train, dd.n_test, dd.num_classes) == (37, 23, 3)
        ref = (tr.x.transpose(0, 3, 1, 2) / 255.0 - np.array(mean).reshape(1, 3, 1, 1)) \
            / np.array(std).reshape(1, 3, 1, 1)
        imgs = dd.train_images()
        assert imgs.shape == (37, 3, 32, 32) and imgs.dtype == torch.float32
        np.testing.assert_allclose(imgs.cpu().numpy(), ref, rtol=0, atol=2e-6)
        batches = list(dd.test_batches(10))
        assert [len(yb) for _, yb in batches] == [10, 10, 3]
        xs = torch.cat([xb for xb, _ in batches]).cpu().numpy()
        np.testing.assert_allclose(xs, ref[:23], rtol=0, atol=2e-6)
        assert torch.equal(torch.cat([yb for _, yb in batches]).cpu(), torch.from_numpy(te.y))
        g = torch.Generator(device=device).manual_seed(0)
        aug = dd.augment(torch.arange(5, device=device), g)
        if cl:
            assert aug.is_contiguous(memory_format=torch.channels_last)
            assert imgs.is_contiguous(memory_format=torch.channels_last)
            assert batches[0][0].is_contiguous(memory_format=torch.channels_last)
        else:
            assert aug.is_contiguous() and batches[0][0].is_contiguous()


def test_end_to_end_builtin_to_device(tmp_path: Path) -> None:
    with relaxed_checksums():
        make_svhn_dir(tmp_path, 10, 4)
        tr, te, info = load_splits("svhn", tmp_path, download=False, subset={"train": 6})
    dd = DeviceData(tr, te, info, torch.device("cpu"))
    assert not dd.flip and dd.n_train == 6 and dd.y_test.shape == (4,)
    out = dd.augment(torch.tensor([0, 5, 5]), torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 32, 32) and torch.isfinite(out).all()


def test_download_true_uses_present_files_and_wraps_failures(tmp_path: Path, monkeypatch) -> None:
    with relaxed_checksums():
        want_tr, _ = make_cifar10_dir(tmp_path, 2, 3)
        tr, _, info = load_splits("cifar10", tmp_path, download=True)   # present: no network needed
    assert_split_equal(tr, want_tr)
    assert info.source == "torchvision"

    import urllib.error
    import torchvision.datasets.svhn as tv_svhn

    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(tv_svhn, "download_url", offline)
    with pytest.raises(UserError) as e:
        load_splits("svhn", tmp_path / "fresh", download=True)
    msg = str(e.value)
    assert "download into" in msg and str(tmp_path / "fresh" / "svhn") in msg
    # the user did not pass --no-download: do not tell them to drop it; say what works offline
    assert "--no-download" not in msg and "no network?" in msg and "make smoke" in msg
    # and the folders the failed download created are gone (no empty data/svhn left behind)
    assert not (tmp_path / "fresh").exists()


def test_failed_download_keeps_folders_it_did_not_create(tmp_path: Path, monkeypatch) -> None:
    import urllib.error
    import torchvision.datasets.cifar as tv_cifar

    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar100").mkdir()
    (tmp_path / "cifar100" / "notes.txt").write_text("mine")
    for name in ("cifar10", "cifar100"):
        with pytest.raises(UserError, match="no network"):
            load_splits(name, tmp_path, download=True)
    assert (tmp_path / "cifar10").is_dir() and (tmp_path / "cifar100" / "notes.txt").read_text() == "mine"


def test_synthetic_smoke_dataset_written_on_first_use(tmp_path: Path) -> None:
    from benchmarks.synthetic import SMOKE_DATASETS
    tr, te, info = load_splits("synthetic-cifar100", tmp_path / "data", download=False)
    classes, n_train, n_test = SMOKE_DATASETS["synthetic-cifar100"]
    assert (len(tr), len(te), info.num_classes, info.source) == (n_train, n_test, classes, "prepared")
    again = load_splits("synthetic-cifar100", tmp_path / "other", download=False)[2]
    assert again.fingerprint == info.fingerprint            # same bytes on every machine


def test_failed_smoke_data_write_leaves_no_folder(tmp_path: Path, monkeypatch) -> None:
    import benchmarks.synthetic as synthetic

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(synthetic, "write_npz_atomic", full_disk)
    with pytest.raises(UserError, match="No space left") as e:
        load_splits("synthetic-svhn", tmp_path / "data", download=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "data").exists()


def _blocked_on(inode: int, pid: int) -> bool:
    """Whether /proc/locks shows ``pid`` waiting ("->") for a flock on ``inode``."""
    for line in Path("/proc/locks").read_text().splitlines():
        f = line.split()
        if "->" in f and "FLOCK" in f:
            rest = f[f.index("->") + 1:]        # FLOCK ADVISORY WRITE pid maj:min:inode ...
            if len(rest) >= 5 and rest[3] == str(pid) and rest[4].rsplit(":", 1)[-1] == str(inode):
                return True
    return False


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux /proc/locks")
def test_first_load_waits_for_another_runners_download(tmp_path: Path) -> None:
    # While another process holds the dataset's download lock (as during a download),
    # a loader that may download must wait, not fetch/extract into the same folder at once.
    import fcntl
    import subprocess
    import sys
    import time

    make_cifar10_dir(tmp_path, 2, 3)
    folder = tmp_path / "cifar10"
    tests = Path(__file__).resolve().parent
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from data_fixtures import relaxed_checksums; from benchmarks.data import load_splits\n"
            "with relaxed_checksums(): load_splits('cifar10', sys.argv[2], download=True)")
    with open(folder / ".download.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen([sys.executable, "-c", code, str(tests), str(tmp_path)],
                                cwd=tests.parent)
        # No sleep: the kernel lists a process blocked in flock() as a "->" line of
        # /proc/locks naming the file's inode. Poll for that (or the child exiting early,
        # which is the failure this test exists to catch).
        inode = os.fstat(held.fileno()).st_ino
        deadline = time.monotonic() + 120
        while not _blocked_on(inode, proc.pid) and proc.poll() is None:
            assert time.monotonic() < deadline, "loader neither waited on the lock nor exited"
            time.sleep(0.05)
        assert proc.poll() is None, "loader did not wait for the download lock"
        assert not (folder / "train.npz").exists()
        fcntl.flock(held, fcntl.LOCK_UN)
    assert proc.wait(timeout=120) == 0
    assert (folder / "train.npz").is_file() and (folder / "test.npz").is_file()
