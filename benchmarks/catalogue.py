"""The built-in datasets: one entry each, read by everything that needs to know one.

Why one table: a built-in used to be spelled out in a dozen places (the list of names,
class counts, official sizes, the flip rule, torchvision's file layout, the loader, the
cost estimate's sizes, the plot title, the smoke twin's class count and seed), and a new
one had to be added to all of them. Now :mod:`benchmarks.data` (loading, messages),
:mod:`benchmarks.estimate` (sizes without loading), :mod:`benchmarks.synthetic` (the
offline ``synthetic-<name>`` twins) and ``plots`` (titles, "full dataset or not") read this
table. Adding a built-in is one :class:`Builtin` below, plus a loader function in
:mod:`benchmarks.data` if none of the existing ones reads its official files.

Why no imports beyond the standard library: ``plots`` reads this table and must run on a
laptop without torch (tests/test_boundaries.py checks it); the estimate and the smoke data
read it before any model or dataset is loaded.

Any dataset name not in this table is a *prepared* dataset, ``DATA_ROOT/<name>/{train,
test}.npz`` (README, "Data and devices").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath


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
    #: The :mod:`benchmarks.data` loader that reads the official files (``_LOADERS``).
    loader: str
    #: The ``torchvision.datasets`` class that downloads the files and checks their MD5 sums.
    torchvision: str
    #: The files torchvision's download leaves under ``DATA_ROOT/<name>/`` (the files to
    #: copy there by hand on an offline machine).
    layout: tuple[str, ...]
    #: Where the official files come from (torchvision downloads them from there).
    homepage: str
    #: Seed of the images of the offline smoke twin ``synthetic-<name>``
    #: (:mod:`benchmarks.synthetic`; fixed, so every machine writes the same files).
    smoke_seed: int

    @property
    def where(self) -> str:
        """What a missing-files message names, relative to ``DATA_ROOT/<name>/``: the folder
        the files share (``cifar-10-batches-py``), else the first file (``train_32x32.mat``)."""
        return PurePosixPath(self.layout[0]).parts[0]

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
)}
