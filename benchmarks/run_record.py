"""``run.json``: the record of one run (what ran, on what, from which commit, how it ended).

Why apart from the training loop: the record is written at the start, at the end and on
failure -- also when the trainer could not even be built -- and what it holds (the spec,
the data provenance, versions, device, git state, timing) is a schema of its own that
the plots and the runner read; the loop only reports its status.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import torch

from . import io, provenance
from .config import RunSpec
from .errors import UserError
from .traits import plot_traits


def run_record(spec: RunSpec, status: str, error: str | None, info: Any, device: torch.device,
               started: str, seconds: float | None,
               placement: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run.json content for ``status`` (``running``, ``done``, ``diverged``, ``failed``).

    ``placement``: where the images lived (``benchmarks.placement.Placement.to_dict``),
    absent when the run never got that far; not part of the run's identity."""
    record = {
        "run_id": spec.run_id, "status": status, "error": error, "spec": spec.to_dict(),
        "dataset": info.to_dict() if info is not None else {"name": spec["dataset"]},
        "versions": provenance.versions(), "device": provenance.device_name(device),
        "git": provenance.git_state(), "host": provenance.host(), "started": started,
        "ended": None if status == "running" else dt.datetime.now(dt.timezone.utc).isoformat(),
        "seconds": seconds,
        # how the plots draw and report this method (they cannot import samplers)
        "plot_traits": plot_traits(spec["sampler"]["name"]),
    }
    if placement is not None:
        record["data_placement"] = placement
    return record


def record_setup_failure(spec: RunSpec, run_dir: Path, dev: torch.device, e: Exception) -> None:
    """Write run.json ``failed`` (with the error) for a run whose setup failed (data, sampler,
    model), so the failure is visible in the run folder and listed by the plots' report
    instead of the arm silently missing. A run that already trained keeps its files (its
    checkpoint is untouched; only the status changes, and failed runs resume)."""
    error = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "run.json"
        before: Any = {}
        if path.exists():  # keep the provenance (data fingerprint, start) of rows so far
            try:
                before = io.read_json(path)
            except ValueError:
                before = {}
        before = before if isinstance(before, dict) else {}
        record = run_record(spec, "failed", f"setup failed: {error}", None, dev,
                            before.get("started") or dt.datetime.now(dt.timezone.utc).isoformat(), None)
        if isinstance(before.get("dataset"), dict):
            record["dataset"] = before["dataset"]
        io.write_json(path, record)
    except OSError:
        pass  # an unwritable results folder was already refused by check_writable
