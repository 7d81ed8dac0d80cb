"""Tiny datasets in the *real* on-disk formats, for tests that must not download anything.

Why real formats: the loader goes through the genuine ``torchvision.datasets`` classes, so
these files exercise exactly the code path a user's downloaded archive takes. Only the MD5
checksum can't match (the official hashes are of the official files), so tests wrap loads in
:func:`relaxed_checksums`, which replaces torchvision's ``check_integrity`` by "the file
exists" for the duration of the ``with`` block (or the test, via the pytest fixture
:func:`relaxed_torchvision_checksums`). Library code never does this.

Every ``make_*`` helper takes the *data root* (what ``--data-root`` points at), writes
``root/<name>/...`` in the layout torchvision expects, and returns the expected host
arrays as ``(train, test)`` :class:`benchmarks.data.Split` in the suite's format (uint8 NHWC,
int64 labels), so a test can compare them with what :func:`benchmarks.data.load_splits`
returns. Images are random but seeded; labels cycle through every class first (so small
splits still contain each class) and are then shuffled.
"""
from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path
from typing import Iterator, Optional
from unittest import mock

import numpy as np
import pytest

from benchmarks.data import Split

__all__ = [
    "make_images", "make_labels", "make_cifar10_dir", "make_cifar100_dir", "make_svhn_dir",
    "make_prepared", "write_prepared", "relaxed_checksums", "relaxed_torchvision_checksums",
]


def make_images(n: int, seed: int = 0, size: int = 32) -> np.ndarray:
    """``n`` random uint8 NHWC images (n, size, size, 3), seeded."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def make_labels(n: int, num_classes: int, seed: int = 0) -> np.ndarray:
    """int64 labels (n,): every class once (while n allows), the rest random; shuffled."""
    rng = np.random.default_rng(seed + 1_000_003)
    base = np.arange(min(n, num_classes), dtype=np.int64)
    rest = rng.integers(0, num_classes, size=n - len(base), dtype=np.int64)
    return rng.permutation(np.concatenate([base, rest])).astype(np.int64)


def _pickle(path: Path, obj: dict) -> None:
    # protocol 2 like the official (Python-2 era) files; torchvision reads them with latin1
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_rows(x_nhwc: np.ndarray) -> np.ndarray:
    """NHWC uint8 -> the official (n, 3072) rows: 1024 red, 1024 green, 1024 blue, row-major."""
    return np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2).reshape(len(x_nhwc), -1))


def make_cifar10_dir(root: str | Path, n_train_per_batch: int = 4, n_test: int = 10,
                     seed: int = 0) -> tuple[Split, Split]:
    """Write ``root/cifar10/cifar-10-batches-py/`` (data_batch_1..5, test_batch, batches.meta)."""
    base = Path(root) / "cifar10" / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    n_train = 5 * n_train_per_batch
    x_tr, y_tr = make_images(n_train, seed), make_labels(n_train, 10, seed)
    x_te, y_te = make_images(n_test, seed + 1), make_labels(n_test, 10, seed + 1)
    for b in range(5):
        sl = slice(b * n_train_per_batch, (b + 1) * n_train_per_batch)
        _pickle(base / f"data_batch_{b + 1}", {
            "batch_label": f"training batch {b + 1} of 5",
            "labels": [int(v) for v in y_tr[sl]],
            "data": _cifar_rows(x_tr[sl]),
            "filenames": [f"img_{b}_{i}.png" for i in range(n_train_per_batch)],
        })
    _pickle(base / "test_batch", {
        "batch_label": "testing batch 1 of 1",
        "labels": [int(v) for v in y_te],
        "data": _cifar_rows(x_te),
        "filenames": [f"test_{i}.png" for i in range(n_test)],
    })
    _pickle(base / "batches.meta", {
        "label_names": ["airplane", "automobile", "bird", "cat", "deer",
                        "dog", "frog", "horse", "ship", "truck"],
        "num_cases_per_batch": n_train_per_batch,
        "num_vis": 3072,
    })
    return Split(x_tr, y_tr), Split(x_te, y_te)


def make_cifar100_dir(root: str | Path, n_train: int = 20, n_test: int = 10,
                      seed: int = 0) -> tuple[Split, Split]:
    """Write ``root/cifar100/cifar-100-python/`` (train, test, meta) with fine and coarse labels."""
    base = Path(root) / "cifar100" / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr = make_images(n_train, seed), make_labels(n_train, 100, seed)
    x_te, y_te = make_images(n_test, seed + 1), make_labels(n_test, 100, seed + 1)
    for fname, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        _pickle(base / fname, {
            "filenames": [f"{fname}_{i}.png" for i in range(len(y))],
            "batch_label": f"{fname}ing batch 1 of 1",
            "fine_labels": [int(v) for v in y],
            "coarse_labels": [int(v) // 5 for v in y],
            "data": _cifar_rows(x),
        })
    _pickle(base / "meta", {
        "fine_label_names": [f"class_{i:02d}" for i in range(100)],
        "coarse_label_names": [f"super_{i:02d}" for i in range(20)],
    })
    return Split(x_tr, y_tr), Split(x_te, y_te)


def make_svhn_dir(root: str | Path, n_train: int = 20, n_test: int = 10,
                  seed: int = 0) -> tuple[Split, Split]:
    """Write ``root/svhn/{train,test}_32x32.mat`` like the official files.

    ``X`` is uint8 (32, 32, 3, N) and ``y`` uint8 (N, 1) with digit 0 stored as label 10;
    the returned splits hold what the suite should load: NHWC images, digit 0 as label 0.
    """
    from scipy.io import savemat

    folder = Path(root) / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for fname, n, s in (("train_32x32.mat", n_train, seed), ("test_32x32.mat", n_test, seed + 1)):
        x, y = make_images(n, s), make_labels(n, 10, s)
        mat_y = np.where(y == 0, 10, y).astype(np.uint8).reshape(n, 1)
        savemat(folder / fname, {"X": np.ascontiguousarray(x.transpose(1, 2, 3, 0)), "y": mat_y})
        out.append(Split(x, y))
    return out[0], out[1]


def write_prepared(root: str | Path, name: str, train: Split, test: Split) -> Path:
    """Write given arrays as a prepared dataset ``root/<name>/{train,test}.npz``; returns the folder."""
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "train.npz", x=train.x, y=train.y)
    np.savez(folder / "test.npz", x=test.x, y=test.y)
    return folder


def make_prepared(root: str | Path, name: str, n_train: int = 40, n_test: int = 20,
                  num_classes: int = 10, seed: int = 0, size: int = 32) -> tuple[Split, Split]:
    """Write a random prepared dataset ``root/<name>/{train,test}.npz`` (x uint8 NHWC, y int64)."""
    train = Split(make_images(n_train, seed, size), make_labels(n_train, num_classes, seed))
    test = Split(make_images(n_test, seed + 1, size), make_labels(n_test, num_classes, seed + 1))
    write_prepared(root, name, train, test)
    return train, test


@contextlib.contextmanager
def relaxed_checksums() -> Iterator[None]:
    """Inside the block, torchvision's dataset checksum is "the file exists" (tests only).

    Patches ``check_integrity`` where the CIFAR and SVHN classes (and ``download_url``) look
    it up, which covers their ``_check_integrity``, metadata check and download short-cut.
    """
    def exists(fpath: str | os.PathLike, md5: Optional[str] = None) -> bool:
        return os.path.isfile(fpath)

    with mock.patch("torchvision.datasets.cifar.check_integrity", exists), \
            mock.patch("torchvision.datasets.svhn.check_integrity", exists), \
            mock.patch("torchvision.datasets.utils.check_integrity", exists):
        yield


@pytest.fixture
def relaxed_torchvision_checksums() -> Iterator[None]:
    """Pytest fixture form of :func:`relaxed_checksums` (import it into a test module)."""
    with relaxed_checksums():
        yield
