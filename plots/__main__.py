"""CLI: ``python -m plots MATRIX [--results DIR] [--ema-span N] [--reference ARM]``, and
``python -m plots leaderboard [--results DIR]`` (:mod:`plots.leaderboard`: every matrix on
one page; a matrix named ``leaderboard`` is reached by its path, ``results/leaderboard``).

MATRIX is a matrix name (``results/<MATRIX>/``) or a path to a matrix's results folder.
A matrix whose runs logged a validation split (an LR sweep) also gets ``best_lr.csv``,
``tuned.yaml`` and a report section (:mod:`plots.tuning`).
Bad input (no folder, no finished run) is one line on stderr and exit code 2, no
traceback, like the runner's CLI.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (also works on headless nodes)

from benchmarks.files import check_writable  # noqa: E402

from . import make_plots  # noqa: E402
from .aggregate import ResultsError, resolve_results_dir  # noqa: E402
from .tuning import kept_note  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m plots",
        description="Aggregate a matrix's runs into summary.csv, figures/ and report.md.")
    p.add_argument("matrix", help="matrix name (results/<MATRIX>/) or path to a results folder")
    p.add_argument("--results", default="results",
                   help="folder holding one sub-folder per matrix (default: results)")
    p.add_argument("--ema-span", type=int, default=None, metavar="N",
                   help="EMA span (iterations) for Figure 3 (default: a quarter epoch, ≤100)")
    p.add_argument("--reference", default=None, metavar="ARM",
                   help="compare every arm with ARM (default: the matrix's `reference:` and "
                        "`comparisons:` keys, else `sgd` if present)")
    return p


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, line: str | None = None) -> str:
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["leaderboard"]:  # `python -m plots leaderboard [--results DIR]`
        from .leaderboard import main as leaderboard_main
        return leaderboard_main(argv[1:])
    args = _parser().parse_args(argv)
    warnings.formatwarning = _one_line_warning  # the CLI says "warning: ..." on one line
    if args.ema_span is not None and args.ema_span < 1:
        print("error: --ema-span must be ≥ 1", file=sys.stderr)
        return 2
    try:
        root = resolve_results_dir(args.matrix, args.results)
        for folder in (root, root / "figures"):  # refused before anything is written
            if why := check_writable(folder):
                raise ResultsError(f"{why}: the plots are written into {root} (summary.csv, figures/, "
                                   "report.md); make it writable, or copy the matrix's folder "
                                   "elsewhere and pass that path")
        res, outputs = make_plots(root, ema_span=args.ema_span, reference=args.reference)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    used = int(res.runs["included"].sum())
    print(f"matrix {res.matrix}: {used} of {len(res.runs)} runs used ({root})")
    print(f"wrote {root / 'summary.csv'}")
    print(f"wrote {root / 'paired.csv'}")
    for paths in outputs.written.values():
        for path in paths:
            print(f"wrote {path}")
    for paths in outputs.files.values():  # LR sweeps: best_lr.csv, tuned.yaml
        for path in paths:
            print(f"wrote {path}")
            if note := kept_note(path):
                print(note)
    print(f"wrote {root / 'report.md'}")
    for name, reason in outputs.skipped.items():
        print(f"skipped {name}: {reason}")
    for _, run in res.left_out.iterrows():
        error = f" — {str(run['error']).splitlines()[0]}" if run["error"] else ""
        print(f"left out {run['run_id']} [{run['status']}]: {run['reason']}{error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
