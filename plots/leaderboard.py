"""``python -m plots leaderboard``: one page comparing every matrix under ``results/``.

Why: each matrix has its own report, but a reader comparing methods wants one table per
matrix and dataset with the same columns everywhere: final accuracy with its 95%
interval, the paired difference against the matrix's reference with a p-value adjusted for
the number of arms compared (Holm, :mod:`plots.stats`), the IQM and probability of
improvement (rliable's statistics), the work needed to reach fixed accuracies, how many
runs stand behind each row and the code they ran. ``results/LEADERBOARD.md`` and
``results/leaderboard.png`` / ``.pdf`` are written from the run folders (the same loader
as the reports, :func:`plots.aggregate.load_matrix`), so the page regenerates byte for byte
from the committed runs; the README quotes it between ``<!-- table: leaderboard ... -->``
markers (:mod:`plots.readme`).

Targets (our choice, per matrix and dataset): the accuracy the reference arm reaches on
*every* seed (the smallest, over its seeds, of a run's best test accuracy; over its
variants, the largest: an LR sweep's best lr, a budget matrix's full budget), floored to a
whole percent, and 80% of it, floored likewise. "Reach what the reference reaches" is the
usual time-to-accuracy question; taking the reference's worst seed (not its mean) keeps the
reference itself on the board, since an arm gets a cost only if every seed got there
("— (k/n)" otherwise, as in report.md). The lower target shows which arms get most of the
way sooner. A matrix without a reference uses its best arm instead. Cost is read at the end
of the first epoch at or above the target (one-epoch resolution).
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .aggregate import MatrixResults, ResultsError, atomic_path, load_matrix, t_interval
from .paired import Comparisons, comparisons_for, paired_table
from .setup import provenance
from .stats import ALPHA, BOOT_REPS, add_holm, aggregate_table, final_rows, fmt_p

#: Output names, in the results folder.
PAGE = "LEADERBOARD.md"
FIGURE_STEM = "leaderboard"

#: Targets as fractions of the reference's final accuracy (see the module docstring).
TARGET_FRACTIONS: tuple[float, ...] = (0.8, 1.0)

#: (summary column, short heading, number format) of the cost-to-target table.
COSTS: tuple[tuple[str, str, str], ...] = (
    ("cum_train_seconds", "seconds", "{:,.1f}"),
    ("forwards", "forwards", "{:,.0f}"),
    ("backprops", "backprops", "{:,.0f}"),
)

_TOL = 1e-9  # accuracies read back from CSV: "≥ target" must not fail on rounding

#: Where each matrix's section starts and ends in LEADERBOARD.md (read by plots.readme).
SECTION_START = "<!-- matrix: {matrix} -->"
SECTION_END = "<!-- end matrix -->"


@dataclass
class Board:
    """One matrix on the leaderboard: its results, comparisons and per-panel tables."""

    res: MatrixResults
    comparisons: Comparisons
    paired: pd.DataFrame  # final-epoch rows of paired.csv, with p, p_holm, holm_survives
    targets: dict[str, list[float]] = field(default_factory=dict)  # panel -> accuracies

    @property
    def reference(self) -> str:
        """The matrix's main reference: the arm most pairs compare with (the matrix's
        ``reference:``; extra ``comparisons:`` pairs against other arms stay in report.md)."""
        refs = [r for _, r in self.comparisons.pairs]
        return max(dict.fromkeys(refs), key=refs.count) if refs else ""

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The (arm, reference) pairs against the main reference."""
        return [(a, r) for a, r in self.comparisons.pairs if r == self.reference]


# ----------------------------------------------------------------------- numbers


def targets(res: MatrixResults, panel: str, reference: str | None,
            fractions: Sequence[float] = TARGET_FRACTIONS) -> list[float]:
    """The fixed accuracies of one panel (fractions, ascending; see the module docstring)."""
    epochs = res.epochs.loc[res.epochs["panel"] == panel]
    if reference is not None and (epochs["arm"] == reference).any():
        epochs = epochs.loc[epochs["arm"] == reference]
    best = epochs.groupby(["variant", "run_id"], observed=True)["test_acc"].max()
    top = float(best.groupby(level="variant", observed=True).min().max())
    return sorted({math.floor(100 * f * top + 1e-9) / 100 for f in fractions})


def cost_to_target(epochs: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per variant: runs, runs that reached ``target``, and each cost's mean over seeds
    (NaN unless every run reached it) at the first epoch with accuracy ≥ ``target``."""
    epochs = epochs.sort_values(["run_id", "epoch"])
    runs = epochs.groupby("run_id")[["variant"]].first()
    first = epochs.loc[epochs["test_acc"] >= target - _TOL].groupby("run_id").head(1)
    per_run = runs.join(first.set_index("run_id")[[c for c, _, _ in COSTS]], how="left")
    rows = []
    for variant, g in per_run.groupby("variant", sort=False):
        reached = int(g[COSTS[0][0]].notna().sum())
        row = {"variant": variant, "n": len(g), "reached": reached}
        for col, _, _ in COSTS:
            row[col] = float(g[col].mean()) if reached == len(g) else math.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def _commits(res: MatrixResults) -> pd.Series:
    """Per arm: its runs' commits (first 8 hex digits, "+dirty" when made from a dirty tree)."""
    prov = provenance(res).runs
    text = [(str(c)[:8] if isinstance(c, str) else "?") + ("+dirty" if d is True else "")
            for c, d in zip(prov["commit"], prov["dirty"])]
    prov = prov.assign(text=text)
    return prov.groupby("arm")["text"].agg(lambda s: " / ".join(sorted(set(s))))


def load_board(root: Path) -> Board:
    """Load one matrix and compute its comparisons, Holm-adjusted final differences and
    targets (raises ResultsError when it has no finished run)."""
    res = load_matrix(root)
    board = Board(res, comparisons_for(res), pd.DataFrame())
    board.paired = add_holm(paired_table(res, board.pairs, at=()))
    for panel in res.panels:
        board.targets[panel] = targets(res, panel, board.reference or None)
    return board


def boards(results: Path, only: Sequence[str] | None = None
           ) -> tuple[list[Board], list[str]]:
    """Every matrix folder under ``results`` with finished runs (or only those named in
    ``only``), by name; and one line per folder with run folders but nothing usable."""
    found, skipped = [], []
    for folder in sorted(p for p in Path(results).iterdir() if p.is_dir()):
        if only is not None and folder.name not in only:
            continue
        if not any((run / "run.json").exists() for run in folder.iterdir() if run.is_dir()):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the matrix's own report says them
                found.append(load_board(folder))
        except ResultsError as exc:
            skipped.append(f"`{folder.name}`: {exc}")
    if not found:
        raise ResultsError(f"no matrix with finished runs under {results} (run "
                           "`python -m benchmarks run MATRIX` first)")
    return found, skipped


# ----------------------------------------------------------------------- markdown


def _pct(x: float) -> str:
    return "—" if x is None or pd.isna(x) else f"{100 * x:.2f}"


def _pp(x: float) -> str:
    return "—" if x is None or pd.isna(x) else f"{100 * x:+.2f}".replace("-", "−")


def _interval(mean: float, lo: float, hi: float, fmt=_pct) -> str:
    if mean is None or pd.isna(mean):
        return "—"
    if lo is None or pd.isna(lo) or lo == hi:
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]],
           numeric: bool = True) -> list[str]:
    def cell(x: object) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")
    return ["| " + " | ".join(cell(h) for h in header) + " |",
            "|" + "|".join(":---" if i == 0 or not numeric else "---:"
                           for i in range(len(header))) + "|",
            *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows)]


def _setup(board: Board) -> list[str]:
    """The matrix's header row: what every arm of it shares."""
    res = board.res
    specs = list(provenance(res).runs["spec"])

    def one(fn) -> str:
        return " / ".join(dict.fromkeys(str(fn(s)) for s in specs)) or "?"

    model = one(lambda s: f"{(s.get('model') or {}).get('name', '?')} "
                          f"×{(s.get('model') or {}).get('width', 1)}")
    seeds = sorted({int(s) for s in res.epochs["seed"].dropna()})
    commits = sorted({c for text in _commits(res) for c in text.split(" / ")})
    return [res.matrix if len(res.panels) == 1 else f"{res.matrix} ({len(res.panels)} datasets)",
            "; ".join(res.datasets["label"]), model, one(lambda s: s.get("epochs", "?")),
            one(lambda s: s.get("batch_size", "?")),
            str(res.epochs["variant"].nunique()), str(int(res.runs["included"].sum())),
            f"{len(seeds)}", board.reference or "—",
            " / ".join(sorted(set(" / ".join(commits).split(" / "))))]


SETUP_HEADER = ["matrix", "data", "model", "epochs", "batch", "arms", "runs", "seeds",
                "reference", "commit"]


def _panel_tables(board: Board, panel: str) -> list[str]:
    res = board.res
    epochs = res.epochs.loc[res.epochs["panel"] == panel]
    final = final_rows(epochs)
    agg = aggregate_table(epochs, board.pairs,
                          [a for a in res.axes if a not in ("dataset", "arm", "seed")])
    agg = agg.set_index("variant")
    paired = board.paired.loc[board.paired["panel"] == panel].set_index("variant")
    commits = _commits(res)
    # grouped by the matrix's settings (budget, lr), best first within each
    settings = [a for a in res.axes if a not in ("dataset", "arm", "seed", "bank_size")]
    keyed = final.groupby("variant", observed=True).agg(
        acc=("test_acc", "mean"), **{f"_{i}": (a, "first") for i, a in enumerate(settings)})
    keyed = keyed.sort_values([*(f"_{i}" for i in range(len(settings))), "acc"],
                              ascending=[*([False] * len(settings)), False], kind="stable")
    order = keyed["acc"]
    refs = {board.reference}
    rows = []
    for variant in order.index:
        accs = final.loc[final["variant"] == variant, "test_acc"].to_numpy()
        arm = str(final.loc[final["variant"] == variant, "arm"].iloc[0])
        lo, hi = t_interval(accs)
        a = agg.loc[variant]
        name = f"**{variant}** (reference)" if arm in refs else variant
        if variant in paired.index:
            p = paired.loc[variant]
            diff = _interval(p["mean"], p["t_lo"], p["t_hi"], _pp)
            holm = fmt_p(p["p_holm"]) + (" ✱" if p["holm_survives"] else "")
            poi = _interval(a["poi"], a["poi_lo"], a["poi_hi"], lambda x: f"{x:.2f}")
        else:
            diff = holm = poi = "—"
        rows.append([name, len(accs), _interval(float(accs.mean()), lo, hi),
                     _interval(a["iqm"], a["iqm_lo"], a["iqm_hi"]), diff, holm, poi,
                     commits.get(arm, "?")])
    ref_text = board.reference or "reference"
    out = [f"### {res.panel_title(panel)}", "",
           *_table(["arm", "runs", "final acc % [95% CI]", "IQM % [95% CI]",
                    f"vs {ref_text} (pp) [95% CI]", "p (Holm)", f"P(arm > {ref_text}) [95% CI]",
                    "commit"], rows), ""]
    goals = board.targets[panel]
    costs = {t: cost_to_target(epochs, t) for t in goals}
    rows = []
    for variant in order.index:
        row = [variant]
        for col, _, fmt in COSTS:
            for t in goals:
                c = costs[t].loc[variant]
                row.append(fmt.format(c[col]) if c["reached"] == c["n"]
                           else f"— ({int(c['reached'])}/{int(c['n'])})")
        rows.append(row)
    heads = [f"{name} to {100 * t:.0f}%" for _, name, _ in COSTS for t in goals]
    out += [f"Cost to reach {' and '.join(f'{100 * t:.0f}%' for t in goals)} test accuracy "
            "(mean over seeds):", "", *_table(["arm", *heads], rows), ""]
    return out


def _across_panels(board: Board) -> list[str]:
    """IQM and PoI over every dataset and seed (matrices with more than one dataset)."""
    res = board.res
    if len(res.panels) < 2:
        return []
    agg = aggregate_table(res.epochs, board.pairs,
                          [a for a in res.axes if a not in ("dataset", "arm", "seed")])
    agg = agg.sort_values("iqm", ascending=False, kind="stable")
    rows = [[r.variant, r.tasks, r.runs, _interval(r.iqm, r.iqm_lo, r.iqm_hi),
             _interval(r.poi, r.poi_lo, r.poi_hi, lambda x: f"{x:.2f}")]
            for r in agg.itertuples()]
    return [f"### All {len(res.panels)} datasets", "",
            *_table(["arm", "datasets", "runs", "IQM % [95% CI]",
                     f"P(arm > {board.reference or 'reference'}) [95% CI]"], rows), ""]


def matrix_section(board: Board) -> list[str]:
    """One matrix's part of the page (between markers, so the README can quote it)."""
    res = board.res
    head = [SECTION_START.format(matrix=res.matrix), f"## `{res.matrix}`", ""]
    goals = "; ".join(f"{res.datasets.loc[p, 'dataset']}: "
                      + ", ".join(f"{100 * t:.0f}%" for t in board.targets[p])
                      for p in res.panels)
    head += [f"Report: [{res.root.name}/report.md]({res.root.name}/report.md). "
             f"Pairs: {board.comparisons.source or 'none'}. Targets: {goals}.", ""]
    body = []
    for panel in res.panels:
        body += _panel_tables(board, panel)
    body += _across_panels(board)
    return head + body + [SECTION_END, ""]


def render(found: Sequence[Board], skipped: Sequence[str] = ()) -> str:
    """The whole LEADERBOARD.md."""
    lines = [
        "# Leaderboard", "",
        "Generated by `python -m plots leaderboard` (`make leaderboard`) from every matrix "
        "under `results/` with finished runs; do not edit by hand. Figure: "
        f"[{FIGURE_STEM}.png]({FIGURE_STEM}.png) (PDF: [{FIGURE_STEM}.pdf]({FIGURE_STEM}.pdf)).",
        "",
        "- **final acc**: test accuracy at the last epoch, mean over seeds with a 95% "
        "Student-t interval. **IQM**: interquartile mean of the same runs (25% trimmed each "
        f"side) with a 95% stratified-bootstrap interval ({BOOT_REPS:,} resamples, percentile), "
        "as rliable computes it; with 3 seeds it equals the mean.",
        "- **vs reference**: paired difference in percentage points (runs paired by seed), "
        "95% paired-t interval. **p (Holm)**: the paired-t p-value adjusted by Holm's "
        "step-down method over every arm compared on that dataset; ✱: the arm still differs "
        f"from the reference at a {ALPHA:.0%} family-wise error rate.",
        "- **P(arm > reference)**: probability that a run of the arm ends above a run of the "
        "reference (ties ½), rliable's probability of improvement, with a stratified-bootstrap "
        "interval. 0.5: no difference.",
        "- **Cost to reach**: training seconds (evaluation excluded; one machine per matrix, "
        "noisy), examples forwarded and back-propagated, read at the end of the first epoch "
        "whose test accuracy reaches the target; *— (k/n)*: only k of n seeds reached it. "
        "Targets per matrix and dataset: the accuracy the reference reaches on every seed "
        "(its worst seed's best epoch; its best setting when it has several), floored to a "
        "whole percent, and 80% of it.",
        "- Data marked *[subset]* are reduced datasets, not the benchmark's full splits.",
        "",
        *_table(SETUP_HEADER, [_setup(b) for b in found], numeric=False), "",
    ]
    if skipped:
        lines += ["Not on the board (no finished run): " + "; ".join(skipped) + ".", ""]
    for b in found:
        lines += matrix_section(b)
    return "\n".join(lines).rstrip() + "\n"


def matrices_in(text: str) -> list[str]:
    """The matrices a LEADERBOARD.md text has sections for, in order."""
    head, tail = SECTION_START.split("{matrix}")
    return re.findall(re.escape(head) + r"([\w.-]+)" + re.escape(tail), text)


def section(text: str, matrix: str) -> str:
    """The part of a LEADERBOARD.md text between one matrix's markers (without them)."""
    start = SECTION_START.format(matrix=matrix)
    if start not in text:
        raise KeyError(matrix)
    body = text.split(start, 1)[1].split(SECTION_END, 1)[0]
    return body.lstrip("\n")


# ------------------------------------------------------------------------- figure


def figure(found: Sequence[Board]):
    """Forest plot: per matrix and dataset, each arm's paired difference against the
    reference with its 95% t-interval; filled markers survive Holm at 5%. Matrices with no
    comparison are left out of the figure (their tables are on the page)."""
    from matplotlib.figure import Figure

    from .style import arm_palette, paper_style

    panels = [(b, p) for b in found for p in b.res.panels
              if not b.paired.loc[b.paired["panel"] == p].empty]
    if not panels:
        return None
    heights = [0.28 * len(b.paired.loc[b.paired["panel"] == p]) + 0.9 for b, p in panels]
    with paper_style():
        fig = Figure(figsize=(7.0, sum(heights) + 0.8), layout="constrained")
        axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
        for ax, (b, panel) in zip(axes, panels):
            rows = b.paired.loc[b.paired["panel"] == panel].sort_values(
                "mean", kind="stable").reset_index(drop=True)
            samplers = dict(zip(b.res.epochs["arm"].astype(str),
                                b.res.epochs["sampler"].astype(str)))
            colours = arm_palette(rows["arm"].astype(str), samplers, b.res.arm_styles)
            for i, r in rows.iterrows():
                colour = colours[str(r["arm"])]
                if not pd.isna(r["t_lo"]):
                    ax.plot([100 * r["t_lo"], 100 * r["t_hi"]], [i, i], color=colour, lw=1.6)
                ax.plot([100 * r["mean"]], [i], "o", ms=6, color=colour,
                        mfc=colour if r["holm_survives"] else "white", mew=1.4)
            ax.axvline(0.0, color="0.3", lw=0.8, ls="--")
            ax.set_yticks(range(len(rows)), list(rows["variant"]))
            ax.set_ylim(-0.6, len(rows) - 0.4)
            ax.set_title(f"{b.res.matrix} — {b.res.datasets.loc[panel, 'label']}", loc="left")
            ax.set_xlabel(f"final test accuracy − {b.reference} (percentage points)")
        fig.suptitle("Paired difference vs the reference (95% paired-t); filled: Holm-adjusted "
                     f"p ≤ {ALPHA:g}", fontsize=10)
    return fig


def save_figure(fig, out_dir: Path, stem: str = FIGURE_STEM) -> list[Path]:
    """PNG (150 dpi) and PDF without a creation date, each written atomically (the same
    runs give the same bytes)."""
    paths = []
    for fmt in ("png", "pdf"):
        path = Path(out_dir) / f"{stem}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight",
                        metadata={"CreationDate": None} if fmt == "pdf" else None)
        paths.append(path)
    return paths


def write(results: Path | str) -> list[Path]:
    """Write LEADERBOARD.md and the figure into ``results``; return the paths written."""
    results = Path(results)
    found, skipped = boards(results)
    text = render(found, skipped)
    paths = []
    fig = figure(found)
    if fig is not None:
        paths += save_figure(fig, results)
    page = results / PAGE
    with atomic_path(page) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return [page, *paths]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m plots leaderboard [--results DIR]``."""
    p = argparse.ArgumentParser(prog="python -m plots leaderboard",
                                description="Write results/LEADERBOARD.md and its figure "
                                            "from every matrix with finished runs.")
    p.add_argument("--results", default="results",
                   help="folder holding one sub-folder per matrix (default: results)")
    args = p.parse_args(argv)
    results = Path(args.results)
    try:
        if not results.is_dir():
            raise ResultsError(f"results folder {results} does not exist (run "
                               "`python -m benchmarks run MATRIX` first, or pass --results DIR)")
        paths = write(results)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
