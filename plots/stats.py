"""Statistics for many arms: Holm-adjusted p-values, interquartile mean (IQM) and probability
of improvement (PoI) with stratified-bootstrap intervals.

Why: a matrix like ``cpu_methods`` compares 12 arms with one reference. Each paired-t
interval alone has 95% coverage, but among 12 of them one excludes 0 by chance about
half the time (1 − 0.95¹² ≈ 0.46). Holm's step-down adjustment keeps the chance of *any*
false "differs from the reference" at 5% (family-wise error rate), without assuming the
comparisons are independent, and is never less powerful than Bonferroni. The unadjusted
intervals stay in the tables; the adjusted p-value says which arms still differ once the
number of comparisons is accounted for.

Across datasets and seeds, Agarwal et al. (NeurIPS 2021, "Deep RL at the edge of the
statistical precipice") recommend the IQM (robust to one outlying run, less noisy than
the median) and the probability that a run of one method beats a run of another, each
with a stratified-bootstrap interval. This module computes them as the ``rliable``
package does; ``rliable`` itself is not a dependency: ``pip install rliable==1.2.0`` pulls
``arch`` and ``statsmodels`` (plus patsy, formulaic, narwhals, wrapt) for a few lines of
numpy. What is mirrored, from github.com/google-research/rliable:

- :func:`iqm` — ``rliable/metrics.py`` ``aggregate_iqm``: ``scipy.stats.trim_mean`` with
  ``proportiontocut=0.25`` over every run of every task pooled;
- :func:`probability_of_improvement` — ``rliable/metrics.py``
  ``probability_of_improvement``: per task, the Mann-Whitney U statistic of X over Y
  divided by n_x·n_y (= P(X > Y) + ½ P(X = Y) over all pairs of runs), averaged over tasks;
- :func:`stratified_bootstrap_iqm` / :func:`stratified_bootstrap_poi` — ``rliable/library.py``
  ``StratifiedBootstrap`` (runs resampled with replacement *within* each task, the tasks
  kept) and ``StratifiedIndependentBootstrap`` (X and Y resampled independently within
  each task), with ``get_interval_estimates``' defaults: percentile interval
  (``arch``'s ``conf_int(method="percentile")``: ``np.percentile`` at 2.5 and 97.5, linear
  interpolation), 50,000 resamples.

Our own choices: a seeded ``numpy.random.default_rng`` (rliable draws from numpy's global
state), so the same CSVs give the same report; tasks may have different numbers of runs
(a failed seed), which rliable's array interface does not allow; a "task" here is a dataset
panel (and, for PoI, the setting a run is paired on, e.g. the budget).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

#: Family-wise error rate at which the report and the leaderboard say an arm "survives".
ALPHA = 0.05

#: Resamples and generator seed of the stratified bootstraps (rliable's
#: ``get_interval_estimates`` default is 50,000 resamples).
BOOT_REPS = 50_000
BOOT_SEED = 0

#: Fraction cut from each end for the interquartile mean (rliable's ``aggregate_iqm``).
IQM_CUT = 0.25

Tasks = Sequence[Sequence[float] | np.ndarray]


# ------------------------------------------------------------------------ Holm


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, in the input order.

    Sorted ascending p₍₁₎ ≤ … ≤ p₍ₖ₎, the adjusted value of the i-th is
    max over j ≤ i of min(1, (k − j + 1)·p₍ⱼ₎); an arm survives at level α when its adjusted
    p ≤ α (equivalent to the step-down procedure: reject while p₍ᵢ₎ ≤ α/(k − i + 1)).
    NaN entries (a comparison with one seed has no test) stay NaN and do not count in k.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    k = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (k - np.arange(k)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def t_pvalue(mean: float, t_hi: float, n: int, level: float = 0.95) -> float:
    """Two-sided paired-t p-value, recovered from a row of ``paired.csv``.

    The interval's half width is t(level, n−1)·sd/√n, so the standard error, the t
    statistic and its p-value follow from ``mean``, ``t_hi`` and ``n`` alone: the report,
    the leaderboard and the README then all test exactly what the intervals show, from the
    committed CSV. Zero spread: p = 1 when the mean is 0 too (identical runs), else 0 (every
    seed moved by the same amount). Fewer than 2 pairs: NaN (no test).
    """
    if n is None or pd.isna(n) or int(n) < 2 or pd.isna(mean):
        return math.nan
    n = int(n)
    half = float(t_hi) - float(mean)
    if not math.isfinite(half):
        return math.nan
    if half <= 0.0:
        return 1.0 if float(mean) == 0.0 else 0.0
    se = half / float(sps.t.ppf(0.5 + level / 2, n - 1))
    return float(2.0 * sps.t.sf(abs(float(mean)) / se, n - 1))


def add_holm(paired: pd.DataFrame, family: Sequence[str] = ("panel", "checkpoint"),
             alpha: float = ALPHA) -> pd.DataFrame:
    """``paired`` (rows as :func:`plots.paired.paired_table` writes them) with ``p`` (paired
    t, unadjusted), ``p_holm`` and ``holm_survives`` (adjusted p ≤ ``alpha``).

    A family is every comparison of one dataset panel at one checkpoint (our choice: the
    k arms a reader scans in one table against their reference); each family is adjusted on
    its own.
    """
    out = paired.copy()
    out["p"] = [t_pvalue(m, hi, n) for m, hi, n in zip(out["mean"], out["t_hi"], out["n"])]
    out["p_holm"] = math.nan
    if out.empty:
        out["holm_survives"] = pd.Series(dtype=bool)
        return out
    for _, idx in out.groupby(list(family), sort=False, observed=True).groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p"].to_numpy())
    out["holm_survives"] = out["p_holm"].to_numpy() <= alpha  # NaN -> False
    return out


def fmt_p(p: float) -> str:
    """``0.012``, ``<0.001``, ``1`` — or "—" when there is no test."""
    if p is None or pd.isna(p):
        return "—"
    if p < 0.001:
        return "<0.001"
    return "1" if p >= 0.9995 else f"{p:.3f}"


# ------------------------------------------------------------------ IQM and PoI


def _tasks(tasks: Tasks) -> list[np.ndarray]:
    out = [np.asarray(t, dtype=float) for t in tasks]
    out = [t[np.isfinite(t)] for t in out]
    if not out or any(t.size == 0 for t in out):
        raise ValueError("every task needs at least one finite score")
    return out


def iqm(tasks: Tasks) -> float:
    """Interquartile mean of every run of every task pooled (25% trimmed from each end)."""
    return float(sps.trim_mean(np.concatenate(_tasks(tasks)), IQM_CUT))


def _poi_task(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + ½ P(X = Y) over all pairs of the last axes (leading axes: resamples)."""
    gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return gt + 0.5 * eq


def probability_of_improvement(x_tasks: Tasks, y_tasks: Tasks) -> float:
    """Probability that a run of X beats a run of Y on the same task, averaged over tasks."""
    xs, ys = _tasks(x_tasks), _tasks(y_tasks)
    if len(xs) != len(ys):
        raise ValueError(f"X has {len(xs)} tasks, Y {len(ys)}: they must be the same tasks")
    return float(np.mean([_poi_task(x, y) for x, y in zip(xs, ys)]))


def _resample(rng: np.random.Generator, task: np.ndarray, reps: int) -> np.ndarray:
    """``reps`` resamples (rows) of one task's runs, with replacement, same size."""
    return task[rng.integers(0, task.size, size=(reps, task.size))]


def _percentile(values: np.ndarray, level: float) -> tuple[float, float]:
    alpha = 100.0 * (1.0 - level) / 2
    lo, hi = np.percentile(values, [alpha, 100.0 - alpha])
    return (float(lo), float(hi))


def stratified_bootstrap_iqm(tasks: Tasks, reps: int = BOOT_REPS, seed: int = BOOT_SEED,
                             level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of :func:`iqm` under runs resampled within each task."""
    ts = _tasks(tasks)
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([_resample(rng, t, reps) for t in ts], axis=1)
    return _percentile(sps.trim_mean(pooled, IQM_CUT, axis=1), level)


def stratified_bootstrap_poi(x_tasks: Tasks, y_tasks: Tasks, reps: int = BOOT_REPS,
                             seed: int = BOOT_SEED, level: float = 0.95
                             ) -> tuple[float, float]:
    """Percentile interval of :func:`probability_of_improvement` under X's and Y's runs
    resampled independently within each task."""
    xs, ys = _tasks(x_tasks), _tasks(y_tasks)
    if len(xs) != len(ys):
        raise ValueError(f"X has {len(xs)} tasks, Y {len(ys)}: they must be the same tasks")
    rng = np.random.default_rng(seed)
    per_task = [_poi_task(_resample(rng, x, reps), _resample(rng, y, reps))
                for x, y in zip(xs, ys)]
    return _percentile(np.mean(per_task, axis=0), level)


# --------------------------------------------------------------- from a matrix


#: Columns of :func:`aggregate_table`.
AGGREGATE_COLUMNS = ["variant", "arm", "reference", "tasks", "runs", "iqm", "iqm_lo",
                     "iqm_hi", "poi", "poi_lo", "poi_hi"]


def final_rows(epochs: pd.DataFrame) -> pd.DataFrame:
    """Each run's row at its last epoch."""
    return epochs.loc[epochs.groupby("run_id")["epoch"].idxmax()]


def aggregate_table(epochs: pd.DataFrame, pairs: Sequence[tuple[str, str]],
                    pair_axes: Sequence[str] = (), reps: int = BOOT_REPS,
                    seed: int = BOOT_SEED) -> pd.DataFrame:
    """Per arm variant: IQM of final test accuracy over every dataset and seed, and its
    probability of improvement over its reference, each with a 95% stratified-bootstrap
    interval.

    ``epochs``: ``MatrixResults.epochs`` (columns ``run_id, panel, arm, variant, seed, epoch,
    test_acc`` and ``pair_axes``). Tasks of the IQM: the panels the variant ran on. Tasks
    of the PoI: its (panel, ``pair_axes``) groups that the reference also ran, compared with
    the reference runs of the same group (``pair_axes``: the settings on which the reference
    itself varies, such as ``budget``, so a run at budget 0.2 is compared with the
    reference at 0.2). A variant with no reference has no PoI (NaN).
    """
    final = final_rows(epochs)
    refs = {arm: ref for arm, ref in pairs}
    rows = []
    for variant, mine in final.groupby("variant", sort=False, observed=True):
        arm = str(mine["arm"].iloc[0])
        by_panel = [g["test_acc"].to_numpy() for _, g in mine.groupby("panel", observed=True)]
        lo, hi = stratified_bootstrap_iqm(by_panel, reps, seed)
        row = {"variant": variant, "arm": arm, "reference": refs.get(arm, ""),
               "tasks": len(by_panel), "runs": len(mine), "iqm": iqm(by_panel),
               "iqm_lo": lo, "iqm_hi": hi, "poi": math.nan, "poi_lo": math.nan,
               "poi_hi": math.nan}
        ref = refs.get(arm)
        if ref is not None:
            theirs = final.loc[final["arm"] == ref]
            keys = ["panel", *[a for a in pair_axes
                               if theirs[a].astype(str).nunique(dropna=False) > 1]]
            xs, ys = [], []
            for key, g in mine.groupby(keys, observed=True, dropna=False):
                key = key if isinstance(key, tuple) else (key,)
                match = np.ones(len(theirs), dtype=bool)
                for col, value in zip(keys, key):
                    match &= (theirs[col].astype(str) == str(value)).to_numpy()
                if match.any():
                    xs.append(g["test_acc"].to_numpy())
                    ys.append(theirs.loc[match, "test_acc"].to_numpy())
            if xs:
                row["poi"] = probability_of_improvement(xs, ys)
                row["poi_lo"], row["poi_hi"] = stratified_bootstrap_poi(xs, ys, reps, seed)
        rows.append(row)
    return pd.DataFrame(rows, columns=AGGREGATE_COLUMNS)
