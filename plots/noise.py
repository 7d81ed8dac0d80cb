"""Label noise: how much of what each method trained on carried a wrong label.

Why a figure of its own (and not a sampler's diagnostic): the count comes from the
trainer (epochs.csv ``noisy_frac``, any sampler, see ``benchmarks/noise.py``), so every arm
of a noisy matrix has it. The reference line is the fraction of wrong training labels the
run recorded (``run.json`` -> ``dataset.label_noise.fraction``, the runs table's
``noise_fraction``), what uniform sampling
trains on in expectation: a curve above it trains on mislabeled examples more often than
chance (loss-based selection's known failure), one below it avoids them.
"""
from __future__ import annotations

import math

import matplotlib.ticker as mticker
from matplotlib.figure import Figure

from .aggregate import MatrixResults, seeds_text
from .figures import (_canvas, _draw_lines, _variant_handles, _with_provenance, band_text,
                      finish_figure, variant_table)
from .style import paper_style

COLUMN = "noisy_frac"
STEM = "noisy_fraction_vs_epoch"
TITLE = "Label noise — fraction of trained examples with a wrong label"


def skip_reason(res: MatrixResults) -> str:
    return "no run trained on noisy labels (label_noise)"


def noisy_fraction(res: MatrixResults) -> Figure | None:
    """Per panel (dataset), the per-epoch fraction of trained examples with a wrong label,
    mean over seeds with a 95% band, against the recorded noise fraction (dotted)."""
    if COLUMN not in res.epochs.columns or not res.epochs[COLUMN].notna().any():
        return None
    data = res.epochs.loc[(res.epochs["epoch"] > 0) & res.epochs[COLUMN].notna()]
    panels = [p for p in res.panels if p in set(data["panel"])]
    variants = variant_table(res)
    drawn = variants.loc[[v for v in variants.index if v in set(data["variant"])]]
    recorded = dict(zip(res.runs["run_id"], res.runs["noise_fraction"]))
    caption = ("Each epoch, the share of the examples the method trained on (with repeats) "
               "whose training label is wrong, counted by the trainer. "
               f"{band_text(data)} Dotted: the share of wrong labels in the training set, "
               "what uniform sampling trains on in expectation.")
    handles = _variant_handles(drawn)
    with paper_style():
        canvas = _canvas(len(panels), 1, len(handles), _with_provenance(res, caption))
        for i, panel in enumerate(panels):
            sub = data.loc[data["panel"] == panel]
            ax = canvas.axes[i, 0]
            mine = drawn.loc[[v for v in drawn.index if v in set(sub["variant"])]]
            _draw_lines(ax, sub, "epoch", COLUMN, mine)
            levels = sorted({round(float(f), 6) for run in sub["run_id"].unique()
                             if (f := recorded.get(run)) is not None and not math.isnan(f)})
            for y in levels:
                ax.axhline(y, color="#222222", lw=1.0, ls=":", zorder=1, gid="reference")
                ax.annotate(f"noise {y:.0%}", (1.0, y), xycoords=("axes fraction", "data"),
                            xytext=(3, 0), textcoords="offset points", fontsize=8,
                            ha="left", va="center", color="#333333")
            n = sub.groupby("variant")["seed"].nunique()
            ax.set(title=f"{res.datasets.loc[panel, 'label']} — {seeds_text(n)}",
                   xlabel="epoch", ylabel="trained examples with a wrong label")
            ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0))
            ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
        return finish_figure(canvas, res, TITLE, handles, None, STEM)
