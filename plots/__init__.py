"""Turn a matrix's run folders into ``summary.csv``, figures and ``report.md`` (DESIGN §9).

``python -m plots MATRIX`` (or ``make plots MATRIX=...``) does everything; the pieces:

- :mod:`plots.aggregate` — load run folders (only ``done`` runs are used), summary.csv;
- :mod:`plots.figures`   — Figures 2–4, the bank-size ablation summary, cost figures;
- :mod:`plots.report`    — report.md with per-dataset tables and the figures inline;
- :mod:`plots.budget`    — final accuracy vs training budget (matrices with a budget axis);
- :mod:`plots.style`     — arm colours that are the same in every figure.

Only pandas/seaborn/matplotlib are needed: no torch import, so plots can be made on a
laptop from results copied off a cluster.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .aggregate import MatrixResults, ResultsError, load_matrix, resolve_results_dir, write_summary

if TYPE_CHECKING:
    from .figures import FigureOutputs

__all__ = ["MatrixResults", "ResultsError", "load_matrix", "resolve_results_dir",
           "write_summary", "make_plots"]


def make_plots(root: Path | str, ema_span: int | None = None
               ) -> tuple[MatrixResults, FigureOutputs]:
    """Load ``root``; write summary.csv, figures/*.png|pdf and report.md into it.

    Raises ResultsError when there is nothing usable. The figure and report modules are
    imported here so that ``import plots`` (e.g. to aggregate only) stays light.
    """
    from . import budget
    from .figures import make_all
    from .report import write_report

    res = load_matrix(root)
    write_summary(res)
    outputs = make_all(res, res.root / "figures", ema_span=ema_span)
    has_budget = budget.add_to_outputs(res, outputs, res.root / "figures") is not None
    report = write_report(res, outputs)
    if has_budget:  # matrices with a budget axis: figure + table appended to report.md
        budget.append_to_report(res, report)
    return res, outputs
