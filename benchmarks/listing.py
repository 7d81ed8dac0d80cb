"""``python -m benchmarks list [--results DIR]``: which matrices exist and how far each got.

Why: a newcomer (or someone coming back to a results folder) needs one command that says
what can be run and what is already finished, without reading YAML files or run.json by
hand. It only reads files: nothing is created, locked or trained.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

from .errors import UserError


def matrix_lines(results: str | Path = "results", width: int = 88) -> tuple[list[str], bool]:
    """Lines describing every matrix in ``benchmarks/matrices/``, and whether all loaded.

    Per matrix: its name, run count, how many runs are ``done`` under ``results/<name>/``
    (other recorded statuses -- diverged, failed, running -- counted after it), then its
    description wrapped and indented. A matrix file that does not validate is listed with
    its error instead, so one broken file does not hide the others.
    """
    from . import matrix, runner

    lines: list[str] = []
    ok = True
    for path in sorted(matrix.MATRIX_DIR.glob("*.yaml")):
        try:
            mat = matrix.load(str(path))
        except UserError as e:
            ok = False
            lines.append(f"{path.stem}: cannot be loaded: {'; '.join(e.problems)}")
            continue
        opts = runner.RunOptions(results=str(results))
        statuses = [runner.read_status(runner.run_dir(opts, s)) for s in mat.runs]
        counts = {k: statuses.count(k) for k in sorted(set(statuses)) if k not in ("done", "pending")}
        extra = "".join(f", {v} {k}" for k, v in counts.items())
        lines.append(f"{mat.name}: {len(mat.runs)} runs, {statuses.count('done')} done{extra} "
                     f"in {Path(results) / mat.name}/")
        desc = " ".join(mat.description.split())
        if desc:
            lines += textwrap.wrap(desc, width=width, initial_indent="    ", subsequent_indent="    ")
    return lines, ok


def cmd_list(results: str) -> int:
    """Print :func:`matrix_lines`; exit 0, or 1 if some matrix file did not load."""
    lines, ok = matrix_lines(results)
    print("\n".join(lines))
    print("run one with `python -m benchmarks run NAME --dry-run` to see its runs and cost")
    return 0 if ok else 1
