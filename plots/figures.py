"""The figures listed in docs/outputs.md, "Plots and statistics", one function each, drawn from :class:`MatrixResults`.

Every function returns the matplotlib ``Figure`` (so tests can read back the plotted
lines, legend and titles) and, given ``out_dir``, also saves it as PNG (150 dpi) and PDF.
Figures are built on ``matplotlib.figure.Figure`` directly, not ``pyplot``: no GUI
backend is needed and no global figure list fills up when many are made.

Conventions shared by all figures, stated in each caption:
- one panel per dataset, titled with its name, train/test sizes, "[subset]" when it is
  reduced, and the number of seeds;
- one line per arm (per arm *variant* when an arm has several bank sizes or settings;
  its bank sizes are then told apart by line style), colour from :mod:`plots.style`;
- line = mean over seeds; band = 95% Student-t interval of that mean
  (:func:`plots.aggregate.t_interval`, passed to seaborn as its ``errorbar``).
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D

from .aggregate import MatrixResults, atomic_path, checkpoints, seeds_text, t_interval
from .paired import Comparisons, paired_differences, unpaired_seeds
from .setup import provenance
from .traits import evaluate
from .style import (VARIANT_DASHES, arm_order, arm_palette, bank_palette, checkpoint_palette,
                    paper_style)

#: File stems under results/<matrix>/figures/ of the figures drawn here for every matrix
#: (a method's diagnostic figure is ``diagnostics_<key>``, :class:`plots.traits.DiagnosticFigure`;
#: every output and its stem: :mod:`plots.outputs`).
STEMS = {
    "fig2": "fig2_test_accuracy_vs_epoch",
    "fig3": "fig3_train_loss_vs_iteration",
    "fig4": "fig4_bank_size_accuracy_vs_epoch",
    "ablation": "ablation_accuracy_vs_bank_size",
    "seconds": "cost_accuracy_vs_seconds",
    "forwards": "cost_accuracy_vs_forwards",
    "backprops": "cost_accuracy_vs_backprops",
    "paired": "paired_difference_vs_epoch",
}

#: Most points drawn per line in Figure 3 (after smoothing); more is invisible at 150 dpi.
MAX_POINTS = 400

#: Seeds up to which every seed is drawn as a thin line instead of a t-band: with 2-3
#: seeds the 95% t-interval is +-12.7 / 2.5 / ... standard errors wide and hides the means.
SEED_LINES_MAX = 3

_BAND = ("Line: mean over seeds; band: 95% Student-t confidence interval of that mean{clip} "
         "(none with a single seed).")
BAND_TEXT = _BAND.format(clip="")
ACC_BAND_TEXT = _BAND.format(clip=", clipped to the possible 0–100%")  # see _draw_lines
_SEED_LINES = ("Thick line: mean over seeds; thin lines: the individual seeds (with ≤ "
               f"{SEED_LINES_MAX} seeds a 95% t-band would be too wide to read, so none is "
               "drawn).")
_MIXED = ("Thick line: mean over seeds. Arms with ≤ " f"{SEED_LINES_MAX}" " seeds: thin lines "
          "are the individual seeds; arms with more: band = 95% Student-t confidence interval "
          "of the mean{clip}.")


def band_text(data: pd.DataFrame, clip: bool = False) -> str:
    """The caption sentence saying what the lines and bands of ``data`` are.

    Which one depends on the seeds per line (:data:`SEED_LINES_MAX`), so the caption is
    computed from the data drawn rather than fixed.
    """
    clip_text = ", clipped to the possible 0–100%" if clip else ""
    counts = data.groupby(["panel", "variant"], observed=True)["seed"].nunique()
    if counts.empty or (counts <= SEED_LINES_MAX).all():
        return _SEED_LINES
    if (counts > SEED_LINES_MAX).all():
        return _BAND.format(clip=clip_text)
    return _MIXED.format(clip=clip_text)


ACC_BOUNDS = (0.0, 100.0)
PANEL_W, PANEL_H = 4.4, 3.3
LEGEND_COLS = 5
MIN_WIDTH = 6.4


# ------------------------------------------------------------------------ helpers


def variant_table(res: MatrixResults, data: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per variant: arm, bank size, colour, dash, in legend order.

    Order: arms in the fixed order of :func:`plots.style.arm_order`, then bank size.
    """
    data = res.epochs if data is None else data
    arm_table = res.arm_styles
    table = (data[["variant", "arm", "bank_size"]].drop_duplicates("variant")
             .assign(_arm_rank=lambda d: d["arm"].map(
                 {a: i for i, a in enumerate(arm_order(d["arm"], arm_table))}))
             .sort_values(["_arm_rank", "bank_size", "variant"], na_position="first")
             .drop(columns="_arm_rank").reset_index(drop=True))
    samplers = dict(zip(data["arm"].astype(str), data["sampler"].astype(str))) \
        if "sampler" in data.columns else {}
    table["colour"] = table["arm"].map(arm_palette(table["arm"], samplers, arm_table))
    table["dash"] = table.groupby("arm").cumcount().map(
        lambda i: VARIANT_DASHES[i % len(VARIANT_DASHES)])
    single = table.groupby("arm")["variant"].transform("count") == 1
    table.loc[single, "dash"] = "-"
    return table.set_index("variant")


@dataclass
class _Canvas:
    """A figure split into three stacked sub-figures: panels, legend, caption.

    Why sub-figures: constrained layout does not stack a figure-level legend and a
    caption under the panels (they overlap), but it does lay out sub-figures, so each
    gets a strip of known height and nothing overlaps, whatever the number of panels.
    """

    fig: Figure
    axes: np.ndarray
    legend_fig: SubFigure
    caption_fig: SubFigure
    caption: str


def _canvas(n_rows: int, n_cols: int, n_legend: int, caption: str,
            legend_title: str | None = None) -> _Canvas:
    width = max(PANEL_W * n_cols, MIN_WIDTH)  # room for the caption of a one-panel figure
    text = textwrap.fill(caption, int(width * 15))
    legend_rows = math.ceil(n_legend / min(max(n_legend, 1), LEGEND_COLS))
    legend_h = 0.27 * legend_rows + (0.25 if legend_title else 0.0) + 0.1
    caption_h = 0.15 * (text.count("\n") + 1) + 0.1
    panels_h = PANEL_H * n_rows + 0.4  # + suptitle
    fig = Figure(figsize=(width, panels_h + legend_h + caption_h), layout="constrained")
    top, legend_fig, caption_fig = fig.subfigures(
        3, 1, height_ratios=[panels_h, legend_h, caption_h], hspace=0)
    axes = np.atleast_2d(top.subplots(n_rows, n_cols, squeeze=False))
    return _Canvas(fig, axes, legend_fig, caption_fig, text)


def _with_provenance(res: MatrixResults, caption: str) -> str:
    """The caption, plus a warning when the runs come from several commits / a dirty tree."""
    note = provenance(res).caption_note()
    return f"{caption} {note}" if note else caption


def panel_canvas(res: MatrixResults, n_legend: int, caption: str
                  ) -> tuple[_Canvas, dict[str, Axes]]:
    """One panel per dataset, up to three per row."""
    panels = res.panels
    n_cols = min(3, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    canvas = _canvas(n_rows, n_cols, n_legend, _with_provenance(res, caption))
    flat = list(canvas.axes.flat)
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    return canvas, dict(zip(panels, flat))


def _draw_lines(ax: Axes, data: pd.DataFrame, x: str, y: str, variants: pd.DataFrame,
                colours: dict[str, object] | None = None,
                labels: Callable[[str], str] | None = None,
                bounds: tuple[float, float] | None = None, **kws: object) -> None:
    """Mean-over-seeds line of each variant present in ``data``, with either a thin line
    per seed (≤ SEED_LINES_MAX seeds) or the t-interval band of the mean (more seeds).

    ``bounds`` clips the band to the values the quantity can take (accuracy: 0-100%).
    With two seeds the t-interval is ±12.7 standard errors and would otherwise reach far
    below 0% and above 100%, stretching the axis until the mean lines are unreadable.
    """
    errorbar: Callable[[np.ndarray], tuple[float, float]] = t_interval
    if bounds is not None:
        lo, hi = bounds

        def errorbar(values: np.ndarray) -> tuple[float, float]:
            a, b = t_interval(values)
            return (min(max(a, lo), hi), min(max(b, lo), hi))

    # Many overlapping bands turn into one mud-coloured block: fainter bands past 4 lines.
    kws.setdefault("err_kws", {"alpha": 0.2 if len(variants) <= 4 else 0.1})
    for variant, row in variants.iterrows():
        sub = data.loc[data["variant"] == variant]
        if sub.empty:
            continue
        colour = colours[variant] if colours else row["colour"]
        dash = row["dash"] if not colours else "-"
        n_seeds = sub["seed"].nunique()
        few = n_seeds <= SEED_LINES_MAX
        if few and n_seeds > 1:  # one seed: the mean line is that seed
            _draw_seed_lines(ax, sub, x, y, colour, dash, str(variant))
        sns.lineplot(data=sub, x=x, y=y, ax=ax, estimator="mean",
                     errorbar=None if few else errorbar, color=colour, linestyle=dash,
                     label=labels(variant) if labels else variant, legend=False, **kws)


def _draw_seed_lines(ax: Axes, sub: pd.DataFrame, x: str, y: str, colour: object,
                     dash: object, variant: str) -> None:
    """One thin, faint line per seed under the mean line (gid ``seed:<variant>:<seed>``)."""
    for seed, one in sub.groupby("seed", observed=True):
        one = one.sort_values(x)
        ax.plot(one[x].to_numpy(), one[y].to_numpy(), color=colour, linestyle=dash, lw=0.7,
                alpha=0.45, zorder=1.5, label="_seed", gid=f"seed:{variant}:{int(seed)}")


def _variant_handles(variants: pd.DataFrame) -> list[Line2D]:
    return [Line2D([], [], color=row["colour"], linestyle=row["dash"], lw=2, label=v)
            for v, row in variants.iterrows()]


def finish_figure(canvas: _Canvas, res: MatrixResults, title: str, handles: list[Line2D],
            out_dir: Path | None, stem: str, legend_title: str | None = None) -> Figure:
    """Suptitle with the matrix name, legend and caption strips, then save."""
    fig = canvas.fig
    fig.suptitle(f"{title} — matrix “{res.matrix}”", fontweight="bold")
    if handles:
        canvas.legend_fig.legend(handles=handles, loc="center", frameon=False,
                                 ncols=min(len(handles), LEGEND_COLS), title=legend_title)
    canvas.caption_fig.text(0.5, 1.0, canvas.caption, ha="center", va="top", fontsize=8.5,
                            color="#333333", gid="caption")
    if out_dir is not None:
        save(fig, Path(out_dir), stem)
    return fig


def figure_legend(fig: Figure) -> list[str]:
    """The labels of a figure's legend (it lives in the legend sub-figure)."""
    return [t.get_text() for sub in fig.subfigs for leg in sub.legends for t in leg.get_texts()]


def figure_caption(fig: Figure) -> str:
    """The caption under a figure, unwrapped to one line."""
    texts = [t.get_text() for sub in fig.subfigs for t in sub.texts if t.get_gid() == "caption"]
    return " ".join(" ".join(texts).split())


def save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Save ``fig`` as ``stem.png`` (150 dpi) and ``stem.pdf``, each written atomically.

    No creation date in the PDF: the same CSVs then give byte-identical files, so
    regenerating committed figures shows no spurious change in git.
    """
    paths = []
    for fmt in ("png", "pdf"):
        path = out_dir / f"{stem}.{fmt}"
        meta = {"CreationDate": None} if fmt == "pdf" else None
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight", metadata=meta)
        paths.append(path)
    return paths


def _percent(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(test_acc_pct=df["test_acc"] * 100.0)


def _devices_text(res: MatrixResults) -> str:
    devices = sorted({d for d in res.runs.loc[res.runs["included"], "device"] if d})
    if not devices:
        return "Device not recorded."
    if len(devices) == 1:
        return f"All runs on {devices[0]}."
    return (f"Runs used different devices ({', '.join(devices)}): wall-clock is only "
            "comparable between runs on the same device.")


# ------------------------------------------------------------------------ figures


def accuracy_vs_epoch(res: MatrixResults, out_dir: Path | None = None) -> Figure:
    """Figure 2: test accuracy vs epoch, one panel per dataset, one line per arm."""
    variants = variant_table(res)
    data = _percent(res.epochs)
    caption = ("Test accuracy on the whole test split after each epoch (epoch 0 = before "
               f"training). {band_text(res.epochs, clip=True)}")
    with paper_style():
        canvas, axes = panel_canvas(res, len(variants), caption)
        for panel, ax in axes.items():
            sub = data.loc[data["panel"] == panel]
            _draw_lines(ax, sub, "epoch", "test_acc_pct", variants, bounds=ACC_BOUNDS)
            ax.set(title=res.panel_title(panel), xlabel="epoch", ylabel="test accuracy (%)")
            ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
        return finish_figure(canvas, res, "Figure 2 · Test accuracy vs epoch",
                       _variant_handles(variants), out_dir, STEMS["fig2"])


def default_ema_span(res: MatrixResults) -> int:
    """A quarter epoch of the dataset with the fewest steps per epoch, within [1, 100].

    Long enough to average out mini-batch noise, short enough to keep the shape of the
    first epochs (where the samplers differ most); one span for all panels so the caption
    states a single number.
    """
    steps = res.iterations.groupby(["run_id", "epoch"], observed=True)["iteration"].count()
    per_epoch = int(steps.groupby(level=0, observed=True).max().min()) if len(steps) else 1
    return int(min(100, max(1, round(per_epoch / 4))))


def smoothed_losses(res: MatrixResults, span: int) -> pd.DataFrame:
    """Per-run EMA of the training loss, thinned to at most MAX_POINTS iterations per run.

    Smoothing happens per run *before* averaging seeds, so the band shows seed-to-seed
    spread of the trend, not mini-batch noise. ``adjust=True`` avoids the start-up bias
    of a recursively initialised EMA.
    """
    it = res.iterations.sort_values(["run_id", "iteration"])
    it = it.assign(loss_ema=it.groupby("run_id", observed=True)["loss"].transform(
        lambda s: s.ewm(span=span, adjust=True).mean()))
    # Thin per run (runs of one dataset share a length, so seeds stay on one grid).
    last = it.groupby("run_id", observed=True)["iteration"].transform("max")
    step = np.maximum(1, np.ceil(last / MAX_POINTS)).astype(int)
    keep = (it["iteration"] % step == 0) | (it["iteration"] == 1) | (it["iteration"] == last)
    return it.loc[keep]


def loss_vs_iteration(res: MatrixResults, out_dir: Path | None = None,
                      ema_span: int | None = None) -> Figure:
    """Figure 3: training loss vs iteration (EMA-smoothed), one panel per dataset."""
    span = ema_span or default_ema_span(res)
    data = smoothed_losses(res, span)
    variants = variant_table(res)
    caption = (
        f"Mean cross-entropy of the mini-batch each arm trained on, smoothed per run by an "
        f"exponential moving average with span {span} iterations (α = 2/(span+1)), then "
        f"averaged over seeds. {band_text(res.epochs)} Arms that choose their batches (IMPON, Selective "
        "Backprop, ...) report the loss of the examples they chose, so their curves are not "
        "estimates of the loss over the whole training set: higher than uniform sampling's "
        "by construction when they pick high-loss examples, lower when they pick low ones. The y-axis is scaled to the mean lines; bands may "
        "extend beyond it.")
    with paper_style():
        canvas, axes = panel_canvas(res, len(variants), caption)
        for panel, ax in axes.items():
            sub = data.loc[data["panel"] == panel]
            _draw_lines(ax, sub, "iteration", "loss_ema", variants)
            # Limits from the mean lines, not the bands: with 2-3 seeds a t-band can be
            # wide enough to squash every line into a corner (and below zero).
            means = sub.groupby(["variant", "iteration"], observed=True)["loss_ema"].mean()
            if len(means):
                ax.set_ylim(0.0, 1.05 * float(means.max()))
            ax.set(title=res.panel_title(panel), xlabel="iteration (optimizer step)",
                   ylabel=f"training loss (EMA, span {span})")
        return finish_figure(canvas, res, "Figure 3 · Training loss vs iteration",
                       _variant_handles(variants), out_dir, STEMS["fig3"])


def _cost_figure(res: MatrixResults, x: str, xlabel: str, caption: str, title: str,
                 stem: str, out_dir: Path | None, formatter: mticker.Formatter) -> Figure:
    """Accuracy against a cumulative cost, averaging both coordinates per epoch.

    Seeds reach epoch e at slightly different costs (time varies; Selective Backprop's
    forwards vary), so x is the seed mean of the cost at epoch e, y the seed mean of the
    accuracy at epoch e, band the t-interval of that accuracy.
    """
    data = _percent(res.epochs)
    data = data.assign(x_mean=data.groupby(["panel", "variant", "epoch"], observed=True)[x]
                       .transform("mean"))
    variants = variant_table(res)
    with paper_style():
        canvas, axes = panel_canvas(res, len(variants), caption)
        for panel, ax in axes.items():
            sub = data.loc[data["panel"] == panel]
            _draw_lines(ax, sub, "x_mean", "test_acc_pct", variants, bounds=ACC_BOUNDS,
                        marker="o", markersize=3)
            ax.set(title=res.panel_title(panel), xlabel=xlabel, ylabel="test accuracy (%)")
            ax.xaxis.set_major_formatter(formatter)
        return finish_figure(canvas, res, title, _variant_handles(variants), out_dir, stem)


def accuracy_vs_seconds(res: MatrixResults, out_dir: Path | None = None) -> Figure:
    """Accuracy vs cumulative training wall-clock: what a method costs in time."""
    caption = ("Test accuracy against cumulative training wall-clock seconds (sum of "
               "`train_seconds`; evaluation time excluded, as it is the same for every arm). "
               "One marker per epoch; x = mean over seeds of the time at that epoch. "
               f"{band_text(res.epochs, clip=True)} {_devices_text(res)}")
    return _cost_figure(res, "cum_train_seconds", "training wall-clock (s, cumulative)",
                        caption, "Accuracy vs wall-clock", STEMS["seconds"], out_dir,
                        mticker.StrMethodFormatter("{x:,.0f}"))


def _count_figure(res: MatrixResults, column: str, noun: str, what: str,
                  out_dir: Path | None, caption_noun: str | None = None) -> Figure:
    """Accuracy against a cumulative example count (``column``), one marker per epoch."""
    caption = (f"Test accuracy against the cumulative number of examples "
               f"{caption_noun or noun} "
               f"(column `{column}`: {what}). One marker per epoch; x = mean over seeds at "
               f"that epoch. {band_text(res.epochs, clip=True)}")
    return _cost_figure(res, column, f"examples {noun} (cumulative)", caption,
                        f"Accuracy vs examples {noun}", STEMS[column], out_dir,
                        mticker.EngFormatter(sep=""))


def accuracy_vs_forwards(res: MatrixResults, out_dir: Path | None = None) -> Figure:
    """Accuracy vs examples forwarded: the compute importance sampling really spends."""
    return _count_figure(res, "forwards", "forwarded",
                         "training forwards plus any forwards spent selecting or scoring "
                         "examples", out_dir, caption_noun="passed forward")


def accuracy_vs_backprops(res: MatrixResults, out_dir: Path | None = None) -> Figure:
    """Accuracy vs examples back-propagated: the cost selection methods claim to save.

    Why beside the forwards figure: a method that selects by scoring spends forwards to
    save backprops (Selective Backprop, RHO-LOSS), one that prunes saves both (InfoBatch);
    only the two axes together show which price was paid.
    """
    return _count_figure(res, "backprops", "back-propagated",
                         "the target model's training examples plus any auxiliary model's, "
                         "e.g. RHO-LOSS's irreducible-loss model", out_dir)


# ------------------------------------------------------------------- bank ablation


def ablation_arms(res: MatrixResults) -> dict[str, list[int]]:
    """Arms with at least two bank sizes (in some dataset) -> their sorted bank sizes."""
    df = res.epochs.dropna(subset=["bank_size"])
    sizes = df.groupby(["arm", "panel"], observed=True)["bank_size"].unique()
    arms: dict[str, set[int]] = {}
    for (arm, _), values in sizes.items():
        if len(values) >= 2:
            arms.setdefault(arm, set()).update(int(v) for v in values)
    return {a: sorted(arms[a]) for a in arm_order(arms, res.arm_styles)}


def ablation_skip_reason(res: MatrixResults) -> str | None:
    """Why Figure 4 / the ablation summary are not drawn, or None when they are."""
    if ablation_arms(res):
        return None
    banks = res.epochs.dropna(subset=["bank_size"]).groupby("arm")["bank_size"].unique()
    if banks.empty:
        return "no arm has a bank size (no run of a sampler with a bank)"
    found = "; ".join(f"{a}: {', '.join(str(int(b)) for b in sorted(v))}"
                      for a, v in banks.items())
    return f"needs ≥2 bank sizes for one arm on one dataset; found {found}"


def _ablation_canvas(res: MatrixResults, arms: dict[str, list[int]], n_legend: int,
                     caption: str, legend_title: str | None = None
                     ) -> tuple[_Canvas, dict[tuple[str, str], Axes]]:
    """Rows = ablated arms, columns = the datasets on which they were run with a bank."""
    banked = res.epochs.dropna(subset=["bank_size"])
    panels = [p for p in res.panels
              if banked.loc[banked["panel"] == p, "arm"].isin(list(arms)).any()]
    canvas = _canvas(len(arms), len(panels), n_legend, _with_provenance(res, caption),
                     legend_title)
    return canvas, {(arm, panel): canvas.axes[i, j] for i, arm in enumerate(arms)
                    for j, panel in enumerate(panels)}


def bank_size_curves(res: MatrixResults, out_dir: Path | None = None) -> Figure | None:
    """Figure 4: test accuracy vs epoch, one line per bank size (None if no ablation).

    Arms without a bank (SGD, ...) on the same dataset are drawn thin and dashed as
    references, so the reader sees where "bank size = batch size = uniform" should land.
    """
    arms = ablation_arms(res)
    if not arms:
        return None
    data = _percent(res.epochs)
    all_variants = variant_table(res)
    palette = bank_palette([b for sizes in arms.values() for b in sizes])
    refs = all_variants.loc[all_variants["bank_size"].isna()]
    handles = [Line2D([], [], color=palette[n], lw=2, label=f"N={n}") for n in sorted(palette)]
    handles += [Line2D([], [], color=row["colour"], lw=1.0, linestyle="--",
                       label=f"{v} (reference)") for v, row in refs.iterrows()]
    caption = ("Bank-size ablation: one line per bank size N (the number of random "
               f"candidates scored at each step to pick the batch). "
               f"{band_text(res.epochs.dropna(subset=['bank_size']), clip=True)} Dashed: "
               "arms without a bank on the same dataset, mean over seeds only.")
    with paper_style():
        canvas, axes = _ablation_canvas(res, arms, len(handles), caption, "bank size N")
        for (arm, panel), ax in axes.items():
            sub = data.loc[data["panel"] == panel]
            mine = all_variants.loc[(all_variants["arm"] == arm)
                                    & all_variants["bank_size"].notna()]
            colours = {v: palette[int(row["bank_size"])] for v, row in mine.iterrows()}
            _draw_lines(ax, sub, "epoch", "test_acc_pct", mine, colours=colours,
                        bounds=ACC_BOUNDS, labels=lambda v, arm=arm: v.removeprefix(arm).strip(" ()") or v)
            for variant, row in refs.iterrows():
                ref = sub.loc[sub["variant"] == variant]
                if not ref.empty:
                    sns.lineplot(data=ref, x="epoch", y="test_acc_pct", ax=ax, errorbar=None,
                                 color=row["colour"], linestyle="--", lw=1.0,
                                 label=f"{variant} (reference)", legend=False)
            ax.set(title=f"{arm} — {res.panel_title(panel, list(mine.index))}",
                   xlabel="epoch", ylabel="test accuracy (%)")
            ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
        return finish_figure(canvas, res, "Figure 4 · Test accuracy vs epoch per bank size",
                       handles, out_dir, STEMS["fig4"], legend_title="bank size N")


def _checkpoint_labels(points: pd.DataFrame) -> dict[str, str]:
    """Checkpoint -> legend label; "epoch k" is dropped when it is every run's last epoch."""
    finals = points.loc[points["checkpoint"] == "final", "epoch"]
    lo, hi = int(finals.min()), int(finals.max())
    labels = {}
    for cp in points["checkpoint"].unique():
        if cp == "final":
            labels[cp] = f"final (epoch {lo})" if lo == hi else f"final (epochs {lo}–{hi})"
        elif not (lo == hi and int(cp.split()[1]) >= lo):
            labels[cp] = cp
    return labels


def ablation_summary(res: MatrixResults, out_dir: Path | None = None) -> Figure | None:
    """Accuracy at epochs 1, 5 and final against bank size (None if no ablation)."""
    arms = ablation_arms(res)
    if not arms:
        return None
    points = _percent(checkpoints(res.epochs.dropna(subset=["bank_size"])))
    points["bank_size"] = points["bank_size"].astype(float)
    labels = _checkpoint_labels(points)
    palette = checkpoint_palette(list(labels.values()))
    handles = [Line2D([], [], color=palette[lbl], marker="o", lw=2, label=lbl)
               for lbl in labels.values()]
    counts = points.groupby(["panel", "variant", "checkpoint"])["seed"].nunique()
    spread = ("small dots: the individual seeds (with ≤ 3 seeds a 95% t-interval would be "
              "too wide to read)." if (counts <= SEED_LINES_MAX).all() else
              "error bar: 95% Student-t confidence interval of that mean (with ≤ 3 seeds, "
              "dots for the individual seeds instead).")
    caption = ("Test accuracy at fixed epochs against bank size N (log scale). Marker: mean "
               f"over seeds; {spread}")
    with paper_style():
        canvas, axes = _ablation_canvas(res, arms, len(handles), caption)
        for (arm, panel), ax in axes.items():
            sub = points.loc[(points["panel"] == panel) & (points["arm"] == arm)]
            for cp, label in labels.items():
                cp_data = sub.loc[sub["checkpoint"] == cp]
                if cp_data.empty:
                    continue
                few = cp_data.groupby("bank_size")["seed"].nunique().max() <= SEED_LINES_MAX
                sns.lineplot(data=cp_data, x="bank_size", y="test_acc_pct", ax=ax,
                             estimator="mean", errorbar=None if few else t_interval,
                             err_style="bars", marker="o", color=palette[label], label=label,
                             legend=False, err_kws={"capsize": 3})
                if few:  # each seed a small faint dot instead of a ±12.7-SE error bar
                    ax.scatter(cp_data["bank_size"], cp_data["test_acc_pct"], s=9,
                               color=palette[label], alpha=0.5, linewidths=0, zorder=1.5,
                               label="_seed", gid="seed")
            sizes = arms[arm]
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.xaxis.set_minor_locator(mticker.NullLocator())
            variants = sub["variant"].unique().tolist()
            ax.set(title=f"{arm} — {res.panel_title(panel, variants)}",
                   xlabel="bank size N", ylabel="test accuracy (%)")
        return finish_figure(canvas, res, "Bank-size ablation summary", handles, out_dir,
                       STEMS["ablation"])


# ------------------------------------------------------------------ paired differences


def paired_difference_vs_epoch(res: MatrixResults, pairs: list[tuple[str, str]],
                               out_dir: Path | None = None) -> Figure | None:
    """Test-accuracy difference arm − reference per epoch, runs paired by seed.

    One column per dataset, one row per reference arm (so "vs sgd" and "vs its same-lr
    control" are not tangled in one panel), a dashed zero line. None without pairs.
    """
    diffs = paired_differences(res, pairs)
    if diffs.empty:
        return None
    diffs = diffs.assign(diff_pp=diffs["diff"] * 100.0)
    variants = variant_table(res)
    refs = list(dict.fromkeys(r for _, r in pairs if r in set(diffs["reference"])))
    panels = [p for p in res.panels if p in set(diffs["panel"])]
    drawn = variants.loc[[v for v in variants.index if v in set(diffs["variant"])]]
    dropped = unpaired_seeds(res, diffs)
    caption = ("Paired difference of test accuracy (arm minus reference, percentage points) "
               "after each epoch: each run is paired with the reference run of the same seed "
               "and dataset (same initialisation and data streams), and the line is the mean "
               f"of the per-seed differences. {band_text(diffs)} Dashed: no difference. "
               + (f"Seeds without a partner, dropped: {'; '.join(dropped)}." if dropped else
                  "Every seed has a partner."))
    with paper_style():
        canvas = _canvas(len(refs), len(panels), len(drawn), _with_provenance(res, caption))
        for i, ref in enumerate(refs):
            for j, panel in enumerate(panels):
                ax = canvas.axes[i, j]
                sub = diffs.loc[(diffs["panel"] == panel) & (diffs["reference"] == ref)]
                ax.axhline(0.0, color="#222222", lw=0.9, ls="--", zorder=1, gid="zero")
                mine = drawn.loc[[v for v in drawn.index if v in set(sub["variant"])]]
                _draw_lines(ax, sub, "epoch", "diff_pp", mine)
                n = sub.groupby("variant")["seed"].nunique()
                seeds = seeds_text(n) if len(n) else "no pairs"
                ax.set(title=f"vs {ref} — {res.datasets.loc[panel, 'label']} — {seeds}",
                       xlabel="epoch", ylabel=f"accuracy − {ref} (pp)")
                ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
        return finish_figure(canvas, res, "Paired difference vs epoch",
                       _variant_handles(drawn), out_dir, STEMS["paired"])


# ------------------------------------------------------------------------- diagnostics


def diagnostics_figure(res: MatrixResults, name: str, out_dir: Path | None = None
                       ) -> Figure | None:
    """Per-epoch health of a sampler (rows = datasets, columns = quantities), as its plot
    traits declare it (``name``: ``diag_<key>``); None when no method of the matrix declares
    it or no included run logged the quantities (e.g. IMPON without ``diagnose_every``)."""
    declared = next((d for d in res.traits.diagnostics() if d.name == name), None)
    if declared is None:
        return None
    title, quantities = declared.title, declared.columns
    present = [q for q in quantities if q.column in res.epochs.columns
               and res.epochs[q.column].notna().any()]
    if not present:
        return None
    cols = [q.column for q in present]
    data = res.epochs.dropna(subset=cols, how="all")
    data = data.loc[data["epoch"] > 0]
    panels = [p for p in res.panels if p in set(data["panel"])]
    variants = variant_table(res)
    drawn = variants.loc[[v for v in variants.index if v in set(data["variant"])]]
    specs = dict(zip(res.runs["run_id"], res.runs["flat_spec"]))
    refs = "Dotted: " + "; ".join(q.chance_text for q in present if q.chance is not None)
    caption = (f"Logged by the sampler once per epoch (mean over the epoch's measurements), "
               f"epochs 1 onwards. {band_text(data)} {refs}.")
    handles = _variant_handles(drawn)
    with paper_style():
        canvas = _canvas(len(panels), len(present), len(handles),
                         _with_provenance(res, caption))
        for i, panel in enumerate(panels):
            sub = data.loc[data["panel"] == panel]
            for j, q in enumerate(present):
                ax = canvas.axes[i, j]
                one = sub.dropna(subset=[q.column])
                mine = drawn.loc[[v for v in drawn.index if v in set(one["variant"])]]
                _draw_lines(ax, one, "epoch", q.column, mine)
                if q.chance is not None:
                    levels: dict[float, str] = {}
                    for run_id, variant in one.groupby("run_id")["variant"].first().items():
                        y = float(evaluate(q.chance, specs.get(run_id, {})))
                        if math.isfinite(y):
                            levels.setdefault(round(y, 6), mine.loc[variant, "colour"])
                    for y, colour in levels.items():
                        ax.axhline(y, color=colour if len(levels) > 1 else "#222222",
                                   lw=1.0, ls=":", zorder=1, gid="reference")
                        # right of the panel, where no curve can run through the text
                        ax.annotate(q.chance_label.format(y=y),
                                    (1.0, y), xycoords=("axes fraction", "data"),
                                    xytext=(3, 0), textcoords="offset points", fontsize=8,
                                    ha="left", va="center", color="#333333")
                n = one.groupby("variant")["seed"].nunique()
                ax.set(title=f"{res.datasets.loc[panel, 'label']} — {seeds_text(n)}",
                       xlabel="epoch", ylabel=q.label)
                ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
        return finish_figure(canvas, res, title, handles, out_dir, declared.stem)


# ------------------------------------------------------------------------- driver


#: Where an output's own report section goes (:attr:`FigureOutputs.sections`).
BEFORE_LEFT_OUT, AT_END = "before_left_out", "end"


@dataclass
class FigureOutputs:
    """What :func:`plots.outputs.make_all` drew (name -> Figure), wrote (name -> figure
    files; ``files``: other files), skipped (-> why); ``listed``: (name, title, stem) of the
    outputs report.md lists under "Figures", in order; ``sections``: place
    (:data:`BEFORE_LEFT_OUT`, :data:`AT_END`) -> report sections (lists of lines)."""

    figures: dict[str, Figure] = field(default_factory=dict)
    written: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)
    listed: list[tuple[str, str, str]] = field(default_factory=list)
    sections: dict[str, list[list[str]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # lines for the user (kept edits)
    ema_span: int | None = None
    comparisons: Comparisons | None = None  # what was paired with what (set by make_plots)
    paired: pd.DataFrame | None = None  # the paired.csv table
