"""The runner's file I/O: crash-safe writes, appends cut back on resume, and flock locks.

Every file is written to a temporary sibling, fsynced and renamed into place, so a
SIGKILL at any instant leaves either the old or the new version (the portable part,
:mod:`benchmarks.files`, shared with ``plots``, is re-exported here). The one exception is
``iterations.csv``, which grows by appending one epoch of rows at a time; the checkpoint
records its byte length and resume cuts it back to exactly that length.

``fcntl`` is imported at the top: the runner's locks need ``flock`` (POSIX, and the
clusters the runner targets). ``plots`` never imports this module, so it still runs where
there is no ``fcntl``.
"""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from .files import (atomic_write, check_writable, file_mode, remove_stale_temps,  # noqa: F401
                    same_file, temp_sibling)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_yaml(path: Path, obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def append_lines(path: Path, lines: list[str]) -> int:
    """Append ``lines`` durably; return the file's new byte length."""
    with open(path, "a") as f:
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def truncate(path: Path, size: int) -> None:
    """Cut ``path`` back to ``size`` bytes (drops rows written after the last checkpoint).

    Never extends: ``truncate`` past the end would pad the file with NUL bytes, turning a
    file that lost data into one that looks complete.
    """
    with open(path, "r+b") as f:
        have = os.fstat(f.fileno()).st_size
        if have < size:
            raise ValueError(f"{path}: {have} bytes, cannot cut back to {size} (it is shorter)")
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def flocked(path: Path, wait: bool) -> Iterator[int | None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed); yield its descriptor.

    ``wait=False`` yields None at once when another process holds the lock. The kernel
    releases a flock when its holder dies, so a SIGKILLed process never leaves a stale
    lock behind. Used for per-run locks and for first dataset downloads.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # less the umask, like any file
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
