"""Final test accuracy vs training budget: the figure a reader of Arazo et al. 2021 expects.

``figures/budget_accuracy.png|pdf``: one panel per dataset, x = budget f (the fraction of
each epoch trained, RunSpec key ``budget``), y = final test accuracy; one line per arm
through the mean over seeds at each budget, and every seed's own value as a point, so the
spread is visible without a band drawn from three numbers. Drawn only for matrices whose
runs span at least two budgets (runs written before the key existed count as budget 1).

Also the Markdown section appended to ``report.md`` (a table per dataset: mean ± std over
seeds per arm and budget). The figure uses the shared canvas of :mod:`plots.figures`
(panels, a legend strip, a caption strip), so it reads like every other figure; what it
draws depends only on :mod:`plots.aggregate` and :mod:`plots.style`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .aggregate import MatrixResults
from .figures import finish_figure, panel_canvas
from .style import arm_order, arm_palette, paper_style

STEM = "budget_accuracy"
CAPTION = ("Final test accuracy (after the last epoch) vs training budget f: each epoch "
           "trains int(f·n/b) steps, the learning-rate schedule spanning them (Arazo et al. "
           "2021). Line: mean over seeds; points: single seeds.")


def final_accuracy(res: MatrixResults) -> pd.DataFrame:
    """One row per used run: panel, arm, seed, budget, final test accuracy (fraction)."""
    runs = res.runs.loc[res.runs["included"]]
    budget = {r: float(fs.get("budget", 1.0) if fs.get("budget") is not None else 1.0)
              for r, fs in zip(runs["run_id"], runs["flat_spec"])}
    ep = res.epochs
    last = ep.loc[ep.groupby("run_id")["epoch"].idxmax()]
    out = last[["run_id", "panel", "arm", "seed", "epoch", "test_acc"]].copy()
    out["budget"] = out["run_id"].map(budget)
    return out.reset_index(drop=True)


def budget_table(res: MatrixResults) -> pd.DataFrame:
    """Mean, sample std (ddof 1) and seed count of final accuracy per panel, arm, budget."""
    pts = final_accuracy(res)
    return (pts.groupby(["panel", "arm", "budget"])["test_acc"]
            .agg(mean="mean", std="std", seeds="count").reset_index())


def has_budget_axis(res: MatrixResults) -> bool:
    return final_accuracy(res)["budget"].nunique() >= 2


def budget_accuracy(res: MatrixResults, out_dir: Path | None = None) -> Figure | None:
    """The figure (None when the runs do not span two budgets); saved when ``out_dir``."""
    if not has_budget_axis(res):
        return None
    pts = final_accuracy(res)
    table = budget_table(res)
    styles = res.arm_styles
    arms = arm_order(pts["arm"].unique(), styles)
    # the palette of the other figures (arm -> its sampler's family shade), so an arm no
    # method names (unif_sgd_rs2_wor) has one colour in every figure of the matrix
    samplers = dict(zip(res.epochs["arm"].astype(str), res.epochs["sampler"].astype(str)))
    palette = arm_palette(res.epochs["arm"].astype(str), samplers, styles)
    handles = [Line2D([], [], color=palette[arm], marker="o", linewidth=1.6, markersize=4,
                      label=arm) for arm in arms]
    with paper_style():
        # the same canvas as every other figure: panels, then a legend strip, then the caption
        canvas, axes = panel_canvas(res, len(arms), CAPTION)
        for panel, ax in axes.items():
            for k, arm in enumerate(arms):
                colour = palette[arm]
                line = table[(table["panel"] == panel) & (table["arm"] == arm)].sort_values("budget")
                if line.empty:
                    continue
                ax.plot(line["budget"], line["mean"] * 100, marker="o", color=colour, label=arm,
                        linewidth=1.6, markersize=4)
                seeds = pts[(pts["panel"] == panel) & (pts["arm"] == arm)]
                # a small fixed horizontal offset per arm keeps overlapping points apart
                dx = (k - (len(arms) - 1) / 2) * 0.006
                ax.scatter(seeds["budget"] + dx, seeds["test_acc"] * 100, color=colour, s=10,
                           alpha=0.55, linewidths=0, label="_nolegend_")
            budgets = sorted(pts.loc[pts["panel"] == panel, "budget"].unique())
            ax.set_xticks(budgets)
            ax.set_xticklabels([f"{b:g}" for b in budgets])
            ax.set(title=res.panel_title(panel), xlabel="budget f (fraction of each epoch trained)",
                   ylabel="final test accuracy (%)")
        return finish_figure(canvas, res, "Final test accuracy vs budget", handles, out_dir, STEM)


def _cell(mean: float, std: float, seeds: int) -> str:
    text = f"{mean * 100:.1f}"
    if seeds > 1 and not np.isnan(std):
        text += f" ± {std * 100:.1f}"
    return text


def report_section(res: MatrixResults) -> str:
    """Markdown: the figure and, per dataset, final accuracy (%) per arm and budget."""
    table = budget_table(res)
    lines = ["## Accuracy vs budget", "",
             f"![final test accuracy vs budget](figures/{STEM}.png)", "",
             f"PDF: [figures/{STEM}.pdf](figures/{STEM}.pdf). {CAPTION}", ""]
    for panel in res.panels:
        sub = table[table["panel"] == panel]
        budgets = sorted(sub["budget"].unique())
        lines += [f"### {res.panel_title(panel)}", "",
                  "Final test accuracy (%), mean ± std over seeds (seeds per cell in brackets "
                  "when they differ).", "",
                  "| arm | " + " | ".join(f"f = {b:g}" for b in budgets) + " |",
                  "|:---|" + "---:|" * len(budgets)]
        counts = set(sub["seeds"])
        for arm in arm_order(sub["arm"].unique(), res.arm_styles):
            cells = []
            for b in budgets:
                row = sub[(sub["arm"] == arm) & (sub["budget"] == b)]
                if row.empty:
                    cells.append("—")
                    continue
                r = row.iloc[0]
                cell = _cell(r["mean"], r["std"], int(r["seeds"]))
                cells.append(cell + (f" ({int(r['seeds'])})" if len(counts) > 1 else ""))
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
