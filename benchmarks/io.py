"""Crash-safe file writing: a run's data is never half-written.

Every file is written to a temporary sibling, fsynced and renamed into place, so a
SIGKILL at any instant leaves either the old or the new version. The one exception is
``iterations.csv``, which grows by appending one epoch of rows at a time; the checkpoint
records its byte length and resume cuts it back to exactly that length.
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml


def atomic_write(path: Path, writer: Callable[[Any], None], mode: str = "w") -> None:
    """Call ``writer(fileobj)`` on a temp file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


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
    """Cut ``path`` back to ``size`` bytes (drops rows written after the last checkpoint)."""
    with open(path, "r+b") as f:
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())


def check_writable(folder: Path) -> str | None:
    """None if ``folder`` can be created and written, else a one-line reason."""
    folder = Path(folder)
    probe_dir = folder
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        return f"{probe_dir} is not a folder"
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        return f"{probe_dir} is not writable"
    return None


@contextmanager
def flocked(path: Path, wait: bool) -> Iterator[int | None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed); yield its descriptor.

    ``wait=False`` yields None at once when another process holds the lock. The kernel
    releases a flock when its holder dies, so a SIGKILLed process never leaves a stale
    lock behind. Used for per-run locks and for first dataset downloads.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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
