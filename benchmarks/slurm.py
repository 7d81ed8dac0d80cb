"""SLURM array tasks that requeue themselves on a time limit or preemption, and resume.

How a run survives its job's end (submitit's checkpointing, ``submitit/core/job_environment.py``
``SignalHandler.checkpoint_and_try_requeue``): submitit asks SLURM for a warning signal
(``sbatch --signal=USR2@<delay>``) ``delay`` seconds before the time limit. When it
arrives, submitit calls ``checkpoint()`` of a ``Checkpointable`` callable, pickles what it
returns as the job's new task, runs ``scontrol requeue <job>`` and exits. SLURM restarts
the requeued job (same job id) once its credential has expired (``AuthInfo cred_expire``,
default 120 s): the task runs again and ``train_one`` resumes from the run's last epoch
checkpoint, which the trainer writes at the end of every epoch. Work since that checkpoint
is lost and redone deterministically, so the CSVs equal an uninterrupted run's.

An administrator's ``scontrol requeue`` or a preemption with ``PreemptMode=REQUEUE`` needs
no signal at all: SLURM kills and requeues the job, the process dies (its run lock, an
``flock``, goes with it) and the restarted task resumes the same way.

Not requeued forever: a task that receives the signal without having finished a training
epoch since it started (twice in a row: the first may be an unlucky preemption) records
the run as ``failed`` with one line saying to raise ``--time``.

The submission of a matrix as one job array (:func:`run_slurm`, :class:`SlurmOptions`)
lives here too, beside the task it submits: this module uses :mod:`benchmarks.runner`
(``execute``, the run locks), never the other way round, so the two do not import each
other, and a local run never imports submitit.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

import submitit
from submitit.core.utils import FailedSubmissionError, UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher

from . import io
from .errors import UserError

if TYPE_CHECKING:  # the task module stays light: submitit installs its signal handlers
    from .config import RunSpec  # only after unpickling the task, so import torch later
    from .runner import RunOptions

#: Consecutive signalled job ends without a new training epoch after which a run stops
#: asking to be requeued (1 would stop a run preempted right after it started).
MAX_STALLS = 2
#: Seconds a restarted task waits for the run lock still held by its own previous
#: incarnation (a process of the killed job that has not exited yet) before giving up.
LOCK_WAIT_S = 300
#: Test hook (used only by tests/slurm): after the epoch given here has been checkpointed,
#: the task blocks once per run until a signal ends it, so "training longer than the time
#: limit" does not depend on how fast the machine is.
HOLD_ENV = "BENCHMARKS_TEST_HOLD_AFTER_EPOCH"
HOLD_MARKER = ".test-held"
REQUEUES_FILE = "requeues.json"
#: sbatch flag names accepted by ``--sbatch`` (letters, digits, dashes).
_FLAG_RE = re.compile(r"^[a-z][a-z0-9-]*$")


class RunStalled(RuntimeError):
    """The job ended (time limit or preemption) again without finishing an epoch."""


class RunTask(submitit.helpers.Checkpointable):
    """One array task: train one run; on SLURM's warning signal, requeue itself.

    State that must survive a requeue lives in this object (submitit pickles it in
    ``checkpoint``): how many signalled ends in a row made no progress, and how many
    requeues so far. Picklable: only dicts and numbers.
    """

    def __init__(self, spec_dict: dict[str, Any], opts_dict: dict[str, Any], time_min: int) -> None:
        self.spec_dict = spec_dict
        self.opts_dict = opts_dict
        self.time_min = time_min
        self.stalls = 0
        self.requeues = 0
        self._start_epoch: Optional[int] = None  # this incarnation only (not pickled)
        self._reached: Optional[int] = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_start_epoch"] = state["_reached"] = None
        return state

    # --- the task --------------------------------------------------------------------
    def __call__(self) -> dict[str, Any]:
        from .config import RunSpec
        from .runner import RunOptions, execute

        spec = RunSpec.from_dict(self.spec_dict)
        opts = RunOptions(**self.opts_dict)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                out = execute(spec, opts, on_epoch=self._on_epoch)
            except SystemExit:  # submitit requeued the job and is exiting
                self._set_status(spec, opts, "requeued", (
                    f"SLURM job {_job_id()} ended (time limit or preemption) after epoch "
                    f"{self._reached}; it requeued itself and resumes from that checkpoint"))
                raise
            if out.status == "failed" and (out.error or "").startswith(RunStalled.__name__):
                self._set_status(spec, opts, "failed", out.error.splitlines()[0])
            # A restarted job can start while its killed incarnation is still exiting (it
            # holds the lock until then); anyone else holding it is another runner.
            if (out.status != "skipped-locked" or time.monotonic() > deadline
                    or not _lock_held_by_job(spec, opts, os.environ.get("SLURM_JOB_ID"))):
                return asdict(out)
            time.sleep(2)  # polling a condition (the old process exiting), bounded above

    def _on_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        """Called by the trainer after each epoch's checkpoint (first with the start epoch)."""
        if self._start_epoch is None:
            self._start_epoch = epoch
        self._reached = epoch
        hold = os.environ.get(HOLD_ENV)
        if hold is not None and epoch == int(hold):
            _hold_once(self._folder())

    def _folder(self) -> Path:
        from .config import RunSpec
        from .runner import RunOptions, run_dir

        return run_dir(RunOptions(**self.opts_dict), RunSpec.from_dict(self.spec_dict))

    # --- submitit's checkpoint hook (runs inside the signal handler) --------------------
    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Return the task to run after the requeue, or raise RunStalled to stop."""
        from .config import RunSpec

        start = self._start_epoch if self._start_epoch is not None else 0
        reached = self._reached if self._reached is not None else start
        progressed = reached > start
        stalls = 0 if progressed else self.stalls + 1
        spec = RunSpec.from_dict(self.spec_dict)
        record = {"job": _job_id(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "started_at_epoch": start, "epoch_reached": reached,
                  "epochs": spec["epochs"], "requeued": stalls < MAX_STALLS}
        _append_record(self._folder(), record)
        if stalls >= MAX_STALLS:
            raise RunStalled(
                f"run {spec.run_id}: {stalls} SLURM jobs in a row ended (time limit or preemption) "
                f"without finishing an epoch (stuck at epoch {reached} of {spec['epochs']}); "
                f"raise --time (now {self.time_min} min) and run the matrix again")
        nxt = RunTask(self.spec_dict, self.opts_dict, self.time_min)
        nxt.stalls, nxt.requeues = stalls, self.requeues + 1
        return submitit.helpers.DelayedSubmission(nxt)

    def _set_status(self, spec: RunSpec, opts: Any, status: str, error: str) -> None:
        """Rewrite run.json's status after train_one recorded the exception (``failed:
        SystemExit`` for a requeue); under the run lock, so never over another runner's."""
        from .runner import run_dir, run_lock

        path = run_dir(opts, spec) / "run.json"
        with run_lock(opts, spec) as mine:
            if not mine or not path.exists():
                return
            info = io.read_json(path)
            if info.get("status") in ("done", "diverged"):
                return
            info["status"], info["error"] = status, error
            io.write_json(path, info)


def _job_id() -> str:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID", "?")


def _append_record(folder: Path, record: dict[str, Any]) -> None:
    """Add one line of requeue history to the run folder (for people and for tests)."""
    path = folder / REQUEUES_FILE
    history: list[Any] = []
    if path.exists():
        try:
            history = list(io.read_json(path))
        except (ValueError, OSError, TypeError):
            history = []
    io.write_json(path, history + [record])


def _hold_once(folder: Path) -> None:
    """Test hook: block until a signal ends this process, once per run folder."""
    marker = folder / HOLD_MARKER
    if marker.exists():
        return
    io.write_text(marker, f"{os.getpid()} {_job_id()}\n")
    while True:  # SIGTERM/SIGCONT handlers return (submitit bypasses them): keep waiting
        signal.pause()


def _lock_held_by_job(spec: RunSpec, opts: Any, job_id: Optional[str]) -> bool:
    """Whether the run's lock file names a process of SLURM job ``job_id`` that still lives.

    The lock file holds ``pid N on host H`` of its holder (runner.hold_run); on this host
    we read the holder's ``SLURM_JOB_ID`` from /proc. Elsewhere, or unknown: False.
    """
    from .runner import LOCK_FILE, run_dir

    if not job_id:
        return False
    try:
        text = (run_dir(opts, spec) / LOCK_FILE).read_text().strip()
        held = re.fullmatch(r"pid (\d+) on host (\S+)", text)
        if not held or held[2] != socket.gethostname():
            return False
        env = Path(f"/proc/{held[1]}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"SLURM_JOB_ID={job_id}".encode() in env


# --- submission ---------------------------------------------------------------------------
def sbatch_flags(items: list[str]) -> dict[str, Any]:
    """``--sbatch`` values (``mail-type=END``, ``--exclusive``) -> submitit's
    ``slurm_additional_parameters`` (flag name -> value, True for a bare flag)."""
    flags: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.lstrip("-").partition("=")
        if not _FLAG_RE.match(key) or (eq and not value):
            raise UserError(f"--sbatch {item!r}: expected an sbatch flag as NAME=VALUE or NAME, "
                            "e.g. --sbatch mail-type=END or --sbatch exclusive")
        flags[key] = value if eq else True
    return flags


def require_slurm() -> None:
    """Raise UserError unless ``sbatch`` and ``srun`` are on PATH.

    Why: without them submitit's AutoExecutor quietly picks its local executor, which
    trains every run on this machine while the CLI reports a SLURM job array. (sbatch
    submits; submitit's batch script starts the task with srun.)
    """
    missing = [cmd for cmd in ("sbatch", "srun") if shutil.which(cmd) is None]
    if missing:
        raise UserError(f"--launcher slurm: {' and '.join(missing)} not found on PATH, so this "
                        "machine cannot submit SLURM jobs; run on a SLURM login node, or train "
                        "here with --launcher local")


#: Files submitit writes into its folder before it calls sbatch (renamed after success).
_SUBMIT_TEMPS = re.compile(r"[0-9a-f]{32}\.pkl|\.submission_file_[0-9a-f]{32}\.sh")


@contextlib.contextmanager
def submission(folder: Path) -> Iterator[None]:
    """Turn a failed submission into a one-line UserError and take back what it wrote.

    submitit writes the pickled tasks and the batch script into ``folder`` (creating it)
    before it calls sbatch, and on failure raises with sbatch's stderr, after printing it.
    Here the print is silenced, sbatch's error line becomes the message, and the
    attempt's files (new names of submitit's temporary kinds) and the folders it created
    (when empty) are removed, so a refused submission leaves the results folder as it was.
    (A second submission into the same folder at that very instant is the one thing whose
    temporary files could be taken too; its tasks would then fail for want of their pickle.)
    """
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    before = set(os.listdir(folder)) if folder.is_dir() else set()
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            yield
    except (UncompletedJobError, FailedSubmissionError, OSError) as e:
        for name in (set(os.listdir(folder)) - before if folder.is_dir() else ()):
            if _SUBMIT_TEMPS.fullmatch(name):
                (folder / name).unlink(missing_ok=True)
        for path in created:
            with contextlib.suppress(OSError):
                path.rmdir()
        lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
        why = next((line for line in lines if "error" in line.lower()), lines[0])
        raise UserError(f"--launcher slurm: the submission failed ({why}); check that this machine "
                        "reaches the SLURM controller (sinfo) and that the partition, account "
                        "and qos exist, or train here with --launcher local") from None


@dataclass(frozen=True)
class SlurmOptions:
    """sbatch settings of a matrix's job array (docs/running.md, "Running on a SLURM cluster")."""

    partition: Optional[str] = None
    time_min: int = 240
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 32
    array_parallelism: int = 64
    cluster: Optional[str] = None  # None = auto (slurm if sbatch exists); "local" for tests
    wait: bool = False
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    sbatch: tuple[str, ...] = ()      # extra sbatch flags, "name=value" or "name"
    setup: tuple[str, ...] = ()       # shell lines run in the batch script before the task
    signal_delay_s: int = 90          # SLURM's warning signal this long before the time limit


#: Upper bound on submitit's count of time-outs per task: our own rule (:class:`RunTask`,
#: no new epoch in MAX_STALLS jobs in a row) is what stops a run that cannot progress.
MAX_TIMEOUTS = 10_000


def slurm_parameters(specs: list[RunSpec], slurm: SlurmOptions) -> dict[str, Any]:
    """submitit ``update_parameters`` arguments for a real SLURM cluster."""
    params: dict[str, Any] = {
        "timeout_min": slurm.time_min, "name": f"impon-{specs[0]['matrix']}",
        "slurm_array_parallelism": slurm.array_parallelism, "cpus_per_task": slurm.cpus_per_task,
        "mem_gb": slurm.mem_gb,
        # the warning signal must fall inside the job, or it arrives before the task starts
        "slurm_signal_delay_s": min(slurm.signal_delay_s, max(1, slurm.time_min * 60 // 2)),
    }
    if slurm.gpus_per_task > 0:  # "--gpus-per-node=0" is not valid on every cluster
        params["gpus_per_node"] = slurm.gpus_per_task
    for key, value in (("partition", slurm.partition), ("account", slurm.account),
                       ("qos", slurm.qos), ("constraint", slurm.constraint)):
        if value:
            params[f"slurm_{key}"] = value
    extra = sbatch_flags(list(slurm.sbatch))
    if extra:
        params["slurm_additional_parameters"] = extra
    if slurm.setup:
        params["slurm_setup"] = list(slurm.setup)
    return params


def run_slurm(specs: list[RunSpec], opts: RunOptions, slurm: SlurmOptions, folder: Path) -> list[Any]:
    """Submit ``specs`` as one SLURM job array through submitit; returns the jobs.

    Raises UserError, with nothing written, when this machine cannot submit (no sbatch or
    srun) or sbatch refuses the array (no controller, a wrong partition).

    Each array task is a :class:`RunTask`: it runs ``runner.execute`` (same lock, skip and
    resume rules as a local runner) and requeues itself on SLURM's time-limit or preemption
    signal.
    """
    params = slurm_parameters(specs, slurm)  # raises UserError before anything is written
    cluster = slurm.cluster
    if cluster in (None, "slurm"):  # never submitit's quiet fallback to training right here
        require_slurm()
        cluster = "slurm"
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster,
                                     slurm_max_num_timeout=MAX_TIMEOUTS)
    if executor.cluster != "slurm":
        params = {"timeout_min": slurm.time_min, "name": params["name"]}
    executor.update_parameters(**params)
    opts_dict = asdict(opts)
    with submission(folder), executor.batch():
        jobs = [executor.submit(RunTask(s.to_dict(), opts_dict, slurm.time_min)) for s in specs]
    return jobs


def quiet_watcher() -> SlurmInfoWatcher:
    """A job-state watcher for ``--wait`` that also works without SLURM accounting.

    submitit's ``SlurmInfoWatcher`` asks ``sacct``; on a cluster without accounting
    (``AccountingStorageType=accounting_storage/none``) sacct fails, submitit logs
    "Bypassing sacct error" as a warning on every poll (on stderr and stdout, its two log
    handlers) and never learns that a job died without a result. This watcher asks sacct
    while it works, and ``squeue`` once it does not: a job that squeue no longer lists has
    ended (state ``FINISHED``; submitit then reports a missing result with the job's log).
    """
    return _QueueWatcher(delay_s=60)


class _QueueWatcher(SlurmInfoWatcher):
    def __init__(self, delay_s: int = 60) -> None:
        super().__init__(delay_s=delay_s)
        self._accounting = True

    def update(self) -> None:
        if self._accounting:
            command = self._make_command()
            if command is None:
                return
            try:
                out = subprocess.run(command, capture_output=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                out = None
            if out is not None and out.returncode == 0:
                self._num_calls += 1
                self._output = out.stdout
                self._info_dict.update(self.read_info(out.stdout))
                self._finish_update()
                return
            self._accounting = False  # e.g. "Slurm accounting storage is disabled"
        self._squeue_update()

    def _squeue_update(self) -> None:
        pending = self._registered - self._finished
        if not pending:
            return
        self._num_calls += 1
        try:
            out = subprocess.run(["squeue", "-h", "-r", "-u", str(os.getuid()), "-o", "%i|%T|%N"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            self._last_status_check = time.time()  # try again at the next poll
            return
        listed: dict[str, dict[str, str]] = {}
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) == 3:
                listed[parts[0]] = {"JobID": parts[0], "State": parts[1], "NodeList": parts[2]}
        for job_id in pending:
            self._info_dict[job_id] = listed.get(job_id, {"JobID": job_id, "State": "FINISHED"})
        self._finish_update()

    def _finish_update(self) -> None:
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)


def quiet_submitit_logs() -> None:
    """Keep submitit's INFO chatter (each requeue, each poll) out of the runner's output.

    The level is submitit's documented switch (``SUBMITIT_LOG_LEVEL``, read at import);
    setting the logger's level does the same after import. Its warnings still show.
    """
    if "SUBMITIT_LOG_LEVEL" not in os.environ:
        logging.getLogger("submitit").setLevel(logging.WARNING)


def wait_for(jobs: list[Any], specs: list[RunSpec], opts: Any, poll_s: float = 5.0) -> None:
    """Block until every array task has ended; print one line per run as it ends.

    A line says what the task did (``done``, ``skipped-locked``: another runner has the run,
    ``skipped-finished``, ``failed`` with its reason); a task SLURM killed without a result
    is reported with the run's status and the job's log instead of a traceback. A task that
    requeued itself is one job throughout: its line comes when its last incarnation ends.
    """
    from .runner import read_status, run_dir

    quiet_submitit_logs()
    watcher = quiet_watcher()
    for job in jobs:
        if isinstance(job, submitit.SlurmJob):
            job.watcher = watcher  # this job's state source (an instance attribute, per job)
    left = dict(zip((j.job_id for j in jobs), zip(jobs, specs)))
    total, ended = len(jobs), 0
    while left:
        for job_id, (job, spec) in list(left.items()):
            if not job.done():
                continue
            del left[job_id]
            ended += 1
            folder = run_dir(opts, spec)
            outcome = _task_outcome(job)
            status = outcome["status"] if outcome else read_status(folder)
            line = f"[{ended}/{total}] {spec.run_id}: {status} (job {job_id})"
            error = (outcome or {}).get("error") or (_run_error(folder) if status != "done" else None)
            if error:
                line += f" ({error.splitlines()[0]})"
            if outcome is None:
                line += f"; the job ended without a result, see {job.paths.stderr}"
            print(line, flush=True)
        if left:
            time.sleep(poll_s)  # polling job states, as submitit's own wait does


def _task_outcome(job: Any) -> Optional[dict[str, Any]]:
    """The task's returned ``Outcome`` as a dict, None if it has none (killed, crashed)."""
    if not job.paths.result_pickle.exists():
        return None
    try:
        out = job.result()
    except Exception:  # the task raised: submitit pickled the traceback instead
        return None
    return out if isinstance(out, dict) and "status" in out else None


def _run_error(folder: Path) -> Optional[str]:
    try:
        return io.read_json(folder / "run.json").get("error")
    except (OSError, ValueError):
        return None
