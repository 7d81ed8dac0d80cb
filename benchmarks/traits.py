"""The samplers' plot traits as the plots read them: in ``run.json`` and ``methods.json``.

    python -m benchmarks traits --backfill RESULTS_DIR

Why: the plots must not import ``samplers`` (torch), yet the colours, diagnostic figures
and report notes of a method live in the method's class (:class:`samplers.PlotTraits`).
So the runner records them as data: each run's ``run.json`` carries its sampler's traits
(key ``plot_traits``: a run folder copied anywhere still plots as it should), and the
matrix folder's ``methods.json`` carries those of every registered sampler when the matrix
last ran (so the report can list the diagnostic figures of methods the matrix did not run,
saying why they are not drawn).

Runs recorded before traits existed lack them; ``--backfill`` adds them from the current
registry to every ``run.json`` under RESULTS_DIR (a matrix folder or a results root) that
has none, and writes each matrix folder's ``methods.json``. Every write is atomic and adds
only the key: nothing else of a ``run.json`` changes, and a file that already has traits is
left alone byte for byte.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import samplers

from . import io
from .errors import UserError, cli_exit

#: The run.json key of a run's sampler's plot traits.
RUN_KEY = "plot_traits"
#: The matrix folder's file of every registered sampler's plot traits.
CATALOGUE = "methods.json"


def plot_traits(name: str) -> Optional[dict[str, Any]]:
    """The JSON form of sampler ``name``'s plot traits; None for a name not registered."""
    if name not in samplers.available():
        return None
    return samplers.get(name).plot.to_dict()


def catalogue() -> dict[str, dict[str, Any]]:
    """Every registered sampler's plot traits (name -> JSON form), sorted by name."""
    return {name: samplers.get(name).plot.to_dict() for name in samplers.available()}


def write_catalogue(folder: Path) -> Optional[Path]:
    """Write ``folder/methods.json`` (atomically); None, and nothing written, if it
    already holds exactly this catalogue."""
    path = Path(folder) / CATALOGUE
    text = json.dumps(catalogue(), indent=2, ensure_ascii=False) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_text(path, text)
    return path


def _run_jsons(root: Path) -> list[Path]:
    """run.json files of the run folders in ``root`` (a matrix folder) or one level below
    (a results root holding matrix folders)."""
    found = sorted(root.glob("*/run.json"))
    return found if found else sorted(root.glob("*/*/run.json"))


def backfill(root: Path | str) -> dict[str, int]:
    """Add ``plot_traits`` to every run.json under ``root`` that lacks them and write the
    matrix folders' ``methods.json``. Returns counts: ``added``, ``had`` (already had
    traits), ``unknown`` (sampler not registered: left alone), ``catalogues`` (written)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--backfill {root}: no such folder; give a matrix's results folder "
                        "(results/<matrix>) or a results root")
    paths = _run_jsons(root)
    if not paths:
        raise UserError(f"--backfill {root}: no run folder (with run.json) in it or one level "
                        "below; give a matrix's results folder or a results root")
    counts = {"added": 0, "had": 0, "unknown": 0, "catalogues": 0}
    for path in paths:
        try:
            record = io.read_json(path)
        except ValueError as exc:
            raise UserError(f"{path}: not readable JSON ({exc}); fix or remove that run folder") from exc
        if not isinstance(record, dict):
            raise UserError(f"{path}: holds a JSON {type(record).__name__}, not a run record")
        if record.get(RUN_KEY) is not None:
            counts["had"] += 1
            continue
        spec = record.get("spec") if isinstance(record.get("spec"), dict) else {}
        sampler = spec.get("sampler") if isinstance(spec.get("sampler"), dict) else {}
        traits = plot_traits(str(sampler.get("name", "")))
        if traits is None:
            counts["unknown"] += 1
            continue
        io.write_json(path, {**record, RUN_KEY: traits})
        counts["added"] += 1
    for folder in sorted({p.parent.parent for p in paths}):
        if write_catalogue(folder) is not None:
            counts["catalogues"] += 1
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks traits",
                                 description="record the samplers' plot traits for the plots")
    ap.add_argument("--backfill", metavar="RESULTS_DIR", required=True,
                    help="add plot traits to every run.json under RESULTS_DIR that lacks them")
    args = ap.parse_args(argv)
    counts = backfill(args.backfill)
    print(f"{args.backfill}: plot traits added to {counts['added']} run.json, "
          f"{counts['had']} had them, {counts['unknown']} of unregistered samplers left alone; "
          f"{counts['catalogues']} {CATALOGUE} written", flush=True)
    return 0


def cli(argv: Optional[Sequence[str]] = None) -> int:
    return cli_exit(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
