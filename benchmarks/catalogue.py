"""The built-in datasets: one entry each, read by everything that needs to know one.

Why one table: a built-in used to be spelled out in a dozen places (the list of names,
class counts, official sizes, the flip rule, torchvision's file layout, the loader, the
cost estimate's sizes, the plot title, the smoke twin's class count and seed), and a new
one had to be added to all of them. Now :mod:`benchmarks.data` (loading, messages),
:mod:`benchmarks.estimate` (sizes without loading), :mod:`benchmarks.synthetic` (the
offline ``synthetic-<name>`` twins) and ``plots`` (titles, "full dataset or not") read this
table. Adding a built-in is one :class:`Builtin` below, plus a loader function in
:mod:`benchmarks.data` if none of the existing ones reads its official files (torchvision
datasets), or a reader in :mod:`benchmarks.convert` (files torchvision does not read, which
``python -m benchmarks prepare NAME`` converts once: Tiny-ImageNet, downsampled ImageNet).

Why no imports beyond the standard library: ``plots`` reads this table and must run on a
laptop without torch (tests/test_boundaries.py checks it); the estimate and the smoke data
read it before any model or dataset is loaded.

Any dataset name not in this table is a *prepared* dataset, ``DATA_ROOT/<name>/{train,
test}.npz`` (docs/running.md, "Data and devices").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Optional


@dataclass(frozen=True)
class Builtin:
    """One built-in dataset: what it is, where its files lie, and how to get them."""

    #: The ``dataset`` value of a matrix, and its folder ``DATA_ROOT/<name>/``.
    name: str
    #: How figures and reports name the full official dataset.
    title: str
    #: Class count (labels 0..classes-1).
    classes: int
    #: Official split sizes; a load with other sizes is logged as a warning (it still runs:
    #: the counts and fingerprint in run.json say what was used).
    train_size: int
    test_size: int
    #: Whether a horizontal flip keeps the label (``augment.flip: auto``): not for digits.
    flip: bool
    #: What reads the official files: a :mod:`benchmarks.data` loader (``_LOADERS``) for a
    #: torchvision dataset, else a :mod:`benchmarks.convert` reader (``READERS``).
    loader: str
    #: The ``torchvision.datasets`` class that downloads the files and checks their MD5
    #: sums; None for data torchvision does not read, which the user puts in place and
    #: ``python -m benchmarks prepare NAME`` converts once (nothing is downloaded).
    torchvision: Optional[str]
    #: The files torchvision's download leaves under ``DATA_ROOT/<name>/`` (the files to
    #: copy there by hand on an offline machine); for a converted dataset, the official
    #: files (or folders) its reader looks for there.
    layout: tuple[str, ...]
    #: Where the official files come from (torchvision downloads them from there).
    homepage: str
    #: Seed of the images of the offline smoke twin ``synthetic-<name>``
    #: (:mod:`benchmarks.synthetic`; fixed, so every machine writes the same files); None:
    #: no twin (a 600-image twin cannot hold every one of ImageNet's 1000 classes).
    smoke_seed: Optional[int]
    #: Height = width of the images, which the cost estimate needs before any data exists
    #: (a step's FLOPs grow with the pixels).
    image_size: int = 32
    #: For a converted dataset: what to download, said by the missing-data message.
    get: str = ""

    @property
    def where(self) -> str:
        """What a missing-files message names, relative to ``DATA_ROOT/<name>/``: the folder
        the files share (``cifar-10-batches-py``), else the first file (``train_32x32.mat``)."""
        return PurePosixPath(self.layout[0]).parts[0]

    @property
    def converted(self) -> bool:
        """Whether ``prepare NAME`` converts its files (no torchvision class, no download)."""
        return self.torchvision is None

    @property
    def smoke_name(self) -> str:
        """The name of its synthetic smoke twin (same class count, random pixels)."""
        return f"synthetic-{self.name}"


def _under(folder: str, *files: str) -> tuple[str, ...]:
    """``folder/file`` for each file (a layout whose files share one folder)."""
    return tuple(f"{folder}/{f}" for f in files)


BUILTINS: dict[str, Builtin] = {d.name: d for d in (
    Builtin("cifar10", "CIFAR-10", classes=10, train_size=50000, test_size=10000, flip=True,
            loader="cifar", torchvision="CIFAR10",
            layout=_under("cifar-10-batches-py", *(f"data_batch_{i}" for i in range(1, 6)),
                          "test_batch", "batches.meta"),
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html", smoke_seed=12),
    Builtin("cifar100", "CIFAR-100", classes=100, train_size=50000, test_size=10000, flip=True,
            loader="cifar", torchvision="CIFAR100",
            layout=_under("cifar-100-python", "train", "test", "meta"),
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html", smoke_seed=13),
    Builtin("svhn", "SVHN", classes=10, train_size=73257, test_size=26032, flip=False,
            loader="svhn", torchvision="SVHN", layout=("train_32x32.mat", "test_32x32.mat"),
            homepage="http://ufldl.stanford.edu/housenumbers/", smoke_seed=11),
    # Converted once by `python -m benchmarks prepare NAME` (benchmarks/convert.py) from
    # files the user puts under DATA_ROOT/<name>/ (the downsampled ImageNet's batches may
    # sit in the subfolders their zips unpack to). The labelled official validation split
    # is the test split (neither dataset publishes test labels). Nothing is downloaded:
    # the ImageNet files need a login, and for Tiny-ImageNet (public by URL) the suite has
    # no official checksum to verify a download against (our choice: the built-ins are
    # downloaded only through torchvision, which checks one).
    Builtin("tinyimagenet", "Tiny-ImageNet", classes=200, train_size=100000, test_size=10000,
            flip=True, loader="tinyimagenet", torchvision=None,
            layout=_under("tiny-imagenet-200", "wnids.txt", "train", "val/val_annotations.txt",
                          "val/images"),
            homepage="http://cs231n.stanford.edu/tiny-imagenet-200.zip", smoke_seed=None,
            image_size=64, get="the zip http://cs231n.stanford.edu/tiny-imagenet-200.zip, unzipped"),
    Builtin("imagenet32", "ImageNet 32x32", classes=1000, train_size=1281167, test_size=50000,
            flip=True, loader="downsampled_imagenet", torchvision=None,
            layout=(*(f"train_data_batch_{i}.npz" for i in range(1, 11)), "val_data.npz"),
            homepage="https://image-net.org/download-images", smoke_seed=None, image_size=32,
            get="Downsampled ImageNet 32x32 from https://image-net.org/download-images (login "
                "required): Imagenet32_train_npz.zip and Imagenet32_val_npz.zip, unzipped"),
    Builtin("imagenet64", "ImageNet 64x64", classes=1000, train_size=1281167, test_size=50000,
            flip=True, loader="downsampled_imagenet", torchvision=None,
            layout=(*(f"train_data_batch_{i}.npz" for i in range(1, 11)), "val_data.npz"),
            homepage="https://image-net.org/download-images", smoke_seed=None, image_size=64,
            get="Downsampled ImageNet 64x64 from https://image-net.org/download-images (login "
                "required): the two Imagenet64_train_part*_npz.zip and Imagenet64_val_npz.zip, "
                "unzipped"),
)}
