"""One split of a dataset on the host, and its on-disk form (``{x, y}`` npz).

Why apart from :mod:`benchmarks.data`: the dataset writers (:mod:`benchmarks.synthetic`,
``prepare``) need only this, and :mod:`benchmarks.data` calls the smoke-data writer on
first use; with these two in ``data`` the two modules imported each other. This module
imports no torch and nothing of ``benchmarks`` but the portable atomic writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from . import files


@dataclass(frozen=True)
class Split:
    """One split on the host: ``x`` uint8 NHWC (N, H, W, 3), ``y`` int64 (N,)."""

    x: np.ndarray
    y: np.ndarray
    #: Class count stated by the file (a prepared npz's optional ``num_classes``), else None.
    num_classes: Optional[int] = None
    #: Positions of these examples in the split they were taken from (``subset``,
    #: ``validation``), None for a whole split: what maps per-example files of the official
    #: training set (CIFAR-N human labels) onto a subset.
    index: Optional[np.ndarray] = None
    #: The dataset's own labels where ``y`` carries label noise (``label_noise``), else None.
    clean_y: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.y.shape[0])


def write_npz_atomic(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write ``{x, y}`` to ``path`` via a temp file + ``os.replace``.

    Why atomic: several runs of a matrix may load the same dataset at once; a reader must
    see either no cache or a complete one, never a half-written file.
    """
    files.atomic_write(Path(path), lambda f: np.savez(f, x=x, y=y), mode="wb")
