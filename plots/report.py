"""``report.md``: the numbers behind the figures, per dataset, plus the figures inline.

Why a report next to the figures: curves show shape, but a reader comparing methods
wants the numbers (accuracy at fixed epochs, cost to reach an accuracy) with their
spread over seeds, and wants to know which runs are *not* in them.

Conventions (also written into the report itself):
- "mean ± std" is the mean over seeds and the sample standard deviation (ddof = 1);
- cost to reach a level is read at the end of the first epoch whose test accuracy is at
  least the level (one-epoch resolution); an arm gets a number only if *every* seed
  reached the level, otherwise "not reached (k/n)": averaging only the seeds that made
  it would flatter the arm.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import MatrixResults, atomic_path, checkpoints, seed_stats
from .figures import AT_END, BEFORE_LEFT_OUT, FigureOutputs, ablation_arms, variant_table
from .paired import BOOT_RESAMPLES, BOOT_SEED
from . import stats as many
from .setup import arm_table, common_table, provenance
from .traits import render_note

#: Accuracy levels, as fractions of the best final (seed-mean) accuracy on a dataset.
#: Relative levels work for any dataset and run length; the absolute value is printed.
LEVEL_FRACTIONS: tuple[float, ...] = (0.5, 0.75, 0.9)

#: (column in summary, table heading, number format) of the cost-to-reach tables.
COSTS: tuple[tuple[str, str, str], ...] = (
    ("cum_train_seconds", "Training seconds", "{:,.1f}"),
    ("backprops", "Backprops (examples trained on)", "{:,.0f}"),
    ("forwards", "Examples forwarded", "{:,.0f}"),
)

_TOL = 1e-9  # accuracies are read back from CSV: "≥ level" must not fail on rounding


# ---------------------------------------------------------------------- tables (data)


def accuracy_table(res: MatrixResults, panel: str) -> pd.DataFrame:
    """Per variant: seeds and mean/std test accuracy (fraction) at epoch 1, 5 and final.

    Columns: ``variant, n, <checkpoint>_mean, <checkpoint>_std`` for checkpoints
    ``epoch 1``, ``epoch 5``, ``final``; plus ``final_epoch`` (e.g. "30" or "28–30").
    """
    epochs = res.epochs.loc[res.epochs["panel"] == panel]
    points = checkpoints(epochs)
    stats = seed_stats(points, ["variant", "checkpoint"], "test_acc")
    wide = stats.pivot(index="variant", columns="checkpoint", values=["mean", "std"])
    wide.columns = [f"{cp}_{stat}" for stat, cp in wide.columns]
    order = [v for v in variant_table(res, epochs).index]
    table = wide.reindex(order)
    table.insert(0, "n", epochs.groupby("variant")["seed"].nunique().reindex(order))
    finals = points.loc[points["checkpoint"] == "final"].groupby("variant")["epoch"]
    table["final_epoch"] = [_span(finals.min()[v], finals.max()[v]) for v in order]
    return table.reset_index()


def accuracy_levels(res: MatrixResults, panel: str,
                    fractions: Sequence[float] = LEVEL_FRACTIONS
                    ) -> tuple[pd.Series, str, float]:
    """Absolute levels (fraction -> accuracy) for a dataset, the best variant and its accuracy.

    "Best" is the highest seed-mean accuracy at the final epoch over all arms.
    """
    epochs = res.epochs.loc[res.epochs["panel"] == panel]
    final = checkpoints(epochs).query("checkpoint == 'final'")
    means = final.groupby("variant")["test_acc"].mean()
    best = means.idxmax()
    levels = pd.Series({f: f * means.max() for f in fractions}, name="level")
    return levels, str(best), float(means.max())


def cost_to_reach(res: MatrixResults, panel: str,
                  fractions: Sequence[float] = LEVEL_FRACTIONS) -> pd.DataFrame:
    """Per variant x level: cost columns at the first epoch reaching the level, over seeds.

    Columns: ``variant, fraction, level, n, reached`` and ``<cost>_mean``, ``<cost>_std``
    for each cost in COSTS; the means are NaN unless every seed reached the level.
    """
    epochs = res.epochs.loc[res.epochs["panel"] == panel].sort_values(["run_id", "epoch"])
    levels, _, _ = accuracy_levels(res, panel, fractions)
    runs = epochs.groupby("run_id")[["variant", "seed"]].first()
    rows = []
    for fraction, level in levels.items():
        hit = epochs.loc[epochs["test_acc"] >= level - _TOL]
        first = hit.groupby("run_id").head(1).set_index("run_id")
        per_run = runs.join(first[[c for c, _, _ in COSTS]], how="left")
        for variant, group in per_run.groupby("variant", sort=False):
            reached = int(group[COSTS[0][0]].notna().sum())
            row = {"variant": variant, "fraction": fraction, "level": level,
                   "n": len(group), "reached": reached}
            for col, _, _ in COSTS:
                ok = reached == len(group)
                row[f"{col}_mean"] = group[col].mean() if ok else np.nan
                row[f"{col}_std"] = group[col].std(ddof=1) if ok and len(group) > 1 else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def ablation_table(res: MatrixResults, panel: str, arm: str) -> pd.DataFrame:
    """Per bank size of one arm: seeds and mean/std accuracy at epoch 1, 5 and final."""
    epochs = res.epochs.loc[(res.epochs["panel"] == panel) & (res.epochs["arm"] == arm)
                            & res.epochs["bank_size"].notna()]
    if epochs.empty:
        return pd.DataFrame()
    points = checkpoints(epochs)
    stats = seed_stats(points, ["variant", "bank_size", "checkpoint"], "test_acc")
    wide = stats.pivot(index=["bank_size", "variant"], columns="checkpoint",
                       values=["mean", "std"])
    wide.columns = [f"{cp}_{stat}" for stat, cp in wide.columns]
    wide = wide.sort_index().reset_index()
    wide.insert(2, "n", wide["variant"].map(epochs.groupby("variant")["seed"].nunique()))
    return wide


# ------------------------------------------------------------------------ formatting


def _span(lo: float, hi: float) -> str:
    return f"{int(lo)}" if lo == hi else f"{int(lo)}–{int(hi)}"


def fmt_mean_std(mean: float, std: float, fmt: str = "{:.2f}", scale: float = 1.0) -> str:
    """``"45.00 ± 1.41"``; just the mean when std is undefined (one seed); "—" when missing."""
    if mean is None or pd.isna(mean):
        return "—"
    text = fmt.format(mean * scale)
    if std is not None and not pd.isna(std):
        text += f" ± {fmt.format(std * scale)}"
    return text


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]],
             numeric: bool = True) -> str:
    """A GitHub-flavoured Markdown table (no dependency on ``tabulate``).

    The first column is left-aligned; the others right-aligned when ``numeric``.
    """
    def cell(x: object) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join(":---" if i == 0 or not numeric else "---:"
                            for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _accuracy_section(res: MatrixResults, panel: str) -> list[str]:
    table = accuracy_table(res, panel)
    final_epochs = sorted(set(table["final_epoch"]))
    final_head = f"final (epoch {final_epochs[0]})" if len(final_epochs) == 1 else "final"
    header = ["arm", "seeds", "epoch 1", "epoch 5", final_head]
    if len(final_epochs) > 1:
        header.append("final epoch")
    rows = []
    for _, r in table.iterrows():
        row = [r["variant"], int(r["n"])]
        for cp in ("epoch 1", "epoch 5", "final"):
            row.append(fmt_mean_std(r.get(f"{cp}_mean"), r.get(f"{cp}_std"), scale=100))
        if len(final_epochs) > 1:
            row.append(r["final_epoch"])
        rows.append(row)
    return ["**Test accuracy (%)**, mean ± std over seeds:", "", md_table(header, rows), ""]


def _cost_section(res: MatrixResults, panel: str) -> list[str]:
    levels, best, best_acc = accuracy_levels(res, panel)
    costs = cost_to_reach(res, panel)
    order = list(variant_table(res, res.epochs.loc[res.epochs["panel"] == panel]).index)
    level_heads = [f"≥ {lvl * 100:.2f}% ({frac:.0%} of best)" for frac, lvl in levels.items()]
    fractions = ", ".join(f"{f:.0%}" for f in levels.index)
    absolute = ", ".join(f"{lvl * 100:.2f}%" for lvl in levels)
    out = [f"**Cost to reach an accuracy level.** Levels are {fractions} of the best final "
           f"mean accuracy on this dataset ({best_acc * 100:.2f}%, `{best}`), i.e. {absolute} "
           "test accuracy. "
           "Cost is read at the end of the first epoch whose accuracy reaches the level; "
           "mean ± std over seeds. *not reached (k/n)*: only k of n seeds got there, and no "
           "number is given, because averaging only the seeds that did would flatter the arm.",
           ""]
    for col, title, fmt in COSTS:
        rows = []
        for variant in order:
            row = [variant]
            for frac in levels.index:
                r = costs.loc[(costs["variant"] == variant) & (costs["fraction"] == frac)]
                if r.empty:
                    row.append("—")
                    continue
                r = r.iloc[0]
                if r["reached"] < r["n"]:
                    row.append(f"not reached ({int(r['reached'])}/{int(r['n'])})")
                else:
                    row.append(fmt_mean_std(r[f"{col}_mean"], r[f"{col}_std"], fmt))
            rows.append(row)
        out += [f"*{title} to reach*:", "", md_table(["arm", *level_heads], rows), ""]
    return out


def _ablation_section(res: MatrixResults) -> list[str]:
    arms = ablation_arms(res)
    if not arms:
        return []
    out = ["## Bank-size ablation", "",
           "Test accuracy (%) by bank size N, mean ± std over seeds.", ""]
    for panel in res.panels:
        for arm in arms:
            table = ablation_table(res, panel, arm)
            if table.empty:
                continue
            rows = [[r["variant"], int(r["bank_size"]), int(r["n"]),
                     *[fmt_mean_std(r.get(f"{cp}_mean"), r.get(f"{cp}_std"), scale=100)
                       for cp in ("epoch 1", "epoch 5", "final")]]
                    for _, r in table.iterrows()]
            out += [f"### {arm} — {res.panel_title(panel, list(table['variant']))}", "",
                    md_table(["variant", "N", "seeds", "epoch 1", "epoch 5", "final"], rows),
                    ""]
    return out


def _setup_section(res: MatrixResults) -> list[str]:
    """The setup table the report opens with, read from the runs' run.json."""
    prov = provenance(res)
    arms = arm_table(prov)
    has_budget = (arms["budget"] != "—").any()
    header = ["arm", "optimizer", "lr", "schedule", "sampler and parameters"]
    header += ["budget"] if has_budget else []
    rows = [[r["arm"], r["optimizer"], r["lr"], r["schedule"], r["sampler"]]
            + ([r["budget"]] if has_budget else []) for _, r in arms.iterrows()]
    out = ["## Setup", "", "As recorded by each run (`run.json`); several values of one item "
           "are separated by “/”.", "", md_table(header, rows, numeric=False), "",
           md_table(["", "value"], common_table(res, prov), numeric=False), ""]
    if prov.mixed:
        listing = ", ".join(f"`{str(c)[:10]}` ({n} runs)" for c, n in
                            prov.commits.groupby("commit", dropna=False)["runs"].sum().items())
        out += [f"> **Warning: runs from different commits** ({listing}). Differences "
                "between arms may be code changes, not method differences.", ""]
    elif prov.dirty:
        out += ["> **Warning:** some runs were made from a working tree with uncommitted "
                "changes (dirty); their code is not exactly the commit named.", ""]
    return out


def _fmt_pp(x: float) -> str:
    return "—" if x is None or pd.isna(x) else f"{x * 100:+.2f}"


def _paired_section(res: MatrixResults, figures: FigureOutputs | None, panel: str
                    ) -> list[str]:
    if figures is None or figures.paired is None or figures.paired.empty:
        return []
    table = figures.paired.loc[figures.paired["panel"] == panel]
    if table.empty:
        return []
    table = many.add_holm(table)  # per checkpoint: the k arms of this panel (plots.stats)
    rows = []
    for _, r in table.iterrows():
        t_ci = "—" if pd.isna(r["t_lo"]) else f"[{_fmt_pp(r['t_lo'])}, {_fmt_pp(r['t_hi'])}]"
        b_ci = "—" if pd.isna(r["boot_lo"]) else \
            f"[{_fmt_pp(r['boot_lo'])}, {_fmt_pp(r['boot_hi'])}]"
        at = r["checkpoint"] if r["checkpoint"] != "final" else f"final ({r['epoch']})"
        rows.append([r["variant"], r["reference"], at, int(r["n"]),
                     _fmt_pp(r["mean"]) + (" ✱" if r["excludes_zero"] else ""), t_ci, b_ci,
                     f"{int(r['n_agree'])}/{int(r['n'])}",
                     many.fmt_p(r["p_holm"]) + (" †" if r["holm_survives"] else "")])
    out = ["**Paired differences of test accuracy** (arm − reference, percentage points; "
           "runs paired by seed: same initialisation and data streams). 95% CI: paired "
           f"Student-t; bootstrap: percentile, {BOOT_RESAMPLES:,} resamples of the seeds "
           f"(generator seed {BOOT_SEED}); with few seeds it cannot be wider than the spread "
           "of the differences and is usually narrower than the t-interval, which is the "
           "one to trust. ✱: the t-interval "
           "excludes 0. *sign*: seeds whose difference has the sign of the mean. "
           "*p (Holm)*: the paired-t p-value adjusted by Holm's step-down method over the "
           "comparisons of this dataset at the same epoch (a 95% interval alone excludes 0 "
           "by chance ever more often as arms are added); †: still significant at a "
           f"{many.ALPHA:.0%} family-wise error rate. "
           f"Pairs from {figures.comparisons.source if figures.comparisons else '?'}.", "",
           md_table(["arm", "vs", "at", "pairs", "mean diff", "95% CI (t)",
                     "95% CI (bootstrap)", "sign", "p (Holm)"], rows), ""]
    final = table.loc[table["checkpoint"] == "final"]
    if final["p_holm"].notna().any():
        kept = [f"{v} vs {r}" for v, r, ok in
                zip(final["variant"], final["reference"], final["holm_survives"]) if ok]
        tested = int(final["p_holm"].notna().sum())
        out += [f"At the final epoch, {len(kept)} of {tested} comparison"
                f"{'s' if tested != 1 else ''} {'survives' if len(kept) == 1 else 'survive'} "
                f"Holm's adjustment at {many.ALPHA:.0%}"
                + (f": {', '.join(kept)}." if kept else "."), ""]
    dropped = sorted({u for u in table["unpaired"] if isinstance(u, str) and u})
    if dropped:
        out += ["Unpaired seeds, dropped from this table: " + "; ".join(dropped) + ".", ""]
    return out


def _across_section(res: MatrixResults, figures: FigureOutputs | None) -> list[str]:
    """IQM and probability of improvement over every dataset and seed (:mod:`plots.stats`,
    as rliable computes them); only when some arm has more than one run to aggregate."""
    if res.epochs.groupby("variant", observed=True)["run_id"].nunique().max() < 2:
        return []
    pairs = figures.comparisons.pairs if figures is not None and figures.comparisons else []
    refs = [r for _, r in pairs]
    main = max(dict.fromkeys(refs), key=refs.count) if refs else None
    pairs = [(a, r) for a, r in pairs if r == main]
    agg = many.aggregate_table(res.epochs, pairs,
                               [a for a in res.axes if a not in ("dataset", "arm", "seed")])
    order = list(variant_table(res).index)
    agg = agg.set_index("variant").reindex(order).dropna(subset=["iqm"])

    def ci(mean: float, lo: float, hi: float, scale: float, fmt: str) -> str:
        if pd.isna(mean):
            return "—"
        text = fmt.format(mean * scale)
        return text if lo == hi else f"{text} [{fmt.format(lo * scale)}, {fmt.format(hi * scale)}]"

    rows = [[v, int(r["tasks"]), int(r["runs"]),
             ci(r["iqm"], r["iqm_lo"], r["iqm_hi"], 100, "{:.2f}"),
             ci(r["poi"], r["poi_lo"], r["poi_hi"], 1, "{:.2f}")] for v, r in agg.iterrows()]
    n = len(res.panels)
    return ["## Across datasets and seeds", "",
            "Final test accuracy over every run of "
            + (f"the {n} datasets: " if n > 1 else "the dataset: ") +
            "interquartile mean (IQM: the mean of the middle 50% of runs; equal to the mean "
            "with 3 or fewer runs) and the probability that a run of the arm ends above a run "
            f"of {main or 'the reference'} on the same dataset and setting (ties count ½; "
            "0.5: no difference), each with a 95% stratified-bootstrap interval (runs "
            f"resampled within each dataset, {many.BOOT_REPS:,} resamples, percentile; "
            "rliable's `aggregate_iqm`, `probability_of_improvement` and "
            "`get_interval_estimates`, computed by `plots/stats.py`).", "",
            md_table(["arm", "datasets", "runs", "IQM % [95% CI]",
                      f"P(arm > {main or 'reference'}) [95% CI]"], rows), ""]


def _method_notes(res: MatrixResults) -> list[str]:
    """What a reader must know about a method to read its row fairly, with its numbers.

    Why here: RHO-LOSS trains its target model on half the data and pays for an auxiliary
    model before its first step; a table row alone would hide both. The text is the
    method's own (its plot traits' ``note``); the numbers in it are read from the runs' own
    files (spec and ``epochs.csv``), not restated from the code. Methods in their report
    rank, arms by name.
    """
    runs = res.runs.loc[res.runs["included"]]
    out: list[str] = []
    for sampler in sorted(set(runs["sampler"]), key=lambda s: (res.traits.report_rank(s), s)):
        parts, values = res.traits.note(sampler)
        if not parts:
            continue
        for arm in sorted(set(runs.loc[runs["sampler"] == sampler, "arm"])):
            out.append("- " + render_note(parts, values, _note_fields(res, runs, arm)))
    return (["## Method notes", ""] + out + [""]) if out else []


def _note_fields(res: MatrixResults, runs: pd.DataFrame, arm: str) -> dict[str, object]:
    """The fields a note may use (:class:`plots.traits` ``NotePart``) for one arm."""
    mine = runs.loc[runs["arm"] == arm]
    ep = res.epochs.loc[res.epochs["run_id"].isin(mine["run_id"])]
    first = ep.loc[ep["epoch"] == 1, "backprops"]
    # a once-per-run cost counted in epoch 1: its count beyond what a later epoch trains
    per_epoch = ep.sort_values("epoch").groupby("run_id")["backprops"].apply(
        lambda s: float(s.diff().iloc[-1]) if len(s) > 2 else np.nan)
    n_train = mine["n_train"].dropna()
    return {**mine["flat_spec"].iloc[0], "arm": arm,
            "n_train": int(n_train.iloc[0]) if len(n_train) else None,
            "epoch1_extra_backprops": float(first.mean() - per_epoch.mean())}


def _left_out_section(res: MatrixResults) -> list[str]:
    left = res.left_out
    out = ["## Runs left out", ""]
    if left.empty:
        return out + ["None: every run folder is finished (`done`) and used above.", ""]
    rows = [[r["run_id"], r["status"], r["reason"], _one_line(r["error"])]
            for _, r in left.iterrows()]
    return out + [f"{len(left)} run folder(s) are not in any table or figure:", "",
                  md_table(["run", "status", "reason", "error"], rows, numeric=False), ""]


def _one_line(text: object, limit: int = 160) -> str:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    first = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _figures_section(figures: FigureOutputs | None) -> list[str]:
    """Every output listed under "Figures" (the registry of :mod:`plots.outputs`, in its
    order): the figure inline, or why it was not drawn."""
    if figures is None:
        return []
    out = ["## Figures", ""]
    for name, title, stem in figures.listed:
        if name in figures.written:
            out += [f"### {title}", "", f"![{title}](figures/{stem}.png)", "",
                    f"PDF: [figures/{stem}.pdf](figures/{stem}.pdf)", ""]
        elif name in figures.skipped:
            out += [f"### {title}", "", f"*Not drawn: {figures.skipped[name]}.*", ""]
    return out


def render_report(res: MatrixResults, figures: FigureOutputs | None = None) -> str:
    """The whole report as Markdown text."""
    runs = res.runs
    used = int(runs["included"].sum())
    devices = sorted({d for d in runs.loc[runs["included"], "device"] if d})
    lines = [
        f"# Results — matrix `{res.matrix}`", "",
        f"Generated by `python -m plots {res.matrix}` from the run folders in "
        f"`{res.root.name}/`. Raw per-epoch data: [summary.csv](summary.csv).", "",
        f"- Runs used: **{used}** of {len(runs)} run folders (status `done`); "
        f"left out: {len(runs) - used} (listed at the end).",
        f"- Devices: {', '.join(devices) if devices else 'not recorded'}"
        + (" — wall-clock numbers are comparable only within one device." if len(devices) > 1
           else "."),
        "- Numbers: mean ± sample standard deviation (ddof = 1) over seeds (one seed: value "
        "only); figures show the mean, with each seed as a thin line when a line has ≤ 3 "
        "seeds and a 95% Student-t confidence band when it has more. Paired differences "
        "against a reference arm: [paired.csv](paired.csv).",
        "- Training seconds: cumulative `train_seconds` (evaluation excluded). Backprops: "
        "examples trained on. Forwards: all examples passed forward, selection included.",
    ]
    if figures is not None and figures.ema_span:
        span = figures.ema_span
        lines.append(f"- Figure 3 smoothing: per-run EMA, span {span} iteration"
                     + ("s." if span != 1 else " (no smoothing)."))
    if figures is not None and figures.comparisons is not None:
        lines += [f"- Note: {n}" for n in figures.comparisons.notes]
    lines.append("")
    lines += _setup_section(res)
    for panel in res.panels:
        lines += [f"## {res.panel_title(panel)}", ""]
        lines += _accuracy_section(res, panel)
        lines += _paired_section(res, figures, panel)
        lines += _cost_section(res, panel)
    lines += _across_section(res, figures)
    lines += _method_notes(res)
    lines += _ablation_section(res)
    lines += _figures_section(figures)
    sections = figures.sections if figures is not None else {}
    for section in sections.get(BEFORE_LEFT_OUT, []):
        lines += section
    lines += _left_out_section(res)
    text = "\n".join(lines).rstrip()
    for section in sections.get(AT_END, []):  # sections of their own after everything
        text = text + "\n\n" + "\n".join(section).rstrip()
    return text + "\n"


def write_report(res: MatrixResults, figures: FigureOutputs | None = None,
                 path: Path | None = None) -> Path:
    """Write ``report.md`` into the matrix folder (atomically) and return its path."""
    path = path or res.root / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text(render_report(res, figures), encoding="utf-8")
    return path
