"""Build prepared datasets from the official ones: ``python -m benchmarks prepare cifar10-5k``.

``prepare tinyimagenet|imagenet32|imagenet64`` converts the built-ins torchvision does not
read into their cache, once and resumably (:mod:`benchmarks.convert`).

``cifar10-5k`` is the real CIFAR-10 subset that ``cpu_mini`` trains on: the first 1102
images of ``data_batch_1``, the first 1017 of ``data_batch_2..5`` (5,170 train) and the
first 1017 of ``test_batch``, with their official labels. Defining it by file prefixes
(not by a random draw) makes it reproducible by anyone holding the official archive.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import Split, load_splits, write_npz_atomic
from .errors import UserError

BATCH = 10_000  # images per official CIFAR-10 training batch
CIFAR10_5K_TRAIN = (1102, 1017, 1017, 1017, 1017)  # prefix taken from data_batch_1..5
CIFAR10_5K_TEST = 1017


def cifar10_5k(train: Split, test: Split) -> tuple[Split, Split]:
    """The cifar10-5k prefixes of the full CIFAR-10 splits (torchvision order)."""
    if len(train) != 5 * BATCH or len(test) < CIFAR10_5K_TEST:
        raise UserError(f"cifar10-5k needs the full CIFAR-10 training set (50,000 images), got {len(train)}")
    idx = np.concatenate([np.arange(k * BATCH, k * BATCH + n) for k, n in enumerate(CIFAR10_5K_TRAIN)])
    return Split(train.x[idx], train.y[idx]), Split(test.x[:CIFAR10_5K_TEST], test.y[:CIFAR10_5K_TEST])


RECIPES = {"cifar10-5k": ("cifar10", cifar10_5k)}


#: ``prepare smoke-data`` writes every synthetic smoke dataset (benchmarks/synthetic.py).
SMOKE_DATA = "smoke-data"


def prepare_smoke_data(data_root: str | Path, force: bool = False) -> list[Path]:
    """Write the synthetic smoke datasets under ``data_root`` (kept if present); their folders."""
    from .synthetic import SMOKE_DATASETS, write_smoke_dataset

    out = []
    for name in SMOKE_DATASETS:
        folder = Path(data_root) / name
        if force or not ((folder / "train.npz").is_file() and (folder / "test.npz").is_file()):
            try:
                write_smoke_dataset(name, data_root)
            except OSError as e:
                raise UserError(f"{name}: cannot write under {data_root} ({e.strerror or e}); "
                                f"choose a writable --data-root") from e
        out.append(folder)
    return out


def converted_builtins() -> list[str]:
    """The built-ins that ``prepare NAME`` converts (benchmarks/catalogue.py)."""
    from .catalogue import BUILTINS

    return [n for n, d in BUILTINS.items() if d.converted]


def prepare(name: str, data_root: str | Path, download: bool = True, force: bool = False) -> Path:
    """Write ``data_root/<name>/{train,test}.npz``; returns the folder (kept if present)."""
    if name in converted_builtins():
        from .convert import convert

        return convert(name, data_root, force)
    if name not in RECIPES:
        raise UserError(f"prepare {name!r}: unknown; can prepare "
                        f"{', '.join([*RECIPES, *converted_builtins(), SMOKE_DATA])}")
    folder = Path(data_root) / name
    if not force and (folder / "train.npz").is_file() and (folder / "test.npz").is_file():
        return folder
    source, recipe = RECIPES[name]
    train, test, _ = load_splits(source, data_root, download)
    tr, te = recipe(train, test)
    folder.mkdir(parents=True, exist_ok=True)
    write_npz_atomic(folder / "train.npz", tr.x, tr.y)
    write_npz_atomic(folder / "test.npz", te.x, te.y)
    return folder
