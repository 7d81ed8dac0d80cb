"""Tiny datasets the suite writes itself, so a smoke run needs no download.

Why this module exists: ``make smoke`` must work on a machine without internet (a laptop
on a train, a cluster node behind a firewall), and the tests must never download. Both
use the writers here: random but seeded images with labels that cycle through every
class first (so small splits still hold each class), written in the *real* on-disk
formats -- the suite's prepared ``{train,test}.npz`` and, for tests of the torchvision
path, the official CIFAR-10/CIFAR-100 pickle batches and SVHN ``.mat`` files.

The smoke datasets (:data:`SMOKE_DATASETS`: ``synthetic-<name>`` for the built-ins of
:mod:`benchmarks.catalogue` with a smoke seed, e.g. ``synthetic-svhn``) are prepared datasets with the image
shape and class count of their namesakes. Their names say what they are everywhere a
result is shown (run ids, figure titles, report tables): random pixels, so a smoke run
checks the pipeline, and its accuracies mean nothing. :func:`benchmarks.data.load_splits`
writes one on first use when it is missing (no network involved), so ``python -m
benchmarks run smoke`` works as is.

Every ``make_*`` writer takes the *data root* (what ``--data-root`` points at), writes
``root/<name>/...`` and returns the arrays as ``(train, test)``
:class:`benchmarks.splits.Split` in the suite's format (uint8 NHWC, int64 labels).
"""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np

from .catalogue import BUILTINS
from .splits import Split, write_npz_atomic

#: Train and test sizes of every smoke dataset (smoke.yaml subsets them to 512 / 256, so
#: the stratified-subset path is exercised too).
SMOKE_SIZES = (600, 300)
#: name -> (classes, train size, test size) of the smoke datasets, one per built-in that
#: has a smoke seed (not the ImageNets: 600 images cannot hold 1000 classes).
SMOKE_DATASETS: dict[str, tuple[int, int, int]] = {
    d.smoke_name: (d.classes, *SMOKE_SIZES) for d in BUILTINS.values() if d.smoke_seed is not None}
#: seed of each smoke dataset's images (fixed: every machine writes the same files).
_SMOKE_SEEDS = {d.smoke_name: d.smoke_seed for d in BUILTINS.values() if d.smoke_seed is not None}


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
    """Write ``root/cifar10/cifar-10-batches-py/`` (data_batch_1..5, test_batch, batches.meta).

    torchvision verifies these files by the official MD5 sums, which random files cannot
    match: loading them needs the checksum relaxed (the tests do that, the suite never).
    """
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


def make_tinyimagenet_dir(root: str | Path, classes: int = 3, per_class: int = 4, n_val: int = 6,
                          seed: int = 0, size: int = 64) -> tuple[Split, Split]:
    """Write ``root/tinyimagenet/tiny-imagenet-200/`` as the official zip unpacks.

    ``wnids.txt`` (in a shuffled order, like the official file), ``words.txt``,
    ``train/<wnid>/images/<wnid>_<i>.JPEG`` with ``train/<wnid>/<wnid>_boxes.txt``,
    ``val/images/val_<i>.JPEG`` with ``val/val_annotations.txt`` (file, wnid, box, tab
    separated) and an unlabelled ``test/images/``. The first training image is greyscale,
    as a few official ones are. Returns what the suite should load: the decoded JPEGs
    (lossy, so not the random pixels written) with labels = ranks of the sorted wnids, in
    ImageFolder order (class by class, file names sorted as strings).
    """
    from PIL import Image

    base = Path(root) / "tinyimagenet" / "tiny-imagenet-200"
    rng = np.random.default_rng(seed)
    wnids = [f"n{10000000 + int(v):08d}" for v in rng.choice(90_000_000, classes, replace=False)]
    for d in ("val/images", "test/images"):
        (base / d).mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (base / "words.txt").write_text("".join(f"{w}\tthing {i}\n" for i, w in enumerate(wnids)))
    ranked = sorted(wnids)

    def save(path: Path, img: np.ndarray, grey: bool = False) -> np.ndarray:
        im = Image.fromarray(img[..., 0] if grey else img, "L" if grey else "RGB")
        im.save(path, "JPEG")
        with Image.open(path) as back:
            return np.asarray(back.convert("RGB"))

    xs, ys = [], []
    for w in ranked:
        folder = base / "train" / w / "images"
        folder.mkdir(parents=True, exist_ok=True)
        (base / "train" / w / f"{w}_boxes.txt").write_text(
            "".join(f"{w}_{i}.JPEG\t0\t0\t{size - 1}\t{size - 1}\n" for i in range(per_class)))
        imgs = make_images(per_class, seed + 1 + ranked.index(w), size)
        decoded = {f"{w}_{i}.JPEG": save(folder / f"{w}_{i}.JPEG", imgs[i], grey=(w == ranked[0] and i == 0))
                   for i in range(per_class)}
        for fname in sorted(decoded):
            xs.append(decoded[fname])
            ys.append(ranked.index(w))
    val_x, val_y, lines = [], [], []
    imgs = make_images(n_val, seed + 1000, size)
    for i in range(n_val):
        w = wnids[i % classes]
        val_x.append(save(base / "val" / "images" / f"val_{i}.JPEG", imgs[i]))
        val_y.append(ranked.index(w))
        lines.append(f"val_{i}.JPEG\t{w}\t1\t2\t{size - 2}\t{size - 3}\n")
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    save(base / "test" / "images" / "test_0.JPEG", make_images(1, seed + 2000, size)[0])
    return (Split(np.stack(xs), np.asarray(ys, dtype=np.int64)),
            Split(np.stack(val_x), np.asarray(val_y, dtype=np.int64)))


def make_downsampled_imagenet_dir(root: str | Path, name: str = "imagenet32", size: int = 32,
                                  per_batch: int = 3, n_val: int = 5, fmt: str = "npz",
                                  seed: int = 0) -> tuple[Split, Split]:
    """Write ``root/<name>/`` like the unzipped downsampled ImageNet (Chrabaszcz et al. 2017).

    ``fmt="npz"``: the current release, ``Imagenet{size}_train_npz/train_data_batch_{1..10}.npz``
    and ``Imagenet{size}_val_npz/val_data.npz``, each with ``data`` (N, 3*size*size) uint8
    (red, green, blue planes), ``labels`` 1..1000 and, in the training batches, ``mean``.
    ``fmt="pickle"``: the older release, the same dicts pickled, files without extension
    (``labels`` a list). Returns what the suite should load (NHWC, labels 0..999).
    """
    base = Path(root) / name
    train_dir = base / (f"Imagenet{size}_train_npz" if fmt == "npz" else f"Imagenet{size}_train")
    val_dir = base / (f"Imagenet{size}_val_npz" if fmt == "npz" else f"Imagenet{size}_val")
    for d in (train_dir, val_dir):
        d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def write(path: Path, x: np.ndarray, y: np.ndarray, mean: bool) -> None:
        d: dict = {"data": _cifar_rows(x), "labels": [int(v) + 1 for v in y]}
        if mean:
            d["mean"] = d["data"].mean(axis=0)
        if fmt == "npz":
            np.savez(path.with_name(path.name + ".npz"), **d)
        else:
            _pickle(path, d)

    xs, ys = [], []
    for b in range(1, 11):
        x, y = make_images(per_batch, seed + b, size), rng.integers(0, 1000, per_batch).astype(np.int64)
        write(train_dir / f"train_data_batch_{b}", x, y, mean=True)
        xs.append(x)
        ys.append(y)
    # validation labels among the training ones (the suite refuses test classes never trained)
    vx, vy = make_images(n_val, seed + 100, size), rng.choice(np.concatenate(ys), n_val)
    write(val_dir / "val_data", vx, vy, mean=False)
    return Split(np.concatenate(xs), np.concatenate(ys)), Split(vx, vy)


def write_prepared(root: str | Path, name: str, train: Split, test: Split) -> Path:
    """Write arrays as a prepared dataset ``root/<name>/{train,test}.npz``; returns the folder.

    Each file is replaced atomically, so a concurrent reader sees no file or a whole one.
    """
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    write_npz_atomic(folder / "train.npz", train.x, train.y)
    write_npz_atomic(folder / "test.npz", test.x, test.y)
    return folder


def make_prepared(root: str | Path, name: str, n_train: int = 40, n_test: int = 20,
                  num_classes: int = 10, seed: int = 0, size: int = 32) -> tuple[Split, Split]:
    """Write a random prepared dataset ``root/<name>/{train,test}.npz`` (x uint8 NHWC, y int64)."""
    train = Split(make_images(n_train, seed, size), make_labels(n_train, num_classes, seed))
    test = Split(make_images(n_test, seed + 1, size), make_labels(n_test, num_classes, seed + 1))
    write_prepared(root, name, train, test)
    return train, test


def write_smoke_dataset(name: str, root: str | Path) -> Path:
    """Write smoke dataset ``name`` (a key of :data:`SMOKE_DATASETS`) under ``root``.

    Deterministic (fixed seed), so two runners writing it at once write identical bytes,
    and atomic per file. If writing fails, a folder this call created is removed again:
    a failed attempt leaves no empty (or half-filled) data folder behind.
    """
    classes, n_train, n_test = SMOKE_DATASETS[name]
    root = Path(root)
    created = [p for p in (root, root / name) if not p.exists()]
    try:
        make_prepared(root, name, n_train=n_train, n_test=n_test, num_classes=classes,
                      seed=_SMOKE_SEEDS[name])
    except BaseException:
        for p in reversed(created):
            shutil.rmtree(p, ignore_errors=True)
        raise
    return root / name


def describe_smoke_data() -> str:
    """One line saying what the smoke datasets are (printed by ``prepare`` and ``make smoke``)."""
    sets = ", ".join(f"{n} ({c} classes, {tr}/{te} train/test)" for n, (c, tr, te) in SMOKE_DATASETS.items())
    return (f"smoke data: {sets}: random 32x32 RGB images written by the suite (no download), "
            f"not real data; smoke results check the pipeline, their accuracies mean nothing")
