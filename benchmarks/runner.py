"""Runs the RunSpecs of a matrix: skip done, resume partial, one lock per run, isolate failures.

Policy (what a re-invocation does with each run folder):
- ``done`` or ``diverged``: finished; skipped (a diverged run would diverge again: it is a
  result, recorded in run.json, and the plots report it).
- ``running`` with its lock held: another runner (local or a SLURM task) is training it;
  skipped by this runner.
- anything else (no folder, ``failed``, ``running`` without a lock = killed): trained,
  resuming from its last epoch checkpoint.

Each run is locked twice, both with ``fcntl.flock`` (the kernel releases a flock when its
holder dies, even by SIGKILL, so a crash never leaves a stale lock):

- on the run folder itself (``results/<matrix>/<run_id>/``, opened read-only): it cannot
  be deleted out from under the holder without the run's files, so removing ``.lock`` (a
  user, a clean-up script) never lets a second runner in. On NFS a directory flock only
  excludes processes of the same machine (the client has no directory lock operation), hence:
- on ``results/<matrix>/<run_id>/.lock``, which network filesystems do lock across
  machines (NFSv4; Lustre mounted with ``flock``). The holder writes ``pid N on host H``
  into it, and a second runner reports it.

A run whose files do not add up is never marked done (``RunFiles.check_complete``), so
even a double training that got past both locks ends ``failed``, not silently wrong.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import multiprocessing as mp
import os
import socket
import sys
import threading
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from . import io
from .comparisons import RECORDED
from .config import RunSpec
from .errors import RunFolderError, UserError

FINISHED = ("done", "diverged")


@dataclass(frozen=True)
class RunOptions:
    """Where data and results live, and what to train on (picklable: goes to workers/SLURM)."""

    results: str = "results"
    data_root: str = "data"
    download: bool = True
    device: str = "auto"
    progress: bool = False
    #: print one line per epoch (benchmarks/progress.py) from the process that trains the
    #: run; set for SLURM tasks, whose stdout is their log (local workers send rows back).
    log_epochs: bool = False
    #: logger sinks (``--log tensorboard``/``wandb``, benchmarks/sinks.py); not in the RunSpec
    log: tuple[str, ...] = ()
    #: ``--data-placement`` (benchmarks/placement.py): where the images live; not in the
    #: RunSpec, because it changes no number
    data_placement: str = "auto"


@dataclass(frozen=True)
class Outcome:
    run_id: str
    status: str           # done | diverged | failed | skipped-locked | skipped-finished
    error: Optional[str] = None
    seconds: float = 0.0


def run_dir(opts: RunOptions, spec: RunSpec) -> Path:
    return Path(opts.results) / spec["matrix"] / spec.run_id


def record_matrix(source: Path, folder: Path) -> Optional[str]:
    """Keep the matrix file that runs are started from in their folder: ``folder/matrix.yaml``.

    Why: the plots read a matrix's ``reference``/``comparisons`` keys from the matrix file.
    They used to look only in ``benchmarks/matrices/<name>.yaml``, so a matrix run from any
    other path had them silently ignored. The exact text is kept (comments included),
    written atomically. If a different file was recorded under this matrix name before,
    it is kept beside the new one as ``matrix.<sha256 prefix>.yaml`` (runs of both may be
    in the folder), ``matrix.yaml`` becomes the new one, and the returned line says so;
    otherwise None.
    """
    text = Path(source).read_bytes()
    target = Path(folder) / RECORDED
    try:
        old = target.read_bytes()
    except FileNotFoundError:
        old = None
    if old == text:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    note = None
    if old is not None:
        kept = target.with_name(f"{target.stem}.{hashlib.sha256(old).hexdigest()[:8]}{target.suffix}")
        io.atomic_write(kept, lambda f: f.write(old), mode="wb")  # before matrix.yaml changes
        note = (f"{target} held another version of this matrix, now kept as {kept.name}; "
                f"it holds {source} from now on (the plots read their reference from it)")
    io.atomic_write(target, lambda f: f.write(text), mode="wb")
    return note


def read_status(folder: Path) -> str:
    """``pending`` if never started, else the status in run.json."""
    path = folder / "run.json"
    if not path.exists():
        return "pending"
    try:
        info = io.read_json(path)
    except (ValueError, OSError):
        return "pending"
    if not isinstance(info, dict):  # valid JSON but not a run record: as unreadable
        return "pending"
    return str(info.get("status", "pending"))


LOCK_FILE = ".lock"


@contextmanager
def hold_run(folder: Path) -> Iterator[Optional[str]]:
    """Lock the run folder ``folder``: yield None if this process now holds it, else who does.

    The folder is created if needed. Both locks of the module docstring are taken, without
    waiting; either one held elsewhere means the run is taken. If, when the lock is let go,
    the folder holds nothing but the lock file (the run never started, e.g. its data was
    missing), both are removed again, so trying a run leaves no empty folder behind. A
    runner that opened the folder or lock file just before such a removal notices (the
    path no longer names what it locked) and starts over, so two runners can never hold
    "the" lock of one run at once.
    """
    folder = Path(folder)
    lock = folder / LOCK_FILE
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as close:
            dir_fd = _open(folder, os.O_RDONLY | os.O_DIRECTORY, close)
            if dir_fd is None:  # the folder was removed after our mkdir
                continue
            if not _try_flock(dir_fd):
                yield _holder(lock)
                return
            fd = _open(lock, os.O_RDWR | os.O_CREAT, close)
            if fd is None:
                continue
            if not _try_flock(fd):
                yield _holder(lock)
                return
            if not (io.same_file(dir_fd, folder) and io.same_file(fd, lock)):
                continue  # removed (and maybe recreated) after we opened it: try again
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
            try:
                yield None
            finally:
                with contextlib.suppress(OSError):  # e.g. the folder was moved away meanwhile
                    if {p.name for p in folder.iterdir()} <= {LOCK_FILE}:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(lock)
                        folder.rmdir()
            return


def _open(path: Path, flags: int, close: contextlib.ExitStack) -> Optional[int]:
    """``os.open`` closed with ``close``; None if ``path`` (or its folder) is gone."""
    try:
        fd = os.open(path, flags, 0o666)  # a new lock file: 0o666 less the umask
    except FileNotFoundError:
        return None
    close.callback(os.close, fd)
    return fd


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(lock: Path) -> str:
    """Who holds a run's lock, as its lock file says (``pid N on host H``), if it still can."""
    try:
        return lock.read_text(errors="replace").strip()[:200] or "another process"
    except OSError:  # someone removed the lock file; the folder lock still holds
        return "another process (its .lock file was removed)"


@contextmanager
def run_lock(opts: RunOptions, spec: RunSpec) -> Iterator[bool]:
    """Yield True if this process now holds the run's lock, False if someone else does."""
    with hold_run(run_dir(opts, spec)) as holder:
        yield holder is None


def execute(spec: RunSpec, opts: RunOptions, device: str | None = None,
            on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> Outcome:
    """Train one run under its lock unless finished; never raises for a failing run."""
    import time

    from .train import train_one

    folder = run_dir(opts, spec)
    if read_status(folder) in FINISHED:
        return Outcome(spec.run_id, "skipped-finished")
    t0 = time.perf_counter()
    with hold_run(folder) as holder:
        if holder is not None:
            return Outcome(spec.run_id, "skipped-locked", f"being trained by {holder}")
        if read_status(folder) in FINISHED:  # finished while we waited for the lock
            return Outcome(spec.run_id, "skipped-finished")
        try:
            result = train_one(spec, folder, data_root=Path(opts.data_root), download=opts.download,
                               device=device or opts.device, progress=opts.progress, on_epoch=on_epoch,
                               log=tuple(opts.log), data_placement=opts.data_placement)
        except KeyboardInterrupt:
            raise
        except (UserError, RunFolderError) as e:  # one line: what is wrong, how to fix it
            return Outcome(spec.run_id, "failed", str(e), time.perf_counter() - t0)
        except Exception as e:  # the matrix goes on; run.json already says failed
            tb = traceback.format_exc(limit=3)
            return Outcome(spec.run_id, "failed", f"{type(e).__name__}: {e}\n{tb}",
                           time.perf_counter() - t0)
        return Outcome(spec.run_id, result.status, result.error, time.perf_counter() - t0)


def execute_dict(spec_dict: dict[str, Any], opts_dict: dict[str, Any]) -> dict[str, Any]:
    """Picklable entry point for worker processes and SLURM tasks."""
    spec = RunSpec.from_dict(spec_dict)
    opts = RunOptions(**opts_dict)
    on_epoch = None
    if _EPOCH_QUEUE is not None:   # a local pool worker: the parent prints (matrix-wide ETA)
        from .progress import slim_row

        queue = _EPOCH_QUEUE

        def on_epoch(epoch: int, row: dict[str, Any]) -> None:
            queue.put((spec.run_id, epoch, slim_row(row)))
    elif opts.log_epochs:          # e.g. a SLURM task: its own lines into its log
        from .progress import EpochLog

        log = EpochLog.for_specs([spec])

        def on_epoch(epoch: int, row: dict[str, Any]) -> None:
            log(spec.run_id, epoch, row)
    return asdict(execute(spec, opts, device=_worker_device(), on_epoch=on_epoch))


# --- local pool -----------------------------------------------------------------------------
_WORKER_DEVICE: str | None = None
_EPOCH_QUEUE: Any = None   # set in pool workers when the parent wants per-epoch rows


def _init_worker(counter: Any, devices: list[str], threads: int, epoch_queue: Any = None) -> None:
    """Pin each worker process to one device, round-robin over the visible GPUs.

    Also give each worker its share of the CPU cores: every process would otherwise start
    one intra-op thread per core, and K such processes on the same cores spin against each
    other (measured here: two 2-thread PyTorch processes on 2 cores ran over 10x slower
    than either alone).
    """
    import torch

    global _WORKER_DEVICE, _EPOCH_QUEUE
    _EPOCH_QUEUE = epoch_queue
    with counter.get_lock():
        slot = counter.value
        counter.value += 1
    _WORKER_DEVICE = devices[slot % len(devices)] if devices else None
    torch.set_num_threads(threads)


def _worker_device() -> str | None:
    return _WORKER_DEVICE


def visible_devices(device: str) -> list[str]:
    """The devices ``--jobs`` spreads over: every visible GPU for cuda/auto, else cpu."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [device if device != "auto" else "cpu"]


def run_local(specs: list[RunSpec], opts: RunOptions, jobs: int = 1,
              on_done: Callable[[Outcome], None] | None = None,
              on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
              on_run_epoch: Callable[[str, int, dict[str, Any]], None] | None = None) -> list[Outcome]:
    """Train ``specs`` with ``jobs`` processes (in this process when jobs == 1).

    ``on_run_epoch(run_id, epoch, row)`` is called in *this* process for every run's start
    and every finished epoch, whatever ``jobs`` is: pool workers send the rows back through
    a queue that a thread here drains (so one place prints, with the matrix-wide view).
    """
    outcomes: list[Outcome] = []
    if jobs <= 1:
        for spec in specs:
            hook = on_epoch
            if on_run_epoch is not None:
                def hook(epoch: int, row: dict[str, Any], _id: str = spec.run_id) -> None:
                    if on_epoch is not None:
                        on_epoch(epoch, row)
                    on_run_epoch(_id, epoch, row)
            out = execute(spec, opts, on_epoch=hook)
            outcomes.append(out)
            if on_done:
                on_done(out)
        return outcomes
    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    counter = ctx.Value("i", 0)
    devices = visible_devices(opts.device)
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)
    opts_dict = asdict(opts)
    queue = ctx.Queue() if on_run_epoch is not None else None
    drain = None
    if queue is not None:
        def _drain() -> None:
            for item in iter(queue.get, None):
                on_run_epoch(*item)
        drain = threading.Thread(target=_drain, name="epoch-rows", daemon=True)
        drain.start()
    try:
        _pool(specs, opts_dict, jobs, ctx, counter, devices, threads, queue, outcomes, on_done)
    finally:
        if queue is not None:
            queue.put(None)   # after every worker exited: all their rows are queued before it
            drain.join()
    return outcomes


def _pool(specs: list[RunSpec], opts_dict: dict[str, Any], jobs: int, ctx: Any, counter: Any,
          devices: list[str], threads: int, queue: Any, outcomes: list[Outcome],
          on_done: Callable[[Outcome], None] | None) -> None:
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(counter, devices, threads, queue)) as pool:
        futures = {pool.submit(execute_dict, s.to_dict(), opts_dict): s for s in specs}
        for fut in as_completed(futures):
            spec = futures[fut]
            try:
                out = Outcome(**fut.result())
            except Exception as e:  # a worker died (e.g. OOM-killed): record, go on
                out = Outcome(spec.run_id, "failed", f"worker died: {type(e).__name__}: {e}")
            outcomes.append(out)
            if on_done:
                on_done(out)


def shard(specs: list[RunSpec], spec_str: str | None) -> list[RunSpec]:
    """``"i/n"`` (0-based i): every n-th run starting at i; the n shards partition the runs."""
    if not spec_str:
        return specs
    try:  # a real check, not an assert: ``python -O`` strips asserts
        i_str, n_str = spec_str.split("/")
        i, n = int(i_str), int(n_str)
        if not (n >= 1 and 0 <= i < n):
            raise ValueError
    except ValueError:
        raise UserError(f"--shard {spec_str!r}: expected i/n with 0 <= i < n, e.g. --shard 0/4") from None
    return specs[i::n]


def is_tty() -> bool:
    return sys.stderr.isatty()
