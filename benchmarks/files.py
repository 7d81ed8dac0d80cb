"""Crash-safe, OS-portable file writing, shared by the runner and the plots.

Every file is written to a temporary sibling, fsynced and renamed over its target
(``os.replace``), so a reader, a second writer or a SIGKILL at any instant sees the old
version or the new one, never half of one. The next write of the same file removes temps
that interrupted writes left behind, but never one a live writer is still filling.

Why a module of its own, free of ``fcntl``: ``plots`` must run on a laptop, Windows
included, and ``fcntl`` exists only on POSIX. So ``plots`` imports this module (and nothing
else of ``benchmarks`` but the torch-free schemas it reads), and ``fcntl`` is used here only
where it exists. The runner's locks (run locks, dataset downloads) need ``flock`` and stay
in :mod:`benchmarks.io` and :mod:`benchmarks.runner`, which only the runner imports.

How a live writer's temp is told from a stale one: on POSIX the writer holds an exclusive
``flock`` on it until it is renamed into place, and the kernel drops that lock when the
writer dies, so a temp we can lock is one whose writer is gone. Without ``flock``
(Windows) an open file cannot be deleted, so the writer's open handle protects it while it
writes; the temp is closed before the rename (an open handle would block that too).
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

try:
    import fcntl
except ImportError:  # Windows: no flock; see the module docstring
    fcntl = None  # type: ignore[assignment]


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
    ``.<name>.``). One that a live writer still holds is kept (module docstring), so this is
    safe with two writers of the same folder.
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
        if fcntl is None:
            with contextlib.suppress(OSError):  # held open by its writer, or gone already
                os.unlink(stale)
                removed.append(stale)
            continue
        try:
            fd = os.open(stale, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:  # gone already, or not ours to touch
            continue
        try:
            if not _lock(fd, wait=False):
                continue  # a live writer holds it
            with contextlib.suppress(FileNotFoundError):
                if same_file(fd, stale):
                    os.unlink(stale)
                    removed.append(stale)
        finally:
            os.close(fd)
    return removed


def _lock(fd: int, wait: bool) -> bool:
    """Take an exclusive ``flock`` on ``fd``; False if another process holds one (and not ``wait``)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def same_file(fd: int, path: Path | str) -> bool:
    """True if ``path`` still names the file open as ``fd`` (not unlinked or replaced)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


@contextmanager
def temp_sibling(path: Path, prefix: str | None = None,
                 suffix: str = ".tmp") -> Iterator[tuple[Optional[int], Path]]:
    """Yield ``(fd, tmp)``: a new temp file next to ``path`` with the umask's mode.

    Stale temps of ``path`` (:func:`remove_stale_temps`) are removed first. On POSIX ``fd``
    is the temp's descriptor, flocked while the caller writes, so a concurrent cleaner
    never deletes it (if one removed it between creation and locking, a new one is made).
    Without ``flock`` ``fd`` is None and the temp is closed: write it by its path. The
    caller renames it into place (or not) before the block ends; a temp that is still there
    at the end (an exception) is deleted.
    """
    path = Path(path)
    prefix = f".{path.name}." if prefix is None else prefix
    remove_stale_temps(path, prefix, suffix)
    if fcntl is None:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            os.chmod(tmp, file_mode())
            yield None, tmp
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return
    while True:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
        _lock(fd, wait=True)
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
        # the dup keeps ``fd`` (and its lock) open after the file object is closed
        f = os.fdopen(os.dup(fd), mode) if fd is not None else open(tmp, mode)
        try:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        os.replace(tmp, path)


def check_writable(folder: Path) -> str | None:
    """None if ``folder`` can be created and written, else a one-line reason.

    Asks the nearest existing folder with ``os.access``, then really creates (and removes)
    a sub-folder in it: /proc and /sys pass ``os.access`` for root yet refuse every mkdir.
    """
    folder = Path(folder)
    probe_dir = folder
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        return f"{probe_dir} is not a folder"
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        return f"{probe_dir} is not writable"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=probe_dir))
    except OSError as e:
        return f"cannot create folders in {probe_dir} ({e.strerror})"
    return None
