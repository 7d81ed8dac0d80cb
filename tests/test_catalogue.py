"""The dataset catalogue (issue "One method, one file", item A): one entry per built-in,
and every part of the suite that knows a built-in reads it from there."""
from __future__ import annotations

import pytest

from benchmarks import data, estimate, synthetic
from benchmarks.catalogue import BUILTINS
from plots.aggregate import dataset_label


def test_every_entry_names_a_registered_loader_and_a_torchvision_class():
    from torchvision import datasets

    for d in BUILTINS.values():
        assert d.loader in data._LOADERS, d.name
        assert hasattr(datasets, d.torchvision), d.name


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_layout_is_what_torchvision_reads(name):
    # the layout is written out in the catalogue (it is the README's "copy these files");
    # torchvision's own class attributes say which files it opens and checks
    from torchvision import datasets

    entry = BUILTINS[name]
    cls = getattr(datasets, entry.torchvision)
    if hasattr(cls, "base_folder"):   # CIFAR-10/100
        files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        want = {f"{cls.base_folder}/{f}" for f in files}
    else:                             # SVHN: one .mat file per split
        want = {cls.split_list[s][1] for s in ("train", "test")}
    assert set(entry.layout) == want


def test_consumers_read_the_catalogue():
    assert data.BUILTIN == tuple(BUILTINS)
    assert estimate.BUILTIN_SIZES == {d.name: (d.train_size, d.test_size, d.classes)
                                      for d in BUILTINS.values()}
    assert synthetic.SMOKE_DATASETS == {f"synthetic-{d.name}": (d.classes, 600, 300)
                                        for d in BUILTINS.values()}
    for d in BUILTINS.values():
        assert dataset_label(d.name, d.train_size, d.test_size, reduced=False).startswith(d.title)
        assert dataset_label(d.name, 10, 5, reduced=True).startswith(f"{d.name} [subset]")


def test_the_entries_keep_what_runs_and_smoke_data_were_made_with():
    # changing any of these changes results (flip, sizes) or the smoke data's bytes (seeds)
    got = {n: (d.classes, d.train_size, d.test_size, d.flip, d.smoke_seed)
           for n, d in BUILTINS.items() if n in ("cifar10", "cifar100", "svhn")}
    assert got == {"cifar10": (10, 50000, 10000, True, 12),
                   "cifar100": (100, 50000, 10000, True, 13),
                   "svhn": (10, 73257, 26032, False, 11)}
    assert [BUILTINS[n].where for n in ("cifar10", "cifar100", "svhn")] == [
        "cifar-10-batches-py", "cifar-100-python", "train_32x32.mat"]   # named in messages
    assert len({d.smoke_seed for d in BUILTINS.values()}) == len(BUILTINS)  # twins differ
