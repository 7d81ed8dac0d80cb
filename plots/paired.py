"""Paired differences of test accuracy between an arm and its reference arm.

Why paired: runs of one matrix with the same seed (and dataset, and setting) share the
model initialisation and the seeded data streams, so much of the seed-to-seed spread is
common to both arms. The difference *within* a seed cancels that common part; its mean
over seeds, with a paired-t interval, is far tighter than comparing two independent
means, and it is the honest statistic for "does arm A beat arm B on the same seeds?".

Per (dataset panel, arm variant, reference, epoch):

- ``mean``: mean over paired seeds of acc(arm) - acc(reference), in accuracy points
  (fraction; the report prints percentage points);
- ``t_lo``/``t_hi``: two-sided 95% paired-t interval, mean ± t(0.975, n-1)·sd/√n;
- ``boot_lo``/``boot_hi``: percentile bootstrap interval of the same mean (10,000
  resamples of the seeds with replacement, numpy generator seeded with ``BOOT_SEED`` so the
  report is reproducible). With 3-5 seeds it can never be wider than the range of the
  differences and is therefore narrower than the t-interval; it is shown beside it as a
  check of the t-interval's normality assumption, not instead of it;
- ``n_agree``/``n``: seeds whose difference has the sign of the mean (0 counts as
  disagreeing), e.g. "5/5";
- ``excludes_zero``: the *t*-interval lies strictly on one side of 0 (the report's mark).

Seeds that only one of the two arms has (a failed or missing run) cannot be paired: they
are dropped, and listed in ``unpaired`` so the report can say so.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .aggregate import (CHECKPOINT_EPOCHS, CONFIDENCE, MatrixResults, ResultsError, _t_quantile,
                        atomic_path)
from .style import arm_order

#: Bootstrap resamples and the seed of their generator (fixed: same CSVs, same report).
BOOT_RESAMPLES = 10_000
BOOT_SEED = 0

#: Columns of paired.csv (one row per comparison x panel x variant x checkpoint).
PAIRED_COLUMNS = ["panel", "variant", "arm", "reference", "checkpoint", "epoch", "n", "mean",
                  "t_lo", "t_hi", "boot_lo", "boot_hi", "n_agree", "excludes_zero",
                  "unpaired"]


@dataclass(frozen=True)
class PairedStats:
    """Statistics of one set of paired differences (see the module docstring)."""

    n: int
    mean: float
    t_lo: float
    t_hi: float
    boot_lo: float
    boot_hi: float
    n_agree: int

    @property
    def excludes_zero(self) -> bool:
        """The paired-t interval lies strictly above or strictly below 0."""
        return bool(self.n >= 2 and (self.t_lo > 0 or self.t_hi < 0))


def paired_t_interval(diffs: Sequence[float] | np.ndarray, level: float = CONFIDENCE
                      ) -> tuple[float, float, float]:
    """(mean, lo, hi) of the paired-t interval; lo = hi = mean for one pair, NaN for none."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(d.mean())
    if d.size < 2:
        return (mean, math.nan, math.nan)
    half = _t_quantile(d.size - 1, level) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return (mean, mean - half, mean + half)


def bootstrap_interval(diffs: Sequence[float] | np.ndarray, level: float = CONFIDENCE,
                       resamples: int = BOOT_RESAMPLES, seed: int = BOOT_SEED
                       ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (NaN with fewer than 2)."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def sign_agreement(diffs: Sequence[float] | np.ndarray) -> int:
    """How many differences have the (strict) sign of their mean; 0 if the mean is 0."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return 0
    sign = np.sign(d.mean())
    return int(np.sum(np.sign(d) == sign)) if sign != 0 else 0


def paired_stats(diffs: Sequence[float] | np.ndarray, level: float = CONFIDENCE,
                 resamples: int = BOOT_RESAMPLES, seed: int = BOOT_SEED) -> PairedStats:
    """All statistics of one set of paired differences."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    mean, t_lo, t_hi = paired_t_interval(d, level)
    b_lo, b_hi = bootstrap_interval(d, level, resamples, seed)
    return PairedStats(n=int(d.size), mean=mean, t_lo=t_lo, t_hi=t_hi, boot_lo=b_lo,
                       boot_hi=b_hi, n_agree=sign_agreement(d))


# ------------------------------------------------------------------- pairing runs


@dataclass
class Comparisons:
    """(arm, reference) pairs to report, where they came from, and why any were dropped."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)


def comparisons_for(res: MatrixResults, reference: str | None = None,
                    matrix_file: Path | None = None) -> Comparisons:
    """The comparisons of a matrix's results.

    Order of precedence: ``reference`` given here (CLI ``--reference``) compares every arm
    with it; else the matrix YAML's ``reference``/``comparisons`` keys (the file next to
    the runs, or ``benchmarks/matrices/<matrix>.yaml``); else, when an arm called ``sgd``
    exists, every arm against it (the suite's plain baseline). Pairs whose arms have no
    finished run here are dropped with a note.
    """
    from benchmarks import comparisons as spec  # torch-free: keeps plots light

    arms = arm_order(res.epochs["arm"].astype(str), res.arm_styles)
    out = Comparisons()
    if reference is not None:
        pairs, problems = spec.parse(reference, None, arms)
        if problems:
            out.notes += problems
        out.pairs, out.source = pairs, f"--reference {reference}"
        return out
    path = matrix_file or spec.matrix_file(res.matrix, res.root)
    if path is not None:
        try:
            ref, comps, yaml_arms = spec.read(path)
        except (OSError, ValueError, yaml.YAMLError) as exc:  # ValueError: not UTF-8
            raise ResultsError(f"{path}: {_unreadable(exc)}; fix or remove it, or choose the "
                               "reference with --reference ARM") from None
        if ref is not None or comps is not None:
            pairs, problems = spec.parse(ref, comps, yaml_arms or arms)
            out.notes += [f"{path.name}: {p}" for p in problems]
            kept = [(a, r) for a, r in pairs if a in arms and r in arms]
            missing = [f"{a} vs {r}" for a, r in pairs if (a, r) not in kept]
            if missing:
                out.notes.append("not compared, for want of finished runs of both arms: "
                                 + ", ".join(missing))
            out.pairs, out.source = kept, f"`reference`/`comparisons` of {path.name}"
            return out
    if "sgd" in arms:
        out.pairs = [(a, "sgd") for a in arms if a != "sgd"]
        out.source = "default: every arm against `sgd` (the matrix names no reference)"
    return out


def _unreadable(exc: Exception) -> str:
    """One line for a matrix YAML that cannot be read (the plots then stop: pairing it
    wrongly, or not at all without saying so, would be silently wrong)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        return f"not valid YAML ({where}{getattr(exc, 'problem', None) or exc})"
    return f"cannot read it ({exc})"


def _pair_keys(res: MatrixResults, ref_rows: pd.DataFrame) -> list[str]:
    """Columns a run and its reference run must share: panel, seed, and any extra axis of
    the matrix on which the reference itself varies (``bank_size``, ``model.width``), so a run
    is paired with the reference run of the same setting."""
    extra = [a for a in res.axes if a not in ("dataset", "arm", "seed")]
    return ["panel", "seed", *[a for a in extra
                               if ref_rows[a].astype(str).nunique(dropna=False) > 1]]


def paired_differences(res: MatrixResults, pairs: Sequence[tuple[str, str]]
                       ) -> pd.DataFrame:
    """One row per comparison x panel x arm variant x epoch x seed: the paired difference.

    Columns: ``panel, variant, arm, reference, seed, epoch, diff`` (+ the pairing axes).
    A seed without a partner is absent here and reported by :func:`paired_table`.
    """
    frames = []
    ep = res.epochs
    for arm, ref in pairs:
        ref_rows = ep.loc[ep["arm"] == ref]
        arm_rows = ep.loc[ep["arm"] == arm]
        if ref_rows.empty or arm_rows.empty:
            continue
        keys = _pair_keys(res, ref_rows)
        merged = arm_rows.merge(ref_rows[[*keys, "epoch", "test_acc"]], on=[*keys, "epoch"],
                                suffixes=("", "_ref"), how="inner")
        merged = merged.assign(reference=ref, diff=merged["test_acc"] - merged["test_acc_ref"])
        frames.append(merged[["panel", "variant", "arm", "reference", *keys[1:], "epoch",
                              "diff"]])
    if not frames:
        return pd.DataFrame(columns=["panel", "variant", "arm", "reference", "seed", "epoch",
                                     "diff"])
    return pd.concat(frames, ignore_index=True)


def _unpaired(res: MatrixResults, arm: str, ref: str, panel: str, variant: str) -> str:
    """Seeds of this arm variant or of the reference (same panel) that have no partner."""
    ep = res.epochs.loc[res.epochs["panel"] == panel]
    mine = set(ep.loc[ep["variant"] == variant, "seed"].dropna().astype(int))
    theirs = set(ep.loc[ep["arm"] == ref, "seed"].dropna().astype(int))
    where = f" on {panel}" if len(res.panels) > 1 else ""
    parts = []
    for only, other, seeds in ((variant, ref, mine - theirs), (ref, variant, theirs - mine)):
        if seeds:
            parts.append(f"seed {', '.join(map(str, sorted(seeds)))} of {only}{where} "
                         f"(no {other} run)")
    return "; ".join(parts)


def unpaired_seeds(res: MatrixResults, diffs: pd.DataFrame) -> list[str]:
    """Human-readable list of the seeds dropped for want of a partner, over all pairs."""
    groups = diffs[["panel", "variant", "arm", "reference"]].drop_duplicates()
    texts = (_unpaired(res, g.arm, g.reference, g.panel, g.variant)
             for g in groups.itertuples(index=False))
    return sorted({f"{t}" for t in texts if t})


def paired_table(res: MatrixResults, pairs: Sequence[tuple[str, str]],
                 at: Sequence[int] = CHECKPOINT_EPOCHS, diffs: pd.DataFrame | None = None
                 ) -> pd.DataFrame:
    """paired.csv: statistics at epochs ``at`` and at the final epoch of every comparison.

    "final" is, per pair of runs, the last epoch both runs have (normally the matrix's
    ``epochs``), so a run cut short never pairs its last epoch with a later one.
    """
    diffs = paired_differences(res, pairs) if diffs is None else diffs
    rows = []
    for (panel, variant, arm, ref), group in diffs.groupby(
            ["panel", "variant", "arm", "reference"], sort=False, observed=True):
        unpaired = _unpaired(res, arm, ref, panel, variant)
        last = group.groupby("seed")["epoch"].transform("max")
        points = [(f"epoch {e}", group.loc[group["epoch"] == e]) for e in at]
        points.append(("final", group.loc[group["epoch"] == last]))
        for label, sub in points:
            if sub.empty:
                continue
            s = paired_stats(sub.sort_values("seed")["diff"].to_numpy())
            epochs = sorted(sub["epoch"].unique())
            rows.append({"panel": panel, "variant": variant, "arm": arm, "reference": ref,
                         "checkpoint": label,
                         "epoch": (str(int(epochs[0])) if len(epochs) == 1
                                   else f"{int(epochs[0])}–{int(epochs[-1])}"),
                         "n": s.n, "mean": s.mean, "t_lo": s.t_lo, "t_hi": s.t_hi,
                         "boot_lo": s.boot_lo, "boot_hi": s.boot_hi, "n_agree": s.n_agree,
                         "excludes_zero": s.excludes_zero, "unpaired": unpaired})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def write_paired(table: pd.DataFrame, path: Path) -> Path:
    """Write paired.csv atomically (a reader never sees half a file)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return path
