"""Datasets for the benchmark: host arrays in, whole splits on the device out.

Why this shape:

* **One in-memory format.** Every dataset ends up as ``x`` uint8 NHWC (N, H, W, 3) and
  ``y`` int64 (N,) -- the layout of torchvision's ``CIFAR10(...).data`` -- whether it came
  from torchvision (the built-ins, :mod:`benchmarks.catalogue`), from the npz cache the
  suite writes after the first torchvision load, or from a user's *prepared dataset*
  (``data_root/<name>/train.npz`` + ``test.npz``). The cache format *is* the prepared format,
  so there is one reader and one validator.
* **The whole split lives on the training device as uint8** (CIFAR-10 train is 150 MB) and
  :class:`DeviceData` normalises and augments batches there with a few vectorised tensor
  ops: no ``DataLoader`` worker processes, no PIL, no per-example Python loop, no host sync
  in the hot loop, and every random draw comes from the caller's ``torch.Generator`` so a
  run (and a resumed run) replays exactly.
* **Bad input is a one-line** :class:`~benchmarks.errors.UserError` naming the file or
  folder and the fix, raised before anything is trained.

Normalisation constants are *computed*, not hard-coded: per-channel mean and (population)
std of ``pixel / 255`` over the full training split, in float64, for every dataset alike.
One rule for built-ins and prepared datasets keeps runs comparable, a subset is normalised
with the statistics of the data it was drawn from (so a ``subset`` run differs from the
full run only in which examples it sees), and for the full official sets the rule
reproduces the usual published constants, e.g. CIFAR-10 mean (0.4914, 0.4822, 0.4465), std
(0.2470, 0.2435, 0.2616). (The often-copied std (0.2023, 0.1994, 0.2010) is the mean of
per-image stds, not the dataset std.)
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from . import io, noise
from .catalogue import BUILTINS, Builtin
from .errors import UserError
from .placement import Images
from .splits import Split, write_npz_atomic  # noqa: F401 (the host format, re-exported)
from .synthetic import SMOKE_DATASETS, write_smoke_dataset

log = logging.getLogger(__name__)

#: Names of the built-in datasets (benchmarks/catalogue.py); any other name is prepared.
BUILTIN = tuple(BUILTINS)


def _fix_hint(entry: Builtin) -> str:
    """How to get a built-in's missing or broken files, for a machine told not to download."""
    return (f"run without --no-download to fetch it, or copy the official files ({entry.homepage}) "
            "there (docs/running.md, section \"Data and devices\")")


#: After a download was tried and failed: the user did not pass --no-download, so do not
#: tell them to drop it; say what else works offline.
_DOWNLOAD_FAILED_HINT = ("no network? copy the official files there (docs/running.md, section \"Data and "
                         "devices\") and run again; `make smoke` needs no download")


# --------------------------------------------------------------------------- host side
@dataclass(frozen=True)
class DatasetInfo:
    """What a run needs to know (and record) about the data it trained on.

    ``n_train``/``n_test`` are the sizes *after* subsetting (what the run saw);
    ``n_train_full``/``n_test_full`` the sizes of the splits the subset was drawn from.
    ``n_val`` counts examples held out of the training split as a validation set (then
    ``n_train`` is what remains to train on). ``mean``/``std`` are per-channel statistics of ``pixel / 255`` over the full training
    split. ``fingerprint`` hashes the loaded (post-subset) arrays, so two runs with equal
    fingerprints provably saw the same examples.
    """

    name: str
    n_train: int
    n_test: int
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    flip: bool
    source: str
    fingerprint: str
    subset: Optional[dict]
    n_train_full: Optional[int] = None
    n_test_full: Optional[int] = None
    n_val: int = 0   # validation examples held out of the training set (``validation``)
    #: ``benchmarks.noise.summary`` of the training labels' noise, None for clean labels
    #: (then left out of run.json, as before the option existed).
    label_noise: Optional[dict] = None

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists) for run.json."""
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["subset"] = dict(self.subset) if self.subset is not None else None
        if d["label_noise"] is None:
            del d["label_noise"]
        return d


def load_splits(
    name: str, data_root: str | Path, download: bool, subset: Optional[dict] = None
) -> tuple[Split, Split, DatasetInfo]:
    """Load dataset ``name`` from ``data_root`` and return (train, test, info).

    Built-ins (:data:`benchmarks.catalogue.BUILTINS`) read ``data_root/<name>/{train,test}.npz``
    when present (``source="npz-cache"``), else load their official files through
    torchvision (downloading into ``data_root/<name>`` if ``download``) and write that
    cache; the built-ins torchvision does not read (Tiny-ImageNet, downsampled ImageNet)
    have only that cache, written once by ``python -m benchmarks prepare NAME``
    (:mod:`benchmarks.convert`). Any other name is a prepared dataset
    ``data_root/<name>/{train,test}.npz``.
    ``subset`` (``{"train": N, "test": M, "seed": s}``, each optional) takes a seeded
    class-stratified subset *after* the normalisation statistics were computed on the full
    training split.
    """
    subset_spec = _parse_subset(subset)  # validate before touching the disk
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or name.startswith("."):
        raise UserError(f"dataset name {name!r} is not a folder name: use a built-in "
                        f"({', '.join(BUILTIN)}) or the name of a folder under the data root")
    root = Path(data_root).expanduser()
    folder = root / name

    builtin = BUILTINS.get(name)
    if builtin is not None:
        cache = (folder / "train.npz", folder / "test.npz")
        if cache[0].is_file() and cache[1].is_file():
            train, test = (_read_npz(p, name) for p in cache)
            source = "npz-cache"
        elif builtin.converted:  # no torchvision class: `prepare NAME` converts the files once
            from .convert import not_converted_message
            raise UserError(not_converted_message(builtin, root))
        else:
            train, test = _load_torchvision(builtin, root, download)
            source = "torchvision"
            _write_cache(folder, train, test)
        num_classes = builtin.classes
        if (len(train), len(test)) != (builtin.train_size, builtin.test_size):
            log.warning("%s: loaded %d train / %d test examples from %s, not the official %d / %d",
                        name, len(train), len(test), source, builtin.train_size, builtin.test_size)
    else:
        files = (folder / "train.npz", folder / "test.npz")
        if not all(p.is_file() for p in files):
            _write_if_synthetic(name, root)
        for p in files:
            if not p.is_file():
                hint = f" (did you mean the built-in {name.lower()!r}?)" if name.lower() in BUILTIN else ""
                raise UserError(
                    f"{name}: no file {p}{hint}; a prepared dataset needs train.npz and test.npz in "
                    f"{folder} with x uint8 (N,32,32,3) NHWC and y int64 (N,); built-ins are "
                    f"{', '.join(BUILTIN)}")
        train, test = (_read_npz(p, name) for p in files)
        source = "prepared"
        _check_shapes(name, folder, train, test)  # before labels: a shape error says more
        num_classes = prepared_num_classes(name, folder, train, test)

    _check_pair(name, folder, train, test, num_classes)
    mean, std = channel_stats(train.x)
    n_train_full, n_test_full = len(train), len(test)

    if subset_spec is not None:
        seed = subset_spec["seed"]
        if subset_spec["train"] is not None:
            train = _take(train, stratified_indices(train.y, subset_spec["train"], seed, stream=0,
                                                    what=f"{name} train"))
        if subset_spec["test"] is not None:
            test = _take(test, stratified_indices(test.y, subset_spec["test"], seed, stream=1,
                                                  what=f"{name} test"))

    info = DatasetInfo(
        name=name, n_train=len(train), n_test=len(test), num_classes=num_classes,
        mean=mean, std=std, flip=builtin.flip if builtin else True, source=source,
        fingerprint=fingerprint(train, test), subset=subset_spec,
        n_train_full=n_train_full, n_test_full=n_test_full,
    )
    return train, test, info


#: ``stratified_indices`` stream of the validation split (0 = train subset, 1 = test subset).
VALIDATION_STREAM = 2


def split_validation(train: Split, n: int, seed: int, what: str = "train") -> tuple[Split, Split]:
    """(train minus validation, validation): a seeded, class-stratified split of ``n``
    training examples held out for tuning (model selection never looks at the test split).

    The draw uses :func:`stratified_indices` with ``seed`` and its own stream, never the
    run seed, so every seed of a matrix trains on the same examples and is scored on the
    same validation set (as with ``subset``). Both parts keep the split's original order.
    """
    val_idx = stratified_indices(train.y, n, seed, stream=VALIDATION_STREAM,
                                 what=f"validation split of {what}")
    if val_idx.size >= len(train):
        raise UserError(f"validation: {n} examples would leave none of the {len(train)} {what} "
                        "examples to train on; use a smaller validation size")
    keep = np.ones(len(train), dtype=bool)
    keep[val_idx] = False
    return _take(train, np.flatnonzero(keep)), _take(train, val_idx)


def load_run_data(name: str, data_root: str | Path, download: bool, subset: Optional[dict] = None,
                  validation: int = 0, label_noise: Optional[dict] = None,
                  ) -> tuple[Split, Split, Optional[Split], DatasetInfo]:
    """What one run trains and evaluates on: (train, test, val or None, info).

    :func:`load_splits`, then, if ``validation`` > 0, :func:`split_validation` applied
    after ``subset`` with the subset seed (0 without a subset). ``info.n_train`` is then
    the size of what is trained on, ``info.n_val`` the validation size, and the
    fingerprint also covers the validation examples. With ``validation == 0`` this is
    exactly ``load_splits`` (same info, same fingerprint as before the option existed).

    ``label_noise`` (resolved, :mod:`benchmarks.noise`) then corrupts the training labels
    only, seeded by the subset seed: ``train.y`` is noisy, ``train.clean_y`` the dataset's
    labels, ``info.label_noise`` what run.json records, and the fingerprint covers the
    noisy labels. Without it nothing changes.
    """
    train, test, val, info = _run_data(name, data_root, download, subset, validation)
    if not label_noise:
        return train, test, val, info
    seed = (info.subset or {}).get("seed", 0)
    noisy = noise.corrupt(train.y, label_noise, num_classes=info.num_classes, seed=seed,
                          dataset=name, index=train.index,
                          folder=Path(data_root).expanduser() / name)
    record = noise.summary(train.y, noisy, label_noise)
    train = replace(train, y=noisy, clean_y=train.y)
    h = hashlib.sha256(info.fingerprint.encode())
    h.update(np.ascontiguousarray(noisy).data)
    info = replace(info, fingerprint=h.hexdigest()[:16], label_noise=record)
    return train, test, val, info


def _run_data(name: str, data_root: str | Path, download: bool, subset: Optional[dict],
              validation: int) -> tuple[Split, Split, Optional[Split], DatasetInfo]:
    train, test, info = load_splits(name, data_root, download, subset)
    if not validation:
        return train, test, None, info
    seed = (info.subset or {}).get("seed", 0)
    train, val = split_validation(train, int(validation), seed, what=f"{name} train")
    h = hashlib.sha256(info.fingerprint.encode())
    for a in (train.y, val.y):  # which examples went where (the images are in the old hash)
        h.update(np.ascontiguousarray(a).data)
    h.update(np.ascontiguousarray(val.x).data)
    info = replace(info, n_train=len(train), n_val=len(val), fingerprint=h.hexdigest()[:16])
    return train, test, val, info


def channel_stats(x: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and population std of ``x / 255`` for uint8 NHWC ``x``, in float64.

    Computed exactly from a 256-bin histogram per channel, so the full CIFAR/SVHN training
    sets need no float copy (1.2 GB in float64) and the result does not depend on summation
    order. A constant channel (std 0) gets std 1 so normalisation stays finite.
    """
    hist = np.zeros((x.shape[-1], 256), dtype=np.int64)
    for s in range(0, x.shape[0], 4096):          # chunks keep the strided channel copies small
        block = x[s:s + 4096]
        for c in range(x.shape[-1]):
            hist[c] += np.bincount(block[..., c].reshape(-1), minlength=256)
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[-1]):
        counts = hist[c].astype(np.float64)
        n = counts.sum()
        m = float((counts * levels).sum() / n)
        var = float((counts * (levels - m) ** 2).sum() / n)
        means.append(m)
        stds.append(float(np.sqrt(var)) if var > 0 else 1.0)
    return tuple(means), tuple(stds)  # type: ignore[return-value]


def fingerprint(train: Split, test: Split) -> str:
    """First 16 hex chars of sha256 over the bytes of train x, train y, test x, test y."""
    h = hashlib.sha256()
    for a in (train.x, train.y, test.x, test.y):
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()[:16]


def stratified_indices(y: np.ndarray, n: int, seed: int, stream: int = 0, what: str = "split") -> np.ndarray:
    """Sorted indices of a seeded, class-stratified subset of exactly ``n`` examples.

    Per-class counts are proportional to the class frequencies in ``y``, rounded by largest
    remainder (ties: lower class first) so they sum to exactly ``n``; if ``n`` is at least
    the number of classes present, every present class gets at least one example (taken
    from the most over-allocated class). Examples within a class are drawn with a numpy
    Generator seeded by ``(seed, stream)`` -- never the global RNG -- so the subset depends
    only on the subset seed (not the run seed: every seed of a matrix sees the same
    examples), and train (stream 0) and test (stream 1) subsets are independent draws.
    Indices keep the original order of the split.
    """
    total = int(y.shape[0])
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise UserError(f"subset for {what}: size must be a positive integer, got {n!r}")
    n = int(n)
    if n > total:
        raise UserError(f"subset for {what}: asked for {n} examples but the split has only {total}")
    if n == total:
        return np.arange(total, dtype=np.int64)
    classes, counts = np.unique(y, return_counts=True)
    counts = counts.astype(np.int64)
    scaled = n * counts                     # exact integer arithmetic: quota_k = scaled_k / total
    alloc = scaled // total
    rem = scaled % total
    order = np.lexsort((np.arange(len(classes)), -rem))   # largest remainder first
    alloc[order[: n - int(alloc.sum())]] += 1
    if n >= len(classes):
        for k in order:                      # classes that got nothing, largest remainder first
            if alloc[k] == 0:
                surplus = np.where(alloc > 1, alloc * total - scaled, np.iinfo(np.int64).min)
                donor = int(np.argmax(surplus))
                alloc[donor] -= 1
                alloc[k] += 1
    assert int(alloc.sum()) == n
    rng = np.random.default_rng([int(seed), int(stream)])
    picked = [rng.choice(np.flatnonzero(y == c), size=int(a), replace=False)
              for c, a in zip(classes, alloc) if a > 0]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _take(split: Split, idx: np.ndarray) -> Split:
    where = np.arange(len(split), dtype=np.int64) if split.index is None else split.index
    return Split(x=np.ascontiguousarray(split.x[idx]), y=np.ascontiguousarray(split.y[idx]),
                 index=where[idx])


def _parse_subset(subset: Optional[dict]) -> Optional[dict]:
    """Validate ``subset`` and return it fully resolved (``train``, ``test``, ``seed``)."""
    if subset is None:
        return None
    if not isinstance(subset, dict):
        raise UserError(f"subset must be a mapping like {{train: 5000, test: 1000, seed: 0}}, got {subset!r}")
    unknown = sorted(set(subset) - {"train", "test", "seed"})
    if unknown:
        raise UserError(f"subset: unknown key(s) {', '.join(map(str, unknown))} (allowed: train, test, seed)")
    out: dict[str, Any] = {"train": subset.get("train"), "test": subset.get("test"), "seed": subset.get("seed", 0)}
    for key in ("train", "test"):
        v = out[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise UserError(f"subset.{key}: must be a positive integer or null, got {v!r}")
        out[key] = None if v is None else int(v)
    s = out["seed"]
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
        raise UserError(f"subset.seed: must be a non-negative integer, got {s!r}")
    out["seed"] = int(s)
    return out


# ----------------------------------------------------------------------- file formats
def _read_npz(path: Path, name: str) -> Split:
    """Read and validate one ``{x, y}`` npz file; every problem is a UserError naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise UserError(f"{name}: {path} has no array {' or '.join(map(repr, missing))} "
                                f"(found: {', '.join(z.files) or 'none'}); expected x uint8 (N,32,32,3) and y int64 (N,)")
            x, y = z["x"], z["y"]
            stated = z["num_classes"] if "num_classes" in z.files else None
    except UserError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"{name}: cannot read {path} as an .npz of plain arrays ({type(e).__name__}: {e}); "
                        f"write it with numpy.savez(path, x=..., y=...)") from e
    problems = []
    if x.dtype != np.uint8:
        problems.append(f"x has dtype {x.dtype}, expected uint8 (pixel values 0..255)")
    if x.ndim != 4 or x.shape[-1] != 3:
        nchw = x.ndim == 4 and x.shape[1] == 3
        problems.append(f"x has shape {x.shape}, expected NHWC (N, H, W, 3)"
                        + (" -- looks like NCHW; use x.transpose(0, 2, 3, 1)" if nchw else ""))
    elif x.shape[1] < 1 or x.shape[2] < 1:
        problems.append(f"x has shape {x.shape}: empty images")
    if y.dtype != np.int64:
        problems.append(f"y has dtype {y.dtype}, expected int64 (use y.astype(numpy.int64))")
    if y.ndim != 1:
        problems.append(f"y has shape {y.shape}, expected (N,)")
    if not problems and x.shape[0] != y.shape[0]:
        problems.append(f"x has {x.shape[0]} examples but y has {y.shape[0]} labels")
    if not problems and y.shape[0] == 0:
        problems.append("it holds no examples")
    if not problems and y.min() < 0:
        problems.append(f"y has negative labels (min {int(y.min())}); labels must be 0..num_classes-1")
    num_classes = None
    if stated is not None:
        if stated.ndim != 0 or stated.dtype.kind not in "iu" or int(stated) < 1:
            problems.append(f"num_classes is {stated!r}, expected one integer >= 1 "
                            "(numpy.savez(path, x=..., y=..., num_classes=10))")
        else:
            num_classes = int(stated)
    if problems:
        raise UserError(f"{name}: {path}: " + "; ".join(problems))
    return Split(x=np.ascontiguousarray(x), y=np.ascontiguousarray(y), num_classes=num_classes)


def _check_shapes(name: str, folder: Path, train: Split, test: Split) -> None:
    if train.x.shape[1:] != test.x.shape[1:]:
        raise UserError(f"{name}: train images are {train.x.shape[1:]} but test images are "
                        f"{test.x.shape[1:]} (in {folder}); both splits need the same H, W, 3")


def _check_pair(name: str, folder: Path, train: Split, test: Split, num_classes: int) -> None:
    _check_shapes(name, folder, train, test)
    for split, what in ((train, "train"), (test, "test")):
        top = int(split.y.max())
        if top >= num_classes:
            raise UserError(f"{name}: {what} label {top} in {folder} is out of range for "
                            f"{num_classes} classes (labels must be 0..{num_classes - 1})")
    unseen = np.setdiff1d(np.unique(test.y), np.unique(train.y))
    if unseen.size:
        raise UserError(f"{name}: train and test labels disagree in {folder}: test label(s) "
                        f"{_few(unseen)} never occur in train.npz; a model cannot learn them")


def _few(values: np.ndarray, k: int = 5) -> str:
    shown = ", ".join(str(int(v)) for v in values[:k])
    return shown + (f", ... ({values.size} in all)" if values.size > k else "")


def prepared_num_classes(name: str, folder: Path, train: Split, test: Split) -> int:
    """The class count C of a prepared dataset (labels must then lie in 0..C-1).

    Rule: if ``train.npz`` or ``test.npz`` holds an integer ``num_classes`` (both, if
    both hold one, must agree), C is that. Otherwise C is read from the training labels,
    which must then be exactly ``{0, ..., C-1}``: every class present at least once.
    Why not ``max(label) + 1`` as before: a stray label 999 among 0..8 silently built a
    1000-class model, and a typo'd label 10 among 10 classes an 11-class one; requiring
    the labels to be contiguous (or C stated) turns both into an error. A dataset whose
    train split truly lacks a class states ``num_classes`` (``numpy.savez(..., num_classes=10)``).
    With C read from the labels, test.npz must hold exactly the same label set (a label 10
    only in train is then caught too). Test labels are also checked afterwards
    (:func:`_check_pair`, as for built-ins): in 0..C-1 and all seen in train.
    """
    stated = {what: s.num_classes for s, what in ((train, "train.npz"), (test, "test.npz"))
              if s.num_classes is not None}
    if len(set(stated.values())) > 1:
        raise UserError(f"{name}: num_classes differs between train.npz ({stated['train.npz']}) "
                        f"and test.npz ({stated['test.npz']}) in {folder}; make them equal")
    if stated:
        return next(iter(stated.values()))
    present = np.unique(train.y)
    c = int(present.size)
    if int(present[-1]) != c - 1:  # labels are >= 0 (checked on read), so they are not 0..c-1
        missing = np.setdiff1d(np.arange(int(present[-1]) + 1), present)
        raise UserError(f"{name}: train labels in {folder} are not 0..C-1: {c} distinct labels up "
                        f"to {int(present[-1])}, missing {_few(missing)}; relabel them 0..{c - 1}, "
                        f"or store num_classes in train.npz if those classes truly have no examples")
    only_train = np.setdiff1d(present, np.unique(test.y))
    if only_train.size:  # inferred C: the two splits must name the same classes
        raise UserError(f"{name}: train and test labels disagree in {folder}: train label(s) "
                        f"{_few(only_train)} never occur in test.npz; fix the labels, or store "
                        f"num_classes in both files if the test split truly lacks those classes")
    return c


def _write_cache(folder: Path, train: Split, test: Split) -> None:
    """Cache a torchvision load as npz; if the folder is not writable, just skip it."""
    try:
        write_npz_atomic(folder / "train.npz", train.x, train.y)
        write_npz_atomic(folder / "test.npz", test.x, test.y)
    except OSError as e:
        log.warning("could not write the npz cache in %s (%s); later runs will reload via torchvision", folder, e)


# ------------------------------------------------------------------------ torchvision
#: Readers of the built-ins' official files, by :attr:`Builtin.loader`: ``(entry, folder,
#: download) -> (train, test)`` through the ``torchvision.datasets`` class the entry names
#: (which checks the files' MD5 sums, and downloads them into ``folder`` if ``download``).
_LOADERS: dict[str, Callable[[Builtin, Path, bool], tuple[Split, Split]]] = {}


def _loader(name: str) -> Callable[[Callable], Callable]:
    """Register a loader under ``name`` (what a catalogue entry's ``loader`` says)."""
    def register(fn: Callable) -> Callable:
        _LOADERS[name] = fn
        return fn
    return register


@_loader("cifar")
def _load_cifar(entry: Builtin, folder: Path, download: bool) -> tuple[Split, Split]:
    """CIFAR-10/100: torchvision keeps ``data`` uint8 NHWC and ``targets`` a list."""
    from torchvision import datasets

    cls = getattr(datasets, entry.torchvision)
    train, test = (cls(str(folder), train=t, download=download) for t in (True, False))
    return _split(train.data, train.targets), _split(test.data, test.targets)


@_loader("svhn")
def _load_svhn(entry: Builtin, folder: Path, download: bool) -> tuple[Split, Split]:
    """SVHN: torchvision keeps ``data`` as (N, 3, H, W) and already maps label 10 -> digit 0."""
    from torchvision import datasets

    cls = getattr(datasets, entry.torchvision)
    train, test = (cls(str(folder), split=s, download=download) for s in ("train", "test"))
    return (_split(np.asarray(train.data).transpose(0, 2, 3, 1), train.labels),
            _split(np.asarray(test.data).transpose(0, 2, 3, 1), test.labels))


def _split(x: object, y: object) -> Split:
    return Split(x=np.ascontiguousarray(np.asarray(x), dtype=np.uint8),
                 y=np.ascontiguousarray(np.asarray(y, dtype=np.int64).reshape(-1)))


def _load_torchvision(entry: Builtin, root: Path, download: bool) -> tuple[Split, Split]:
    """Load a built-in's official files (torchvision's checksums included).

    torchvision is asked to download only when files are missing (or fail its checksum
    and downloads are allowed), so present files are verified once, not twice.
    """
    name, folder = entry.name, root / entry.name
    files = [folder / f for f in entry.layout]
    where = folder / entry.where
    load = _LOADERS[entry.loader]
    missing = [p for p in files if not p.is_file()]
    if missing and not download:
        detail = "" if len(missing) == len(files) else f" (missing {missing[0].name})"
        raise UserError(f"{name}: no data at {where}{detail}; {_fix_hint(entry)}")
    created = [p for p in (root, folder) if not p.exists()] if download else []
    try:
        if missing:
            _ensure_writable(name, folder)
        with _download_lock(folder) if download else contextlib.nullcontext():
            # Under the lock, look again: another runner may have fetched the files meanwhile.
            missing = [p for p in files if not p.is_file()]
            try:
                return load(entry, folder, bool(missing))
            except RuntimeError as e:
                if missing:
                    raise UserError(f"{name}: download into {folder} failed ({e}); "
                                    f"{_DOWNLOAD_FAILED_HINT}") from e
                if not download:
                    raise UserError(f"{name}: files at {where} are corrupted or incomplete (torchvision "
                                    f"checksum failed); delete them and {_fix_hint(entry)}") from e
                return _download(entry, folder)
            except OSError as e:  # network errors (URLError is an OSError), disk full, ...
                raise UserError(f"{name}: download into {folder} failed ({e}); "
                                f"{_DOWNLOAD_FAILED_HINT}") from e
    except UserError:
        _remove_if_left_empty(created)
        raise


def _remove_if_left_empty(created: list[Path]) -> None:
    """Remove folders a failed download created, if nothing but its lock file is in them.

    Why: an offline first run must not leave empty ``data/<name>`` folders behind that look
    like a dataset is there. Only folders this call created are touched, deepest first,
    and only when empty apart from ``.download.lock``; anything else (a partial archive)
    stays for the user to see.
    """
    for folder in sorted(created, key=lambda p: len(p.parts), reverse=True):
        try:
            entries = {p.name for p in folder.iterdir()}
            if entries <= {".download.lock"}:
                if entries:
                    (folder / ".download.lock").unlink()
                folder.rmdir()
        except OSError:
            pass


def _write_if_synthetic(name: str, root: Path) -> None:
    """Write a missing smoke dataset (``synthetic-*``, see :mod:`benchmarks.synthetic`).

    They are generated locally from a fixed seed (no network), so a smoke run works on a
    fresh, offline machine with no preparation step.
    """
    if name in SMOKE_DATASETS:
        try:
            write_smoke_dataset(name, root)
        except OSError as e:
            raise UserError(f"{name}: cannot write the synthetic smoke dataset under {root} "
                            f"({e.strerror or e}); choose a writable --data-root") from e


@contextlib.contextmanager
def _download_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.download.lock`` (flock) while torchvision checks or fetches files.

    Why: two runners (or ``--jobs`` workers, or SLURM tasks) reaching a dataset for the
    first time would otherwise download and extract into the same folder at once, and one
    could read the other's half-written archive, fail its checksum and start again over
    it. With the lock the second waits, then finds the files complete. A folder we cannot
    write to cannot be downloaded into either, so no lock is taken there (read-only copies
    of the data keep working).
    """
    with contextlib.ExitStack() as stack:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stack.enter_context(io.flocked(folder / ".download.lock", wait=True))
        except OSError:
            pass  # read-only: nothing can be downloaded here, so nothing to serialise
        yield


def _download(entry: Builtin, folder: Path) -> tuple[Split, Split]:
    _ensure_writable(entry.name, folder)
    try:
        return _LOADERS[entry.loader](entry, folder, True)
    except (RuntimeError, OSError) as e:
        raise UserError(f"{entry.name}: re-download into {folder} failed ({e}); "
                        f"{_DOWNLOAD_FAILED_HINT}") from e


def _ensure_writable(name: str, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{name}: cannot create {folder} to download into ({e.strerror or e}); "
                        f"choose a writable --data-root") from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{name}: {folder} is not writable, so the dataset cannot be downloaded there; "
                        f"choose a writable --data-root")


# ------------------------------------------------------------------------ device side
class DeviceData:
    """The whole split as uint8 where the device reads it; normalisation + augmentation
    vectorised on the device.

    Images are stored NHWC uint8 (4x smaller than float, and 4x less to read per batch), on
    the device or, with ``placement="host"``, in page-locked host memory that the device's
    kernels read in place (:mod:`benchmarks.placement`; same bytes, same results).
    :meth:`augment` gathers the batch's images, then each example's own random crop (zero
    padding ``crop_padding``, like torchvision ``RandomCrop(32, padding=4)`` on uint8
    images) and horizontal flip in one advanced-indexing op, then normalises. The gathered
    (b, H, W, 3) tensor viewed as (b, 3, H, W) is already in channels_last layout, so
    ``channels_last=True`` costs no copy.
    """

    def __init__(self, train: Split, test: Split, info: DatasetInfo, device: torch.device,
                 crop_padding: int = 4, flip: Optional[bool] = None, channels_last: bool = False,
                 val: Optional[Split] = None, placement: str = "device") -> None:
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        self.info = info
        self.device = torch.device(device)
        self.crop_padding = int(crop_padding)
        self.flip = info.flip if flip is None else bool(flip)
        self.channels_last = bool(channels_last)
        self.n_train = len(train)
        self.n_test = len(test)
        self.num_classes = info.num_classes
        # Images where the placement says (device, or page-locked host memory the device
        # reads in place); labels always on the device (8 bytes an example).
        self.train_x = Images(train.x, self.device, placement)    # (N, H, W, 3) uint8
        self.test_x = Images(test.x, self.device, placement)
        self.y_train = torch.tensor(train.y, dtype=torch.int64, device=self.device)
        self.y_test = torch.tensor(test.y, dtype=torch.int64, device=self.device)
        self.n_val = 0 if val is None else len(val)
        self.val_x: Optional[Images] = None
        if val is not None:  # held-out training examples, evaluated like the test split
            self.val_x = Images(val.x, self.device, placement)
            self.y_val = torch.tensor(val.y, dtype=torch.int64, device=self.device)
        self.height, self.width = int(train.x.shape[1]), int(train.x.shape[2])
        self._mean = torch.tensor(info.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(info.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._rows = torch.arange(self.height, device=self.device)
        self._cols = torch.arange(self.width, device=self.device)

    @property
    def placement(self) -> str:
        """``"device"`` or ``"host"`` (:mod:`benchmarks.placement`)."""
        return self.train_x.where

    @property
    def x_train(self) -> Tensor:
        """The training images as device kernels read them (see :class:`Images`)."""
        return self.train_x.tensor

    @property
    def x_test(self) -> Tensor:
        return self.test_x.tensor

    @property
    def x_val(self) -> Tensor:
        if self.val_x is None:
            raise AttributeError("no validation split")
        return self.val_x.tensor

    # -- helpers
    def normalize(self, x_uint8_nchw: Tensor) -> Tensor:
        """``(x / 255 - mean) / std`` as float32, per channel; keeps ``x``'s memory layout."""
        return x_uint8_nchw.float().div_(255.0).sub_(self._mean).div_(self._std)

    def _finish(self, x_nhwc: Tensor) -> Tensor:
        out = self.normalize(x_nhwc.permute(0, 3, 1, 2))
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return out.contiguous(memory_format=fmt)

    # -- API
    def augment(self, idx: Tensor, generator: torch.Generator) -> Tensor:
        """Normalised float32 (b, 3, H, W) random crops (+ flips) of training examples ``idx``.

        Per example: offsets ``dy, dx`` uniform in ``[-p, p]`` (p = crop_padding), i.e. the
        crop window of the zero-padded image; then, if ``flip``, a horizontal flip with
        probability 1/2. Draw order from ``generator``: dy (b), dx (b), flip (b) -- fixed,
        so equal generator states give equal batches. No host sync, no Python loop.
        """
        b = idx.shape[0]
        p = self.crop_padding
        dev = self.device
        dy = torch.randint(-p, p + 1, (b,), generator=generator, device=dev)
        dx = torch.randint(-p, p + 1, (b,), generator=generator, device=dev)
        rows = dy[:, None] + self._rows[None, :]                # (b, H) source row of each output row
        cols = dx[:, None] + self._cols[None, :]                # (b, W)
        if self.flip:
            flips = torch.randint(0, 2, (b,), generator=generator, device=dev).bool()
            cols = torch.where(flips[:, None], cols.flip(1), cols)
        row_ok = (rows >= 0) & (rows < self.height)
        col_ok = (cols >= 0) & (cols < self.width)
        rows = rows.clamp(0, self.height - 1)
        cols = cols.clamp(0, self.width - 1)
        # The b images first (whole rows: the only read of the split, from the device or
        # through PCIe when host-resident), then each one's crop window from them.
        src = self.train_x.rows(idx.to(dev))                                 # (b, H, W, 3)
        own = torch.arange(b, device=dev)
        x = src[own[:, None, None], rows[:, :, None], cols[:, None, :]]       # (b, H, W, 3)
        x = x * (row_ok[:, :, None] & col_ok[:, None, :]).unsqueeze(-1).to(torch.uint8)  # zero padding
        return self._finish(x)

    def plain(self, idx: Tensor) -> Tensor:
        """Normalised, un-augmented training inputs of ``idx`` (no crop, no flip)."""
        return self._finish(self.train_x.rows(idx.to(self.device)))

    def train_images(self, chunk: int = 8192) -> Tensor:
        """Normalised, un-augmented training set, float32 (N, 3, H, W) on the device.

        Filled in chunks so the only full-size allocation is the result itself.
        """
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        out = torch.empty((self.n_train, 3, self.height, self.width), dtype=torch.float32,
                          device=self.device, memory_format=fmt)
        for s, x in self.train_image_chunks(chunk):
            out[s:s + x.shape[0]] = x
        return out

    def train_image_chunks(self, chunk: int = 8192) -> Iterator[tuple[int, Tensor]]:
        """``(start, normalised un-augmented images)`` over the training set in order,
        ``chunk`` at a time: what per-example features are built from without a full
        float copy of the set (4x the uint8 images) on the device."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for s, x in self.train_x.chunks(chunk):   # the run's layout: the same kernels after
            yield s, self.normalize(x.permute(0, 3, 1, 2)).contiguous(memory_format=fmt)

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Normalised test inputs (no augmentation) and labels, in order, ``batch_size`` at a time."""
        yield from self._eval_batches(self.test_x, self.y_test, batch_size)

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Like :meth:`test_batches`, for the validation split (none: yields nothing)."""
        if self.val_x is not None and self.n_val:
            yield from self._eval_batches(self.val_x, self.y_val, batch_size)

    def _eval_batches(self, x: Images, y: Tensor, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for s, xs in x.chunks(batch_size):
            yield self._finish(xs), y[s:s + batch_size]
