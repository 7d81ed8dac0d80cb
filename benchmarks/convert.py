"""Convert built-ins torchvision does not read into the suite's uint8 cache, once, resumably.

    python -m benchmarks prepare tinyimagenet|imagenet32|imagenet64 [--data-root DIR]

reads the official files the user put under ``DATA_ROOT/<name>/`` and writes
``DATA_ROOT/<name>/{train,test}.npz`` (x uint8 NHWC, y int64: the format every dataset of
the suite is loaded from, :mod:`benchmarks.data`). The official files are:

* ``tinyimagenet``: ``tiny-imagenet-200/`` as unpacked from the official zip: ``wnids.txt``
  (the 200 WordNet ids), ``train/<wnid>/images/*.JPEG`` (500 per class) and
  ``val/images/*.JPEG`` with ``val/val_annotations.txt`` (file, wnid, box per line); all
  64x64 JPEGs, a few of them greyscale (made RGB by repeating the channel, PIL's
  ``convert("RGB")``). The labelled ``val`` split becomes the test split (``test/`` has no
  labels). Labels are the wnids' ranks in sorted order and training images are taken
  class by class in sorted file-name order: the classes and order of
  ``torchvision.datasets.ImageFolder`` on ``train/``. Test images keep the order of
  ``val_annotations.txt``.
* ``imagenet32`` / ``imagenet64``: the downsampled ImageNet of Chrabaszcz, Loshchilov &
  Hutter (2017), ``train_data_batch_1`` .. ``train_data_batch_10`` and ``val_data``,
  found anywhere under the folder (their zips unpack into ``Imagenet32_train_npz/`` and
  the like). image-net.org distributes them as numpy ``.npz`` files (keys ``data``,
  ``labels``, ``mean``); the older release of the same batches is Python pickles without
  an extension holding the same dict; both are read. ``data`` is (N, 3*S*S) uint8, each
  row the red, then green, then blue plane of one SxS image, row-major (the layout their
  generator writes, PatrykChrabaszcz/Imagenet32_Scripts ``image2numpy_imagenet_train.py``,
  ``process_folder``); ``labels`` are 1..1000 and become 0..999. ``mean`` is not used
  (the suite computes its own normalisation, :mod:`benchmarks.data`). A pickle can run
  code when read: read only files from image-net.org (torchvision reads CIFAR's pickles
  the same way).

Why resumable: ImageNet64 is ~16 GB of batches and Tiny-ImageNet 110,000 JPEGs, minutes of
work that a killed job should not redo. Each source file (one ImageNet batch, one
Tiny-ImageNet class, the validation set) becomes one *part*,
``DATA_ROOT/<name>/.prepare/<split>-<key>.npz``, written atomically, stamped with the
names and sizes of the files it came from; a rerun keeps every part whose stamp still
matches and converts the rest. The parts are then streamed, one at a time, into
``train.npz`` and ``test.npz`` (each written atomically, so memory holds one part, not the
dataset) and the part folder is removed. A lock makes a second ``prepare`` of the same
dataset wait for the first, then find it done.
"""
from __future__ import annotations

import contextlib
import hashlib
import pickle
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from . import io
from .catalogue import BUILTINS, Builtin
from .errors import UserError
from .splits import Split

#: Subfolder of ``DATA_ROOT/<name>/`` that holds the converted parts until the merge.
WORK = ".prepare"


@dataclass(frozen=True)
class Part:
    """One source file (or folder) of a dataset and how to read it as a :class:`Split`."""

    split: str                       # "train" or "test"
    key: str                         # file-name-safe, sorts in the order of the split
    sources: tuple[Path, ...]        # what it is read from (its stamp)
    read: Callable[[], Split]

    @property
    def file(self) -> str:
        return f"{self.split}-{self.key}.npz"

    def stamp(self) -> str:
        """Names and sizes of the source files: a rerun redoes a part whose sources changed."""
        h = hashlib.sha256()
        for p in self.sources:
            h.update(f"{p.name}\0{p.stat().st_size}\0".encode())
        return h.hexdigest()[:16]


#: Readers by :attr:`Builtin.loader`: ``(entry, folder) -> parts`` (every source checked
#: present; a missing one is a UserError saying where to get it).
READERS: dict[str, Callable[[Builtin, Path], list[Part]]] = {}


def _reader(name: str) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        READERS[name] = fn
        return fn
    return register


def missing_message(entry: Builtin, folder: Path, what: str) -> str:
    """The one line for absent official files: what is missing, where to get it, where to put it."""
    return (f"{entry.name}: {what}; get {entry.get} into {folder}/ (docs/running.md, section \"Data and "
            f"devices\"), then run: python -m benchmarks prepare {entry.name} --data-root "
            f"{folder.parent}")


def not_converted_message(entry: Builtin, root: Path) -> str:
    """Why a run cannot load ``entry`` yet: its files are missing (where to get them), or
    they are there but ``prepare`` has not converted them (the command to run)."""
    folder = Path(root) / entry.name
    try:
        READERS[entry.loader](entry, folder)
    except UserError as e:
        return str(e)
    return (f"{entry.name}: the official files in {folder} are not converted yet; run once: "
            f"python -m benchmarks prepare {entry.name} --data-root {root}")


# ---------------------------------------------------------------------------- Tiny-ImageNet
@_reader("tinyimagenet")
def tinyimagenet_parts(entry: Builtin, folder: Path) -> list[Part]:
    """One part per class folder of ``train/`` (sorted wnids), and one for ``val``."""
    base = folder / "tiny-imagenet-200"
    need = [base / "wnids.txt", base / "train", base / "val" / "val_annotations.txt",
            base / "val" / "images"]
    absent = [p for p in need if not p.exists()]
    if absent:
        what = (f"no Tiny-ImageNet at {base}" if len(absent) == len(need)
                else f"{absent[0]} is missing")
        raise UserError(missing_message(entry, folder, what))
    wnids = sorted({w.strip() for w in (base / "wnids.txt").read_text().split() if w.strip()})
    if not wnids or len(wnids) > entry.classes:
        raise UserError(f"{entry.name}: {base / 'wnids.txt'} lists {len(wnids)} classes, expected "
                        f"1..{entry.classes} WordNet ids, one per line; unzip the official file again")
    label = {w: i for i, w in enumerate(wnids)}
    size = entry.image_size
    parts = []
    for w in wnids:
        images = base / "train" / w / "images"
        files = tuple(sorted(images.glob("*.JPEG"))) if images.is_dir() else ()
        if not files:
            raise UserError(missing_message(entry, folder, f"no {images}/*.JPEG for class {w} of wnids.txt"))
        parts.append(Part("train", f"{label[w]:04d}-{w}", files,
                          lambda files=files, y=label[w]: _jpegs(entry, files, [y] * len(files), size)))
    val_files, val_labels = [], []
    ann = base / "val" / "val_annotations.txt"
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2 or cols[1] not in label:
            raise UserError(f"{entry.name}: {ann} line {n}: expected 'FILE<TAB>WNID<TAB>...' with a "
                            f"wnid of wnids.txt, got {line.strip()[:80]!r}")
        val_files.append(base / "val" / "images" / cols[0])
        val_labels.append(label[cols[1]])
    if not val_files:
        raise UserError(missing_message(entry, folder, f"{ann} lists no images"))
    absent = [p for p in val_files if not p.is_file()]
    if absent:
        raise UserError(missing_message(entry, folder, f"{absent[0]} is missing"))
    parts.append(Part("test", "val", (ann, *val_files),
                      lambda: _jpegs(entry, tuple(val_files), val_labels, size)))
    return parts


def _jpegs(entry: Builtin, files: tuple[Path, ...], labels: list[int], size: int) -> Split:
    from PIL import Image, UnidentifiedImageError

    x = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(files):
        try:
            with Image.open(p) as im:
                if im.size != (size, size):
                    raise UserError(f"{entry.name}: {p} is {im.size[0]}x{im.size[1]}, expected "
                                    f"{size}x{size}; unzip the official file again")
                x[i] = np.asarray(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise UserError(f"{entry.name}: cannot read {p} as an image ({e}); unzip the official "
                            "file again") from e
    return Split(x, np.asarray(labels, dtype=np.int64))


# ---------------------------------------------------------------------- downsampled ImageNet
@_reader("downsampled_imagenet")
def downsampled_imagenet_parts(entry: Builtin, folder: Path) -> list[Part]:
    """One part per batch file: ``train_data_batch_1..10`` (train), ``val_data`` (test)."""
    names = [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]
    found: dict[str, list[Path]] = {n: [] for n in names}
    if folder.is_dir():
        for p in sorted(folder.rglob("*")):
            stem = p.name[:-4] if p.name.endswith(".npz") else p.name
            if stem in found and p.is_file() and WORK not in p.relative_to(folder).parts:
                found[stem].append(p)
    absent = [n for n in names if not found[n]]
    if absent:
        what = (f"no downsampled ImageNet batches under {folder}" if len(absent) == len(names)
                else f"{absent[0]}(.npz) is missing under {folder}")
        raise UserError(missing_message(entry, folder, what))
    twice = [n for n in names if len(found[n]) > 1]
    if twice:
        raise UserError(f"{entry.name}: {twice[0]} is there more than once ({', '.join(map(str, found[twice[0]]))}); "
                        "keep one copy of each batch under the folder")
    return [Part("test" if n == "val_data" else "train", "val" if n == "val_data" else f"{i + 1:02d}",
                 (found[n][0],), lambda p=found[n][0]: _batch(entry, p))
            for i, n in enumerate(names)]


def _batch(entry: Builtin, path: Path) -> Split:
    """One batch file (npz or the older pickle) as NHWC uint8 and 0-based labels."""
    try:
        if zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as z:
                d: Any = {k: z[k] for k in ("data", "labels") if k in z.files}
        else:
            with open(path, "rb") as f:
                d = pickle.load(f, encoding="latin1")
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise UserError(f"{entry.name}: cannot read {path} as a downsampled ImageNet batch (.npz or "
                        f"pickle): {type(e).__name__}: {e}; download it again") from e
    if not isinstance(d, dict) or "data" not in d or "labels" not in d:
        raise UserError(f"{entry.name}: {path} holds no 'data' and 'labels'; is it a downsampled "
                        "ImageNet batch?")
    data, labels = np.asarray(d["data"]), np.asarray(d["labels"]).reshape(-1)
    s = entry.image_size
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * s * s:
        side = int(round((data.shape[1] / 3) ** 0.5)) if data.ndim == 2 else 0
        other = f" (rows of {side}x{side} images: files of another resolution?)" if side and side != s else ""
        raise UserError(f"{entry.name}: {path}: data is {data.dtype} {data.shape}, expected uint8 "
                        f"(N, {3 * s * s}) for {s}x{s} images{other}")
    if labels.shape[0] != data.shape[0] or labels.dtype.kind not in "iu" \
            or labels.min() < 1 or labels.max() > entry.classes:
        raise UserError(f"{entry.name}: {path}: expected {data.shape[0]} integer labels in "
                        f"1..{entry.classes}, got {labels.shape[0]} in {labels.min()}..{labels.max()}")
    x = np.ascontiguousarray(data.reshape(-1, 3, s, s).transpose(0, 2, 3, 1))
    return Split(x, labels.astype(np.int64) - 1)


# ------------------------------------------------------------------------------- conversion
def convert(name: str, data_root: str | Path, force: bool = False,
            progress: Optional[bool] = None) -> Path:
    """Write ``data_root/<name>/{train,test}.npz`` from the official files (kept if present)."""
    entry = BUILTINS[name]
    folder = Path(data_root).expanduser() / name
    cache = (folder / "train.npz", folder / "test.npz")
    if not force and all(p.is_file() for p in cache):
        return folder
    parts = READERS[entry.loader](entry, folder)   # every source present, before any write
    work = folder / WORK
    with contextlib.ExitStack() as stack:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            stack.enter_context(io.flocked(folder / ".prepare.lock", wait=True))
            work.mkdir(exist_ok=True)
        except OSError as e:
            raise UserError(f"{name}: cannot write under {folder} ({e.strerror or e}); make it "
                            "writable or choose another --data-root") from e
        if not force and all(p.is_file() for p in cache):  # another prepare finished meanwhile
            return folder
        for _ in _progress(parts, work, f"prepare {name}", progress):
            pass
        for split, out in zip(("train", "test"), cache):
            _merge([work / p.file for p in parts if p.split == split], out)
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _progress(parts: list[Part], work: Path, desc: str, bar: Optional[bool]) -> Iterator[Part]:
    """Convert each part not already done, with a progress bar on a terminal, and at most
    20 plain lines in a log (``bar=None``: decide by whether stderr is a terminal)."""
    from tqdm import tqdm

    tty = sys.stderr.isatty() if bar is None else bar
    with tqdm(total=len(parts), desc=desc, unit="file", disable=not tty) as t:
        for i, part in enumerate(parts, 1):
            stamp = part.stamp()
            kept = _part_done(work / part.file, stamp)
            if not kept:
                split = part.read()
                io.atomic_write(work / part.file, lambda f: np.savez(
                    f, x=split.x, y=split.y, stamp=np.asarray(stamp)), mode="wb")
            t.update(1)
            if not tty and (i * 20 // len(parts) > (i - 1) * 20 // len(parts) or i == len(parts)):
                print(f"{desc}: {i}/{len(parts)} files converted"
                      + (" (earlier parts kept)" if kept else ""), flush=True)
            yield part


def _part_done(path: Path, stamp: str) -> bool:
    """Whether ``path`` is a complete part of the same sources (a renamed-in temp always is)."""
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "stamp" in z.files and str(z["stamp"]) == stamp and {"x", "y"} <= set(z.files)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return False


def _merge(part_files: list[Path], out: Path) -> None:
    """Concatenate parts into one ``{x, y}`` npz at ``out``, one part in memory at a time.

    Writes the npz by hand (a zip of two ``.npy`` members, as ``numpy.savez`` does, stored
    uncompressed and zip64 so that a 16 GB ``x`` is fine), so ``numpy.load`` reads it back
    like any cache file.
    """
    if not part_files:
        raise UserError(f"{out}: no converted parts to merge")
    n = 0
    for p in part_files:
        with np.load(p, allow_pickle=False) as z:
            n += z["y"].shape[0]
    with np.load(part_files[0], allow_pickle=False) as z:
        image = z["x"].shape[1:]

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, dtype, shape in (("x", np.uint8, (n, *image)), ("y", np.int64, (n,))):
                with zf.open(f"{key}.npy", "w", force_zip64=True) as m:
                    np.lib.format.write_array_header_1_0(m, {
                        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                        "fortran_order": False, "shape": shape})
                    for p in part_files:
                        with np.load(p, allow_pickle=False) as z:
                            a = np.ascontiguousarray(z[key], dtype=dtype)
                        if a.shape[1:] != shape[1:]:
                            raise UserError(f"{p}: images are {a.shape[1:]}, the first part's "
                                            f"{shape[1:]}; delete {p.parent} and prepare again")
                        m.write(a.data)

    io.atomic_write(out, write, mode="wb")
