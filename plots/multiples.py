"""Figures that stay readable with many arms: small multiples and a time-to-accuracy bar chart.

Why: with 13 arms in one panel (``cpu_methods``), Figure 2's lines and the cost figures'
curves overlap so much that no arm can be followed, and 13 colours cannot all be far apart.
Above :data:`MANY_ARMS` arms in a dataset panel, ``python -m plots`` therefore also draws

- :func:`small_multiples`: one panel per method family (the arms of one sampler, or of the
  ``family`` a method's plot traits name), with the reference arm drawn in every panel
  (dashed, in its own colour), so each method is read against the same baseline;
- :func:`time_to_accuracy`: horizontal bars of the training seconds, examples forwarded
  and examples back-propagated each arm needs to reach the leaderboard's targets
  (:func:`plots.leaderboard.targets`), with a marker for arms whose seeds did not all
  reach it.

At or below :data:`MANY_ARMS` the one-panel figures stay readable and these are skipped
(:func:`wants_multiples`; the threshold is fixed by a test).

Families come from the runs' recorded plot traits (``run.json`` key ``plot_traits``,
:mod:`plots.traits`): a ``family`` entry there if a method declares one, else the sampler
name. Nothing here names a method.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .aggregate import MatrixResults, seed_stats
from .figures import SEED_LINES_MAX
from .leaderboard import COSTS, cost_to_target, save_figure, targets
from .style import VARIANT_DASHES, arm_order, arm_palette, paper_style

#: Above this many arm variants in one dataset panel, the small multiples and the
#: time-to-accuracy chart are drawn. GUESS: ~8 lines is where a one-panel figure with a
#: categorical palette stops being readable (and where colour pairs get close in CIEDE2000).
MANY_ARMS = 8

#: Panels per row of the small multiples.
COLUMNS = 4

STEMS = {"multiples": "multiples_test_accuracy_vs_epoch",
         "time_to_accuracy": "time_to_accuracy"}


def arm_count(res: MatrixResults) -> int:
    """The most arm variants any dataset panel of the matrix has."""
    return int(res.epochs.groupby("panel", observed=True)["variant"].nunique().max())


def wants_multiples(res: MatrixResults) -> bool:
    """Whether this matrix gets the many-arm views (more than :data:`MANY_ARMS` arms)."""
    return arm_count(res) > MANY_ARMS


def skip_reason(res: MatrixResults) -> str:
    """Why the many-arm views are not drawn (for the report and the CLI)."""
    return (f"{arm_count(res)} arms per dataset, at most {MANY_ARMS}: the one-panel figures "
            "stay readable")


def family_of(res: MatrixResults, sampler: str) -> str:
    """A sampler's family: its plot traits' ``family`` if declared, else its own name."""
    traits = res.traits.by_sampler.get(sampler) or {}
    family = traits.get("family")
    return str(family) if isinstance(family, str) and family else sampler


def families(res: MatrixResults, reference: str | None) -> dict[str, list[str]]:
    """Family -> its arm variants (legend order), the families in the order of their first
    arm; the reference's own family first. The reference variant itself is not listed (it
    is drawn in every panel); a family holding only the reference is dropped."""
    styles = res.arm_styles
    first = res.epochs.drop_duplicates("variant")
    arms = arm_order(first["arm"].astype(str), styles)
    rank = {a: i for i, a in enumerate(arms)}
    first = first.assign(_rank=first["arm"].map(rank)).sort_values(["_rank", "variant"])
    out: dict[str, list[str]] = {}
    ref_family = None
    for row in first.itertuples(index=False):
        family = family_of(res, str(row.sampler))
        if row.arm == reference:
            ref_family = family
            out.setdefault(family, [])
            continue
        out.setdefault(family, []).append(str(row.variant))
    out = {f: v for f, v in out.items() if v}
    if ref_family in out:
        out = {ref_family: out[ref_family], **{f: v for f, v in out.items() if f != ref_family}}
    return out


def _reference(res: MatrixResults, pairs: list[tuple[str, str]]) -> str | None:
    refs = [r for _, r in pairs]
    return max(dict.fromkeys(refs), key=refs.count) if refs else None


def settings(res: MatrixResults) -> list[str]:
    """The matrix's axes besides dataset, arm, seed and bank size that take several values
    (``budget``, ``optimizer.lr``): each value gets its own row of panels, so a panel holds
    each arm once. (Bank size is a method's own parameter: an arm's bank sizes share its
    panel, told apart by line style.)"""
    return [a for a in res.axes if a not in ("dataset", "arm", "seed", "bank_size")
            and res.epochs[a].astype(str).nunique(dropna=False) > 1]


def _cells(res: MatrixResults, fams: dict[str, list[str]]
           ) -> list[tuple[str, tuple, str, list[str]]]:
    """(panel, setting values, family, variants drawn) per panel of the small multiples, in
    order: dataset, then setting, then family; cells with no variant are left out."""
    axes = settings(res)
    first = res.epochs.drop_duplicates(["panel", "variant"])
    keys = sorted({tuple(str(v) for v in row) for row in
                   first[axes].itertuples(index=False, name=None)}) if axes else [()]
    cells = []
    for panel in res.panels:
        here = first.loc[first["panel"] == panel]
        for key in keys:
            match = np.ones(len(here), dtype=bool)
            for col, value in zip(axes, key):
                match &= (here[col].astype(str) == value).to_numpy()
            present = set(here.loc[match, "variant"])
            for family, variants in fams.items():
                drawn = [v for v in variants if v in present]
                if drawn:
                    cells.append((panel, key, family, drawn))
    return cells


def small_multiples(res: MatrixResults, pairs: list[tuple[str, str]],
                    out_dir: Path | None = None) -> Figure:
    """Test accuracy vs epoch, one panel per method family (per dataset and, when the
    matrix has more, per setting such as the budget), the reference at the same setting in
    each (dashed).

    Thick line: mean over seeds; thin lines: the seeds (at most ``SEED_LINES_MAX`` seeds
    per line, as Figure 2), else a band: the 95% Student-t interval of the mean, clipped
    to 0–100%.
    """
    reference = _reference(res, pairs)
    fams = families(res, reference)
    axes_names = settings(res)
    samplers = dict(zip(res.epochs["arm"].astype(str), res.epochs["sampler"].astype(str)))
    palette = arm_palette(res.epochs["arm"].astype(str), samplers, res.arm_styles)
    arm_of = dict(zip(res.epochs["variant"], res.epochs["arm"].astype(str)))
    curves = seed_stats(res.epochs, ["panel", "variant", "epoch"], "test_acc")
    cells = _cells(res, fams)
    # as Figure 2 (plots.figures.SEED_LINES_MAX): with <= 3 seeds a t-band is too wide to
    # read, so each seed is a thin line instead
    few_seeds = int(curves["n"].max()) <= SEED_LINES_MAX
    rows = list(dict.fromkeys((p, k) for p, k, _, _ in cells))
    if len(rows) == 1:  # one dataset, no setting: the families wrap
        n_cols = min(COLUMNS, len(cells))
        n_rows = math.ceil(len(cells) / n_cols)
        place = list(range(len(cells)))
    else:  # a row per (dataset, setting), a column per family
        columns = list(dict.fromkeys(f for _, _, f, _ in cells))
        n_rows, n_cols = len(rows), len(columns)
        place = [rows.index((p, k)) * n_cols + columns.index(f) for p, k, f, _ in cells]
    ref_rows = res.epochs.loc[res.epochs["arm"] == reference]
    ref_axes = [a for a in axes_names if ref_rows[a].astype(str).nunique(dropna=False) > 1]
    with paper_style():
        fig = Figure(figsize=(3.1 * n_cols, 2.5 * n_rows + 0.6), layout="constrained")
        grid = np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False, sharex=True,
                                          sharey=True).ravel())
        used = set(place)
        for where, (panel, key, family, drawn) in zip(place, cells):
            ax = grid[where]
            setting = dict(zip(axes_names, key))
            ref = ref_rows.loc[ref_rows["panel"] == panel]
            for col in ref_axes:
                ref = ref.loc[ref[col].astype(str) == setting[col]]
            ref_variants = list(dict.fromkeys(ref["variant"]))
            seen: dict[str, int] = {}
            for variant in [*ref_variants, *drawn]:
                c = curves.loc[(curves["panel"] == panel) & (curves["variant"] == variant)]
                arm = arm_of[variant]
                colour = palette[arm]
                is_ref = variant in ref_variants
                nth = seen[arm] = seen.get(arm, -1) + 1  # an arm's 2nd, 3rd bank size
                twice = [arm_of[v] for v in (*ref_variants, *drawn)].count(arm) > 1
                name = variant if twice else arm
                ax.plot(c["epoch"], 100 * c["mean"], color=colour,
                        ls="--" if is_ref else VARIANT_DASHES[nth % len(VARIANT_DASHES)],
                        lw=1.3 if is_ref else 1.8,
                        label=f"{name} (reference)" if is_ref else name)
                if few_seeds:
                    runs = res.epochs.loc[(res.epochs["panel"] == panel)
                                          & (res.epochs["variant"] == variant)]
                    for _, run in runs.groupby("run_id", sort=True):
                        ax.plot(run["epoch"], 100 * run["test_acc"], color=colour, lw=0.6,
                                alpha=0.4, ls="--" if is_ref else "-")
                elif (c["n"] >= 2).any():
                    ax.fill_between(c["epoch"], np.clip(100 * c["lo"], 0, 100),
                                    np.clip(100 * c["hi"], 0, 100), color=colour, alpha=0.15,
                                    lw=0)
            parts = [family]
            if len(res.panels) > 1:
                parts.append(str(res.datasets.loc[panel, "dataset"]))
            parts += [f"{a}={v}" for a, v in setting.items()]
            ax.set_title(" · ".join(parts), fontsize=9.5)
            ax.legend(fontsize=7, loc="lower right", frameon=False)
        for i, ax in enumerate(grid):
            if i not in used:
                ax.set_visible(False)
                continue
            if not any(j in used for j in range(i + n_cols, n_rows * n_cols, n_cols)):
                ax.set_xlabel("epoch")  # the lowest panel of its column
                ax.xaxis.set_tick_params(labelbottom=True)  # sharex hid them above a gap
            if i % n_cols == 0 or (i - 1) not in used:
                ax.set_ylabel("test accuracy (%)")
                ax.yaxis.set_tick_params(labelleft=True)
        label = "; ".join(res.datasets["label"])
        fig.suptitle(f"Test accuracy vs epoch, one panel per method family, reference "
                     f"{reference or '—'} dashed in every panel · {label}\n"
                     + ("thick: mean over seeds, thin: each seed" if few_seeds else
                        "line: mean over seeds, band: 95% Student-t interval"), fontsize=10)
    if out_dir is not None:
        save_figure(fig, out_dir, STEMS["multiples"])
    return fig


def time_to_accuracy(res: MatrixResults, pairs: list[tuple[str, str]],
                     out_dir: Path | None = None) -> Figure:
    """Bars: mean training seconds, forwards and backprops to reach each target accuracy
    (one row of panels per dataset and target); arms whose seeds did not all reach it get
    no bar and the text "not reached (k/n)"."""
    reference = _reference(res, pairs)
    samplers = dict(zip(res.epochs["arm"].astype(str), res.epochs["sampler"].astype(str)))
    palette = arm_palette(res.epochs["arm"].astype(str), samplers, res.arm_styles)
    arm_of = dict(zip(res.epochs["variant"], res.epochs["arm"].astype(str)))
    rows = [(p, t) for p in res.panels for t in targets(res, p, reference)]
    n_variants = arm_count(res)
    with paper_style():
        fig = Figure(figsize=(3.4 * len(COSTS), (0.22 * n_variants + 0.9) * len(rows) + 0.5),
                     layout="constrained")
        axes = fig.subplots(len(rows), len(COSTS), squeeze=False)
        for r, (panel, target) in enumerate(rows):
            epochs = res.epochs.loc[res.epochs["panel"] == panel]
            costs = cost_to_target(epochs, target)
            order = costs.sort_values(COSTS[0][0], kind="stable", na_position="last").index
            for c, (col, name, _) in enumerate(COSTS):
                ax = axes[r, c]
                values = costs.loc[order, col].to_numpy(dtype=float)
                colours = [palette[arm_of[v]] for v in order]
                y = np.arange(len(order))
                ax.barh(y, np.nan_to_num(values), color=colours, height=0.7)
                top = np.nanmax(values) if np.isfinite(values).any() else 1.0
                for i, v in enumerate(order):
                    if not math.isfinite(values[i]):
                        k, n = int(costs.loc[v, "reached"]), int(costs.loc[v, "n"])
                        ax.text(0.01 * top, i, f"not reached ({k}/{n})", va="center",
                                fontsize=7, color="0.35")
                names = [f"{v} (reference)" if arm_of[v] == reference else v for v in order]
                ax.set_yticks(y, names if c == 0 else [""] * len(order))
                ax.invert_yaxis()
                ax.set_xlabel(f"{name} to {100 * target:.0f}%")
                if r == 0 and c == 1:
                    ax.set_title(f"{res.datasets.loc[panel, 'label']}", fontsize=9.5)
        fig.suptitle("Cost to reach a test accuracy (mean over seeds; targets: what the "
                     "reference reaches on every seed, and 80% of it)", fontsize=10)
    if out_dir is not None:
        save_figure(fig, out_dir, STEMS["time_to_accuracy"])
    return fig
