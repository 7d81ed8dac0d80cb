"""The README's result tables, generated from the committed ``summary.csv`` / ``paired.csv``.

Why: a number typed into the README by hand drifts from the runs it quotes (a rerun, a
changed rule). Each table sits between two markers::

    <!-- table: methods cpu_methods -->
    ...generated markdown...
    <!-- end table -->

``python -m plots readme`` rewrites every such block from ``results/<matrix>/``; the test
suite fails when the README differs from what this module generates. Only files are read
(no run folder is re-aggregated), so the README always quotes what the committed report
quotes.

Kinds:
- ``methods``: one row per arm: final test accuracy (mean ± std over seeds), the paired
  difference against the matrix's reference arm at the final epoch (95% paired-t interval,
  seeds agreeing in sign), and costs relative to the reference: seconds per training step,
  examples forwarded and back-propagated over the run.
- ``budget``: final test accuracy (mean ± std over seeds) per arm and budget.
- ``leaderboard``: the matrix's section of the committed ``results/LEADERBOARD.md``
  (``python -m plots leaderboard``): accuracy with 95% intervals, IQM, the paired difference
  with its Holm-adjusted p-value, the probability of improvement, and costs to fixed targets.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .aggregate import atomic_path

BLOCK = re.compile(r"(<!-- table: (\w+) ([\w.-]+) -->\n)(.*?)(<!-- end table -->)", re.S)


class ReadmeTableError(ValueError):
    """A README block names a kind or matrix this module cannot generate."""


def _final_rows(summary: pd.DataFrame) -> pd.DataFrame:
    last = summary.groupby("run_id")["epoch"].transform("max")
    return summary[summary["epoch"] == last]


def _mean_std(values: pd.Series, scale: float, digits: int) -> str:
    v = values.to_numpy(dtype=float) * scale
    std = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {std:.{digits}f}"


def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


def _paired_cell(paired: pd.DataFrame, arm: str) -> str:
    rows = paired[(paired["arm"] == arm) & paired["checkpoint"].str.startswith("final")]
    if rows.empty:
        return "—"
    r = rows.iloc[0]
    if r["t_lo"] == r["t_hi"] == r["mean"] == 0:
        return "+0.00 (identical runs)"
    return (f"{_signed(100 * r['mean'])} [{_signed(100 * r['t_lo'])}, {_signed(100 * r['t_hi'])}] "
            f"{int(r['n_agree'])}/{int(r['n'])}")


def methods_table(root: Path) -> str:
    """The ``methods`` table of the matrix folder ``root`` (see the module docstring)."""
    summary = pd.read_csv(root / "summary.csv")
    paired = pd.read_csv(root / "paired.csv")
    refs = paired["reference"].dropna().unique()
    if len(refs) != 1:
        raise ReadmeTableError(f"{root}: paired.csv must name exactly one reference, got {list(refs)}")
    ref = str(refs[0])
    final = _final_rows(summary).copy()
    final["s_per_step"] = final["cum_train_seconds"] / final["iteration"]
    per_arm = final.groupby("arm").agg(acc=("test_acc", "mean"), sps=("s_per_step", "mean"),
                                       secs=("cum_train_seconds", "mean"),
                                       steps=("iteration", "mean"), fwd=("forwards", "mean"),
                                       bwd=("backprops", "mean"))
    base = per_arm.loc[ref]
    lines = ["| arm | final acc % | vs " + ref + " (points) | s/step | forwards | backprops |",
             "|---|---|---|---|---|---|"]
    for arm, row in per_arm.sort_values("acc", ascending=False).iterrows():
        sps = f"{row.sps / base.sps:.2f}"
        if row.steps != base.steps:
            sps += f" ({row.secs / base.secs:.2f} per run)"
        vs = "—" if arm == ref else _paired_cell(paired, str(arm))
        lines.append(f"| {arm} | {_mean_std(final[final.arm == arm].test_acc, 100, 2)} | {vs} | "
                     f"{sps} | {row.fwd / base.fwd:.2f} | {row.bwd / base.bwd:.2f} |")
    return "\n".join(lines) + "\n"


def noise_table(root: Path) -> str:
    """The ``noise`` table of a label-noise matrix ``root``: per arm, final accuracy, the
    paired difference against the reference, and the share of trained examples with a wrong
    label (epochs.csv ``noisy_frac``; mean over epochs 1..E per run, then mean ± std over
    seeds), also as a ratio to the reference's share (uniform sampling's is the noise rate)."""
    summary = pd.read_csv(root / "summary.csv")
    paired = pd.read_csv(root / "paired.csv")
    if "noisy_frac" not in summary.columns:
        raise ReadmeTableError(f"{root}: summary.csv has no noisy_frac column (not a label-noise matrix)")
    refs = paired["reference"].dropna().unique()
    if len(refs) != 1:
        raise ReadmeTableError(f"{root}: paired.csv must name exactly one reference, got {list(refs)}")
    ref = str(refs[0])
    final = _final_rows(summary)
    trained = summary[summary["epoch"] > 0].groupby(["arm", "run_id"])["noisy_frac"].mean()
    share = trained.groupby("arm").mean()
    lines = ["| arm | final acc % | vs " + ref + " (points) | wrong-label share of trained % | "
             "vs " + ref + "'s share |", "|---|---|---|---|---|"]
    order = final.groupby("arm")["test_acc"].mean().sort_values(ascending=False).index
    for arm in order:
        vs = "—" if arm == ref else _paired_cell(paired, str(arm))
        lines.append(f"| {arm} | {_mean_std(final[final.arm == arm].test_acc, 100, 2)} | {vs} | "
                     f"{_mean_std(trained.loc[arm], 100, 1)} | {share[arm] / share[ref]:.2f}× |")
    return "\n".join(lines) + "\n"


def budget_table(root: Path) -> str:
    """The ``budget`` table of the matrix folder ``root``: arms by budget."""
    summary = pd.read_csv(root / "summary.csv")
    final = _final_rows(summary)
    if "budget" not in final.columns:
        raise ReadmeTableError(f"{root}: summary.csv has no budget column")
    budgets = sorted(final["budget"].unique())
    arms = list(dict.fromkeys(final["arm"]))
    lines = ["| arm | " + " | ".join(f"f = {b:g}" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for arm in arms:
        cells = [_mean_std(final[(final.arm == arm) & (final.budget == b)].test_acc, 100, 1)
                 for b in budgets]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def leaderboard_table(root: Path) -> str:
    """The ``leaderboard`` block: matrix ``root``'s section of the committed
    ``results/LEADERBOARD.md`` (:mod:`plots.leaderboard`), as it is there, with its own
    heading left out, its dataset headings as bold lines (the README keeps its outline)
    and its links made relative to the repository root."""
    from .leaderboard import PAGE, section

    page = root.parent / PAGE
    if not page.exists():
        raise ReadmeTableError(f"{page} missing; run `python -m plots leaderboard` first")
    try:
        body = section(page.read_text(encoding="utf-8"), root.name)
    except KeyError:
        raise ReadmeTableError(f"{page} has no section for {root.name}; run "
                               "`python -m plots leaderboard`") from None
    lines = body.rstrip("\n").split("\n")
    if lines and lines[0].startswith("## "):
        lines = lines[1:]
    out = [f"**{ln[4:]}**" if ln.startswith("### ") else
           re.sub(r"\]\((?!https?:|/|#)", f"]({root.parent.name}/", ln) for ln in lines]
    return "\n".join(out).strip("\n") + "\n"


KINDS: dict[str, Callable[[Path], str]] = {"methods": methods_table, "budget": budget_table,
                                           "noise": noise_table,
                                           "leaderboard": leaderboard_table}


def render(text: str, results: Path) -> str:
    """``text`` with every generated block rewritten from ``results/<matrix>/``."""
    def block(m: re.Match) -> str:
        kind, matrix = m.group(2), m.group(3)
        if kind not in KINDS:
            raise ReadmeTableError(f"README table kind {kind!r} unknown; known: {', '.join(KINDS)}")
        folder = results / matrix
        if not (folder / "summary.csv").exists():
            raise ReadmeTableError(f"README table {kind} {matrix}: {folder}/summary.csv missing; "
                                   f"run `python -m plots {matrix}` first")
        return m.group(1) + KINDS[kind](folder) + m.group(5)
    return BLOCK.sub(block, text)


def update(readme: Path, results: Path) -> bool:
    """Rewrite ``readme``'s generated blocks in place; True if anything changed."""
    old = readme.read_text(encoding="utf-8")
    new = render(old, results)
    if new != old:
        with atomic_path(readme) as tmp:
            tmp.write_text(new, encoding="utf-8")
    return new != old


def pages(root: Path = Path(".")) -> list[Path]:
    """The pages with generated blocks by default: the README and every page of docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    """``python -m plots.readme [PAGE ...] [--results DIR]``: rewrite the generated tables
    (default pages: README.md and docs/*.md)."""
    import argparse
    import sys
    p = argparse.ArgumentParser(prog="python -m plots.readme", description=__doc__.split("\n")[0])
    p.add_argument("readme", nargs="*", help="pages to rewrite (default: README.md docs/*.md)")
    p.add_argument("--results", default="results")
    args = p.parse_args(argv)
    for page in [Path(x) for x in args.readme] or pages():
        try:
            changed = update(page, Path(args.results))
        except (ReadmeTableError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{page}: {'tables rewritten' if changed else 'tables already up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
