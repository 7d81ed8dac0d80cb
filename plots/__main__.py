"""CLI: ``python -m plots MATRIX [--results DIR] [--ema-span N] [--reference ARM]``.

MATRIX is a matrix name (``results/<MATRIX>/``) or a path to a matrix's results folder.
A matrix whose runs logged a validation split (an LR sweep) also gets ``best_lr.csv``,
``tuned.yaml`` and a report section (:mod:`plots.tuning`).
Bad input (no folder, no finished run) is one line on stderr and exit code 2, no
traceback, like the runner's CLI.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (also works on headless nodes)

from benchmarks.files import check_writable  # noqa: E402

from . import make_plots  # noqa: E402
from .aggregate import ResultsError, resolve_results_dir  # noqa: E402
from .tuning import kept_note, write_tuning  # noqa: E402


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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
        tuning = write_tuning(res)  # LR sweeps with validation: best_lr.csv, tuned.yaml
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
    print(f"wrote {root / 'report.md'}")
    for path in tuning[:2]:
        print(f"wrote {path}")
    if tuning and kept_note(tuning[1]):
        print(kept_note(tuning[1]))
    for name, reason in outputs.skipped.items():
        print(f"skipped {name}: {reason}")
    for _, run in res.left_out.iterrows():
        error = f" — {str(run['error']).splitlines()[0]}" if run["error"] else ""
        print(f"left out {run['run_id']} [{run['status']}]: {run['reason']}{error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
