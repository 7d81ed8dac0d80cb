"""The registry of everything ``python -m plots MATRIX`` makes besides the tables.

Why one registry: every output (a figure, the budget figure with its section, the
learning-rate choice with its files) used to be wired by hand in several places (a stem
table, a title table in the report, a list of makers, a second rewrite of report.md for
the budget, a separate call in the CLI for tuning). Now an :class:`Output` says once what
it draws, its file stem, its title in the report, why it may be skipped, and where its own
report section goes; :func:`make_all` runs them in order and the report reads what they
made (:class:`plots.figures.FigureOutputs`). A method's diagnostic figures join the list
from its plot traits (:mod:`plots.traits`), after the figures every matrix gets.

A new figure is one :class:`Output` appended to :data:`CORE` (and the function that
draws it).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from . import budget, multiples, noise, tuning
from .aggregate import MatrixResults
from .figures import (AT_END, BEFORE_LEFT_OUT, STEMS, FigureOutputs, ablation_skip_reason,
                      ablation_summary, accuracy_vs_backprops, accuracy_vs_epoch,
                      accuracy_vs_forwards, accuracy_vs_seconds, bank_size_curves,
                      default_ema_span, diagnostics_figure, loss_vs_iteration,
                      paired_difference_vs_epoch, save)
from .style import paper_style
from .traits import DiagnosticFigure


@dataclass
class Context:
    """What an output is made from: the matrix, where figures go (the registry saves
    them, under the output's stem), the figure options and what the outputs before it
    made (``made``)."""

    res: MatrixResults
    out_dir: Path
    ema_span: int
    pairs: list[tuple[str, str]]
    made: FigureOutputs


@dataclass(frozen=True)
class Output:
    """One output. ``draw``: the figure (None: not applicable here), which the registry
    saves into ``ctx.out_dir`` as ``stem``.png and .pdf; ``title``: its heading under "Figures" in report.md; ``skip``: why it
    was not drawn (said in the report and by the CLI). An output with a ``section`` of its
    own is not listed under "Figures": ``section`` gives its report lines (None: no section),
    placed at ``place`` (:data:`BEFORE_LEFT_OUT` or :data:`AT_END`); ``files`` writes any
    other files and returns them with the section (tuning), instead of ``draw``."""

    name: str
    title: str = ""
    stem: str | None = None
    draw: Callable[[Context], Figure | None] | None = None
    skip: Callable[[Context], str] | None = None
    section: Callable[[Context], list[str] | None] | None = None
    place: str = BEFORE_LEFT_OUT
    files: Callable[[Context], tuple[list[Path], list[str]] | None] | None = None


def _figure(name: str, title: str, draw: Callable[[Context], Figure | None],
            skip: str | Callable[[Context], str] = "not applicable") -> Output:
    return Output(name, title, STEMS[name], draw,
                  skip if callable(skip) else (lambda ctx, why=skip: why))


def _ablation_skip(ctx: Context) -> str:
    return ablation_skip_reason(ctx.res) or "not applicable"


#: The outputs of every matrix, in report order (the methods' diagnostics follow them).
CORE: tuple[Output, ...] = (
    _figure("fig2", "Figure 2 — test accuracy vs epoch",
            lambda c: accuracy_vs_epoch(c.res)),
    _figure("fig3", "Figure 3 — training loss vs iteration",
            lambda c: loss_vs_iteration(c.res, None, c.ema_span)),
    _figure("fig4", "Figure 4 — test accuracy vs epoch per bank size",
            lambda c: bank_size_curves(c.res), _ablation_skip),
    _figure("ablation", "Bank-size ablation summary",
            lambda c: ablation_summary(c.res), _ablation_skip),
    _figure("seconds", "Accuracy vs training wall-clock",
            lambda c: accuracy_vs_seconds(c.res)),
    _figure("forwards", "Accuracy vs examples forwarded",
            lambda c: accuracy_vs_forwards(c.res)),
    _figure("backprops", "Accuracy vs examples back-propagated",
            lambda c: accuracy_vs_backprops(c.res)),
    _figure("paired", "Paired difference vs epoch",
            lambda c: paired_difference_vs_epoch(c.res, c.pairs),
            "no (arm, reference) pair with finished runs of both (name a `reference:` arm in "
            "the matrix, or pass --reference)"),
    # many arms (plots.multiples.MANY_ARMS): one panel per method family, and the costs to
    # fixed accuracies as bars
    Output("multiples", "Test accuracy vs epoch, one panel per method family",
           multiples.STEMS["multiples"],
           lambda c: multiples.small_multiples(c.res, c.pairs, c.out_dir)
           if multiples.wants_multiples(c.res) else None,
           lambda c: multiples.skip_reason(c.res)),
    Output("time_to_accuracy", "Cost to reach fixed accuracies",
           multiples.STEMS["time_to_accuracy"],
           lambda c: multiples.time_to_accuracy(c.res, c.pairs, c.out_dir)
           if multiples.wants_multiples(c.res) else None,
           lambda c: multiples.skip_reason(c.res)),
)

#: Outputs with report sections of their own, after the figures.
SECTIONS: tuple[Output, ...] = (
    Output("tuning", files=lambda c: tuning.write_tuning_files(c.res), place=BEFORE_LEFT_OUT),
    Output("budget", stem=budget.STEM, draw=lambda c: budget.budget_accuracy(c.res),
           section=lambda c: budget.report_section(c.res).split("\n")
           if "budget" in c.made.figures else None, place=AT_END),
)


def _diagnostic(d: DiagnosticFigure) -> Output:
    return Output(d.name, f"Diagnostics — {d.report_title}", d.stem,
                  lambda c: diagnostics_figure(c.res, d.name),
                  lambda c: d.skip_reason)


#: Outputs that exist only where their data does (not listed as "not drawn" elsewhere).
#: Label noise: runs with ``label_noise`` log ``noisy_frac`` (plots/noise.py).
NOISE = Output("noisy", noise.TITLE, noise.STEM, lambda c: noise.noisy_fraction(c.res),
               lambda c: noise.skip_reason(c.res))


def registry(res: MatrixResults) -> list[Output]:
    """Every output for this matrix, in order: :data:`CORE`, the label-noise figure where
    runs trained on noisy labels, the diagnostic figures its methods declare
    (:meth:`plots.traits.MethodTraits.diagnostics`), :data:`SECTIONS`."""
    noisy = [NOISE] if noise.COLUMN in res.epochs.columns else []
    return [*CORE, *noisy, *(_diagnostic(d) for d in res.traits.diagnostics()), *SECTIONS]


def stems(res: MatrixResults) -> dict[str, str]:
    """Output name -> figure file stem (under ``figures/``), for every figure output."""
    return {o.name: o.stem for o in registry(res) if o.stem}


def make_all(res: MatrixResults, out_dir: Path, ema_span: int | None = None,
             pairs: list[tuple[str, str]] | None = None,
             made: FigureOutputs | None = None) -> FigureOutputs:
    """Make every output of :func:`registry` that applies to this matrix, in order, into
    ``made`` (a fresh :class:`FigureOutputs` by default); ``pairs``: the paired
    comparisons, (arm, reference); none -> no paired figure."""
    out = made or FigureOutputs()
    out.ema_span = ema_span or default_ema_span(res)
    ctx = Context(res, Path(out_dir), out.ema_span, list(pairs or []), out)
    for o in registry(res):
        if o.draw is not None:
            fig = o.draw(ctx)
            if fig is not None:
                out.figures[o.name] = fig
                with paper_style():  # the settings it was drawn with (fonts embedded, dpi)
                    out.written[o.name] = save(fig, ctx.out_dir, o.stem or o.name)
            elif o.skip is not None:
                out.skipped[o.name] = o.skip(ctx)
        section = None
        if o.files is not None:
            made_files = o.files(ctx)
            if made_files is not None:
                out.files[o.name], section = made_files
        if o.section is not None:
            section = o.section(ctx)
        if section is not None:
            out.sections.setdefault(o.place, []).append(section)
        elif o.files is None and o.section is None:
            out.listed.append((o.name, o.title, o.stem or ""))
    return out
