"""A throwaway single-node SLURM cluster on localhost, for tests/slurm.

Everything lives in one temporary folder: a MUNGE key and socket, ``slurm.conf``, the
controller's state, the node's spool and the logs. ``munged``, ``slurmctld`` and
``slurmd`` run in the foreground as children of the test process, so ``stop()`` ends
exactly those three by their PIDs (after cancelling every job of this cluster and waiting
for the queue to drain, so no job step outlives it). Clients find the cluster through
``SLURM_CONF``, which sbatch passes on to the jobs.

Choices for a container without systemd or cgroups: ``proctrack/linuxproc`` and
``task/none`` (no cgroup plugin), no accounting (so ``sacct`` fails, as on many small
clusters), the node is this host under ``hostname -s`` at 127.0.0.1, free TCP ports.
Timing: ``OverTimeLimit=0`` and ``KillWait=5`` end a job promptly at its limit;
``AuthInfo cred_expire=10`` lets a requeued job start again after ~10 s instead of SLURM's
default 120 s (the man page of slurm.conf: "This also controls how long a requeued job must
wait before starting again"); ``MinJobAge=600`` keeps finished jobs visible to
``scontrol show job`` (their ``Restarts`` count) for the whole session.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")


def missing_programs() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    """Start with ``LocalSlurm.start()``; ``env`` is the environment for clients."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen] = {}
        self.node = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    @classmethod
    def start(cls, timeout_s: float = 120) -> "LocalSlurm":
        cluster = cls(Path(tempfile.mkdtemp(prefix="impon-slurm-")))
        try:
            cluster._start(timeout_s)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _start(self, timeout_s: float) -> None:
        r = self.root
        for sub in ("munge", "state", "spool", "log"):
            (r / sub).mkdir(mode=0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        sock = r / "munge" / "munge.sock"
        (r / "plugstack.conf").write_text("")
        self.conf.write_text(f"""\
ClusterName=impontest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock},cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
PlugStackConfig={r / 'plugstack.conf'}
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
OverTimeLimit=0
KillWait=5
MinJobAge=600
JobRequeue=1
NodeName={self.node} NodeAddr=127.0.0.1 CPUs=2 RealMemory=1024 State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        self._spawn("munged", [_which("munged"), "--foreground", "--force", f"--key-file={key}",
                               f"--socket={sock}", f"--log-file={r / 'log' / 'munged.log'}",
                               f"--pid-file={r / 'munge' / 'munged.pid'}",
                               f"--seed-file={r / 'munge' / 'munged.seed'}"])
        self._wait(lambda: sock.exists(), timeout_s, "munged to open its socket")
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", str(self.conf)])
        self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.node])
        self._wait(lambda: self._sinfo_state().startswith("idle"), timeout_s, "the node to be idle")

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            stdin=subprocess.DEVNULL)
        log.close()

    def _sinfo_state(self) -> str:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=self.env)
        return out.stdout.strip()

    def _wait(self, cond, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode} while waiting for {what}; "
                                       f"logs: {self.root / 'log'}\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}; logs: {self.root / 'log'}\n{self.logs()}")
            time.sleep(0.2)

    def logs(self) -> str:
        out = []
        for f in sorted((self.root / "log").glob("*")):
            out.append(f"== {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-20:]))
        return "\n".join(out)

    # --- client helpers -------------------------------------------------------------
    def run(self, *argv: str) -> str:
        return subprocess.run(list(argv), capture_output=True, text=True, env=self.env, check=True).stdout

    def job_field(self, job_id: str, field: str) -> Optional[str]:
        """A field of ``scontrol show job`` (e.g. Restarts, JobState), None if absent."""
        out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                             env=self.env).stdout
        for token in out.split():
            if token.startswith(field + "="):
                return token.split("=", 1)[1]
        return None

    def queue(self) -> list[str]:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True,
                             env=self.env)
        return out.stdout.split() if out.returncode == 0 else []

    # --- teardown -------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel every job, wait for the queue to drain, stop the daemons by PID."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            jobs = self.queue()
            if jobs:
                subprocess.run(["scancel", *jobs], capture_output=True, env=self.env)
                deadline = time.monotonic() + 60
                while self.queue() and time.monotonic() < deadline:
                    time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm() -> Iterator[LocalSlurm]:
    """The session's cluster: started once, stopped (jobs cancelled, daemons by PID) at the end."""
    missing = missing_programs()
    if missing or os.geteuid() != 0:
        pytest.fail("tests/slurm need root and SLURM + MUNGE installed "
                    f"({'missing: ' + ', '.join(missing) if missing else 'not root'}); "
                    "run `make test-slurm` as root (it installs slurm-wlm and munge)", pytrace=False)
    cluster = LocalSlurm.start()
    try:
        yield cluster
    finally:
        cluster.stop()
