"""The dataset catalogue (issue "One method, one file", item A): one entry per built-in,
and every part of the suite that knows a built-in reads it from there."""
from __future__ import annotations

import pytest

from benchmarks import data, estimate, synthetic
from benchmarks.catalogue import BUILTINS
from plots.aggregate import dataset_label


TORCHVISION = sorted(n for n, d in BUILTINS.items() if not d.converted)
CONVERTED = sorted(n for n, d in BUILTINS.items() if d.converted)


def test_every_entry_names_a_registered_loader_and_a_torchvision_class():
    from torchvision import datasets

    from benchmarks import convert

    for d in BUILTINS.values():
        if d.converted:   # read by benchmarks.convert (prepare NAME), never downloaded
            assert d.loader in convert.READERS and d.get and d.homepage in d.get, d.name
        else:
            assert d.loader in data._LOADERS, d.name
            assert hasattr(datasets, d.torchvision), d.name
    assert CONVERTED == ["imagenet32", "imagenet64", "tinyimagenet"]


@pytest.mark.parametrize("name", CONVERTED)
def test_layout_is_what_the_converters_read(name, tmp_path):
    # the layout names the official files; the test writers write them in the real format
    # and the reader finds exactly those files (by name: the ImageNet batches may sit in
    # the subfolders their zips unpack to)
    from benchmarks import convert
    from data_fixtures import make_downsampled_imagenet_dir, make_tinyimagenet_dir

    entry = BUILTINS[name]
    if name == "tinyimagenet":
        make_tinyimagenet_dir(tmp_path, classes=2, per_class=1, n_val=2)
        assert all((tmp_path / name / p).exists() for p in entry.layout)
    else:
        make_downsampled_imagenet_dir(tmp_path, name, entry.image_size, per_batch=1, n_val=1)
        parts = convert.READERS[entry.loader](entry, tmp_path / name)
        assert [p.sources[0].name for p in parts] == list(entry.layout)


@pytest.mark.parametrize("name", TORCHVISION)
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
                                        for d in BUILTINS.values() if d.smoke_seed is not None}
    assert {d.name: estimate.image_size(d.name, "/nonexistent") for d in BUILTINS.values()} == {
        "cifar10": 32, "cifar100": 32, "svhn": 32, "tinyimagenet": 64, "imagenet32": 32,
        "imagenet64": 64}
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
    seeds = [d.smoke_seed for d in BUILTINS.values() if d.smoke_seed is not None]
    assert len(set(seeds)) == len(seeds) == 3                               # twins differ
    got = {n: (d.classes, d.train_size, d.test_size, d.image_size, d.flip)
           for n, d in BUILTINS.items() if d.converted}
    assert got == {"tinyimagenet": (200, 100000, 10000, 64, True),       # the official sizes
                   "imagenet32": (1000, 1281167, 50000, 32, True),
                   "imagenet64": (1000, 1281167, 50000, 64, True)}
