"""Turn a matrix's run folders into ``summary.csv``, figures and ``report.md`` (docs/outputs.md, "Plots and statistics").

``python -m plots MATRIX`` (or ``make plots MATRIX=...``) does everything; the pieces:

- :mod:`plots.aggregate` — load run folders (only ``done`` runs are used), summary.csv;
- :mod:`plots.outputs`   — the registry of outputs (figures, budget, tuning) and their order;
- :mod:`plots.traits`    — the methods' plot traits as the runner recorded them;
- :mod:`plots.figures`   — Figures 2–4, the bank-size ablation summary, cost figures;
- :mod:`plots.paired`    — paired differences vs a reference arm (paired.csv);
- :mod:`plots.setup`     — the setup each run recorded (optimizer, lr, commit, devices);
- :mod:`plots.report`    — report.md: setup table, per-dataset tables, figures inline;
- :mod:`plots.budget`    — final accuracy vs training budget (matrices with a budget axis);
- :mod:`plots.tuning`    — the learning rate chosen on validation (LR sweeps);
- :mod:`plots.style`     — arm colours that are the same in every figure.
- :mod:`plots.stats`     — Holm-adjusted p-values, IQM and probability of improvement;
- :mod:`plots.multiples` — small multiples and cost-to-accuracy bars for many arms;
- :mod:`plots.leaderboard` — ``python -m plots leaderboard``: every matrix on one page.

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


def make_plots(root: Path | str, ema_span: int | None = None, reference: str | None = None
               ) -> tuple[MatrixResults, FigureOutputs]:
    """Load ``root``; write summary.csv, paired.csv, every output of the registry
    (:mod:`plots.outputs`: figures/*.png|pdf, and for an LR sweep best_lr.csv and
    tuned.yaml) and report.md into it, each file once.

    ``reference`` overrides the matrix's ``reference``/``comparisons`` keys (every arm is
    then compared with that arm). Raises ResultsError when there is nothing usable. The
    figure and report modules are imported here so that ``import plots`` (e.g. to
    aggregate only) stays light.
    """
    from .figures import FigureOutputs
    from .outputs import make_all
    from .paired import comparisons_for, paired_table, write_paired
    from .report import write_report

    res = load_matrix(root)
    arms = set(res.epochs["arm"].astype(str))
    if reference is not None and reference not in arms:
        raise ResultsError(f"--reference {reference!r} is not an arm with finished runs here; "
                           f"arms: {', '.join(sorted(arms))}")
    comparisons = comparisons_for(res, reference=reference)  # may refuse: before any write
    write_summary(res)
    paired = paired_table(res, comparisons.pairs)
    write_paired(paired, res.root / "paired.csv")
    outputs = make_all(res, res.root / "figures", ema_span=ema_span, pairs=comparisons.pairs,
                       made=FigureOutputs(comparisons=comparisons, paired=paired))
    write_report(res, outputs)
    return res, outputs
