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
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: 0o666 less the umask.

    ``tempfile.mkstemp`` creates 0600 files, which would make results, figures and the
    dataset cache unreadable to the rest of a group on a shared cluster. The umask is read
    from /proc (Linux) because the portable way, ``os.umask``, briefly changes it for
    every thread of the process.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


#: mkstemp's random part: 8 characters of this alphabet (CPython's tempfile).
_TEMP_RANDOM = r"[a-z0-9_]{8}"


def remove_stale_temps(path: Path, prefix: str | None = None, suffix: str = ".tmp") -> list[Path]:
    """Delete temporary siblings of ``path`` left by interrupted atomic writes; return them.

    A temp file matches ``<prefix><8 random chars><suffix>`` (default prefix
    ``.<name>.``). One that a live writer still holds is kept: every writer holds an
    exclusive ``flock`` on its temp file until it is renamed into place, so a temp we can
    lock is one whose writer died (a SIGKILL releases the lock). Safe with two runners
    writing the same folder.
    """
    path = Path(path)
    prefix = f".{path.name}." if prefix is None else prefix
    pattern = re.compile(re.escape(prefix) + _TEMP_RANDOM + re.escape(suffix) + r"\Z")
    removed: list[Path] = []
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return removed
    for name in names:
        if not pattern.match(name):
            continue
        stale = path.parent / name
        try:
            fd = os.open(stale, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:  # gone already, or not ours to touch
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer holds it
            try:
                if same_file(fd, stale):
                    os.unlink(stale)
                    removed.append(stale)
            except FileNotFoundError:
                pass
        finally:
            os.close(fd)
    return removed


def same_file(fd: int, path: Path | str) -> bool:
    """True if ``path`` still names the file open as ``fd`` (not unlinked or replaced)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


@contextmanager
def temp_sibling(path: Path, prefix: str | None = None, suffix: str = ".tmp") -> Iterator[tuple[int, Path]]:
    """Yield ``(fd, tmp)``: a new temp file next to ``path``, locked and with the umask's mode.

    Stale temps of ``path`` (see :func:`remove_stale_temps`) are removed first. The temp
    stays flocked while the caller writes it, so a concurrent cleaner never deletes it;
    if a cleaner removed it between creation and locking, a new one is made. The caller
    renames it into place (or not) before the block ends; a temp that is still there at
    the end (an exception) is deleted.
    """
    path = Path(path)
    prefix = f".{path.name}." if prefix is None else prefix
    remove_stale_temps(path, prefix, suffix)
    while True:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if same_file(fd, Path(name)):
            break
        os.close(fd)  # a cleaner took it before we locked it: make another
    tmp = Path(name)
    try:
        os.fchmod(fd, file_mode())
        yield fd, tmp
    finally:
        try:
            if same_file(fd, tmp):
                os.unlink(tmp)
        finally:
            os.close(fd)


def atomic_write(path: Path, writer: Callable[[Any], None], mode: str = "w") -> None:
    """Call ``writer(fileobj)`` on a temp file next to ``path``, then rename it over ``path``.

    The new file gets the umask's mode (as ``open`` would), and temps of earlier writes of
    ``path`` that were interrupted (SIGKILL, full disk) are removed.
    """
    path = Path(path)
    with temp_sibling(path) as (fd, tmp):
        f = os.fdopen(os.dup(fd), mode)  # the dup keeps ``fd`` (and its lock) open
        try:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        os.replace(tmp, path)


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
