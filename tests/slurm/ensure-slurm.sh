#!/usr/bin/env bash
# make test-slurm's first step: SLURM and MUNGE present, and root to run their daemons.
# As root on Debian/Ubuntu (as in CI) it installs slurm-wlm and munge from the
# distribution; otherwise it says in one line what to do and exits 2.
set -u
need="munged slurmctld slurmd sbatch srun squeue sinfo scontrol scancel"
missing() { for p in $need; do command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ] || echo "$p"; done; }
if [ "$(id -u)" -ne 0 ]; then
    echo "make test-slurm starts SLURM daemons and needs root (as in CI); run it as root, with slurm-wlm and munge installed (apt-get install slurm-wlm munge)" >&2
    exit 2
fi
if [ -n "$(missing)" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "make test-slurm needs SLURM and MUNGE (missing: $(missing | tr '\n' ' ')); install your distribution's slurm-wlm (or slurm) and munge packages" >&2
        exit 2
    fi
    echo "installing slurm-wlm and munge from the distribution's packages..."
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -q slurm-wlm munge || { apt-get update -q && apt-get install -y -q slurm-wlm munge; }; } >/tmp/impon-apt-slurm.log 2>&1 || {
        echo "apt-get install slurm-wlm munge failed (log: /tmp/impon-apt-slurm.log); install them by hand and run make test-slurm again" >&2
        exit 2
    }
    if [ -n "$(missing)" ]; then
        echo "still missing after installing slurm-wlm and munge: $(missing | tr '\n' ' ')" >&2
        exit 2
    fi
fi
