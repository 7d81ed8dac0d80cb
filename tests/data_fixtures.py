"""Tiny datasets in the *real* on-disk formats, for tests that must not download anything.

The writers live in the package (:mod:`benchmarks.synthetic`, also used by the offline
smoke run); this module re-exports them and adds what only tests may do: relax
torchvision's checksums.

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
from typing import Iterator, Optional
from unittest import mock

import pytest

from benchmarks.synthetic import (make_cifar10_dir, make_cifar100_dir, make_downsampled_imagenet_dir,
                                  make_images, make_labels, make_prepared, make_svhn_dir,
                                  make_tinyimagenet_dir, write_prepared)

__all__ = [
    "make_images", "make_labels", "make_cifar10_dir", "make_cifar100_dir", "make_svhn_dir",
    "make_tinyimagenet_dir", "make_downsampled_imagenet_dir",
    "make_prepared", "write_prepared", "relaxed_checksums", "relaxed_torchvision_checksums",
]


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
