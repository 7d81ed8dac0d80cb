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
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import submitit
from submitit.slurm.slurm import SlurmInfoWatcher

from . import io
from .errors import UserError

if TYPE_CHECKING:  # the task module stays light: submitit installs its signal handlers
    from .config import RunSpec  # only after unpickling the task, so import torch later

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

    The lock file holds ``<pid> <host>`` of its holder (runner.run_lock); on this host we
    read the holder's ``SLURM_JOB_ID`` from /proc. Elsewhere, or unknown: False.
    """
    if not job_id:
        return False
    lock = Path(opts.results) / spec["matrix"] / ".locks" / f"{spec.run_id}.lock"
    try:
        pid_s, host = lock.read_text().split()[:2]
        if host != os.uname().nodename:
            return False
        env = Path(f"/proc/{int(pid_s)}/environ").read_bytes().split(b"\0")
    except (OSError, ValueError):
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
