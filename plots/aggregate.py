"""Load every run folder of a matrix into tidy tables and write ``summary.csv``.

Why this is strict: a benchmark figure that silently averages a half-finished or
diverged run with finished ones is wrong in a way nobody can see. So only runs whose
``run.json`` says ``done`` *and* whose CSVs read back cleanly are used; every other run
folder is kept in :attr:`MatrixResults.runs` with the reason it was left out, and the CLI
and ``report.md`` list them.

Everything downstream (figures, report) works from :class:`MatrixResults`, never from
the folders, so the rules about what counts live in this one place.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats

# Of ``benchmarks``, plots imports only modules free of torch and fcntl (the dataset
# catalogue, the portable atomic writes, the matrix comparisons schema): it must run on a
# laptop without the runner (tests/test_boundaries.py).
from benchmarks.catalogue import BUILTINS
from benchmarks.files import temp_sibling

from .traits import RUN_KEY, ArmTable, MethodTraits, collect, missing_warning

#: The columns the trainer writes (docs/outputs.md, "Outputs"). Extra columns (sampler metrics) are kept.
ITERATION_COLUMNS = ("iteration", "epoch", "loss", "lr", "backprops", "forwards")
EPOCH_COLUMNS = ("epoch", "iteration", "train_loss", "test_loss", "test_acc", "backprops",
                 "forwards", "train_seconds", "eval_seconds")

#: Type and range of each column the trainer writes (an empty cell is judged by
#: :func:`_check_run`); any other column (sampler metrics) must be a finite number or empty.
_RANGES: dict[str, str] = {
    **dict.fromkeys(("epoch", "iteration", "backprops", "forwards", "diag_forwards"), "count"),
    **dict.fromkeys(("loss", "lr", "train_loss", "test_loss", "val_loss", "train_seconds",
                     "eval_seconds", "diag_seconds"), "nonneg"),
    "test_acc": "fraction", "val_acc": "fraction"}
_RULES = {"count": ("a whole number ≥ 0", lambda v: (v >= 0) & (v == np.round(v))),
          "nonneg": ("a finite number ≥ 0", lambda v: v >= 0),
          "fraction": ("in [0, 1]", lambda v: (v >= 0) & (v <= 1))}
#: Counters that never go down: along each file, and from one file's rows into the other's.
_CUMULATIVE = ("backprops", "forwards")

#: Spec keys that identify a run rather than being a property of the method; they never
#: split an arm into variants.
_NOT_VARIANT_KEYS = {"matrix", "run_id", "seed", "dataset", "arm"}
_NOT_VARIANT_PREFIXES = ("subset.",)

#: Why a run with this status is not used (the status itself is listed next to it).
_STATUS_REASONS = {
    "running": "not finished (still running, or killed before it could record a status)",
    "failed": "failed (see error)",
    "diverged": "diverged (NaN/inf loss): its curve stops early",
    "unknown": "run.json has no status",
}

#: Folders inside a matrix folder that are outputs, not runs.
_NOT_RUN_DIRS = {"figures"}

CONFIDENCE = 0.95

#: Epochs the ablation summary and the report read accuracy at (plus each run's final epoch).
CHECKPOINT_EPOCHS: tuple[int, ...] = (1, 5)


class ResultsError(Exception):
    """No usable results (missing folder, no finished run): a one-line message for the CLI."""


@dataclass(frozen=True)
class MatrixResults:
    """Everything the figures and the report need about one matrix.

    ``runs``: one row per run folder found (any status), with ``included`` and ``reason``.
    ``epochs``: one row per included run x epoch (= the contents of summary.csv).
    ``iterations``: one row per included run x optimizer step.
    ``datasets``: one row per panel (dataset as trained on: name + sizes), with its title.
    ``axes``: the RunSpec columns of ``epochs`` that identify a run (dataset, arm, ...).
    """

    matrix: str
    root: Path
    runs: pd.DataFrame
    epochs: pd.DataFrame
    iterations: pd.DataFrame
    datasets: pd.DataFrame
    axes: list[str]
    #: the methods' plot traits as the runner recorded them (:mod:`plots.traits`)
    traits: MethodTraits = field(default_factory=MethodTraits)

    @property
    def arm_styles(self) -> ArmTable:
        """The fixed arm colours and legend order the matrix's methods declare."""
        return self.traits.arm_styles()

    @property
    def left_out(self) -> pd.DataFrame:
        """Run folders not used, with status, reason and error."""
        return self.runs.loc[~self.runs["included"]].reset_index(drop=True)

    @property
    def panels(self) -> list[str]:
        """Dataset panels in a stable order (as the matrix lists them is unknown: by name)."""
        return list(self.datasets.index)

    def panel_title(self, panel: str, variants: Sequence[str] | None = None) -> str:
        """Title of one dataset panel: name, subset flag, train/test sizes, seed count.

        The sizes and the word "subset" are there so that a figure made on a reduced
        dataset can never be mistaken for the full benchmark.
        """
        row = self.datasets.loc[panel]
        return f"{row['label']} — {seeds_text(self.seed_counts(panel, variants))}"

    def seed_counts(self, panel: str, variants: Sequence[str] | None = None) -> pd.Series:
        """Number of seeds per variant in one panel (restricted to ``variants`` if given)."""
        df = self.epochs.loc[self.epochs["panel"] == panel]
        if variants is not None:
            df = df.loc[df["variant"].isin(list(variants))]
        return df.groupby("variant", observed=True)["seed"].nunique()


# ----------------------------------------------------------------------------- loading


def resolve_results_dir(matrix: str, results: Path | str = "results") -> Path:
    """``results/<matrix>/`` if it exists, else ``matrix`` read as a path; else ResultsError."""
    candidates = [Path(results) / matrix, Path(matrix)]
    for cand in candidates:
        if cand.is_dir():
            return cand
    raise ResultsError(
        f"no results folder for matrix {matrix!r}: looked in {candidates[0]}"
        + (f" and {candidates[1]}" if str(candidates[1]) != str(candidates[0]) else "")
        + f" (run `python -m benchmarks run {matrix}` first)")


def load_matrix(root: Path | str) -> MatrixResults:
    """Read every run folder under ``root``; raise ResultsError if none is usable."""
    root = Path(root)
    if not root.is_dir():
        raise ResultsError(f"results folder {root} does not exist")
    records: list[dict[str, Any]] = []
    epoch_frames: list[pd.DataFrame] = []
    iter_frames: list[pd.DataFrame] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name in _NOT_RUN_DIRS or folder.name.startswith((".", "_")):
            continue
        loaded = _load_run(folder)
        if loaded is None:
            continue
        record, epochs, iterations = loaded
        records.append(record)
        if record["included"]:
            epoch_frames.append(epochs)
            iter_frames.append(iterations)

    runs = pd.DataFrame.from_records(records, columns=_RUN_COLUMNS)
    if runs.empty:
        raise ResultsError(f"no run folders (with run.json) in {root}")
    if not runs["included"].any():
        counts = runs["status"].value_counts()
        what = ", ".join(f"{n} {s}" for s, n in counts.items())
        raise ResultsError(f"no finished runs in {root} ({len(runs)} run folders: {what})")

    matrix = _matrix_name(runs, root)
    spec_axes = _varying_spec_keys(runs.loc[runs["included"]])
    runs = _add_labels(runs, spec_axes)
    datasets = _dataset_table(runs.loc[runs["included"]])

    key_cols = ["run_id", "panel", "dataset", "n_train", "n_test", "arm", "variant",
                "sampler", "bank_size", "seed", *spec_axes]
    keys = runs.loc[runs["included"], key_cols]
    epochs = pd.concat(epoch_frames, ignore_index=True).merge(keys, on="run_id", how="left")
    epochs = epochs.sort_values(["panel", "arm", "bank_size", "variant", "seed", "epoch"],
                                kind="stable", na_position="first")
    # Wall-clock of the method: training time only. Evaluation is the same full-test-set
    # pass for every arm, i.e. benchmark overhead, not a cost of the sampler.
    # A missing time (e.g. epoch 0, where nothing was trained) counts as zero.
    seconds = epochs[["train_seconds", "eval_seconds"]].fillna(0.0).groupby(epochs["run_id"])
    epochs["cum_train_seconds"] = seconds["train_seconds"].cumsum()
    epochs["cum_seconds"] = seconds["train_seconds"].cumsum() + seconds["eval_seconds"].cumsum()
    lead = ["matrix", *key_cols]
    epochs.insert(0, "matrix", matrix)
    epochs = epochs[lead + [c for c in epochs.columns if c not in lead]].reset_index(drop=True)

    iterations = pd.concat(iter_frames, ignore_index=True).merge(
        keys[["run_id", "panel", "arm", "variant", "bank_size", "seed"]], on="run_id", how="left")
    for col in ("run_id", "panel", "arm", "variant"):
        iterations[col] = iterations[col].astype("category")

    traits = collect(root, zip(runs["sampler"], runs["plot_traits"]))
    if warning := missing_warning(runs.loc[runs["included"], "sampler"], traits):
        warnings.warn(warning, stacklevel=2)
    return MatrixResults(matrix=matrix, root=root, runs=runs.reset_index(drop=True),
                         epochs=epochs, iterations=iterations, datasets=datasets,
                         axes=["dataset", "arm", "bank_size", "seed", *spec_axes], traits=traits)


_RUN_COLUMNS = ["run_id", "folder", "status", "included", "reason", "error", "dataset",
                "n_train", "n_test", "subset", "arm", "sampler", "bank_size", "seed",
                "device", "seconds", "matrix", "flat_spec", "plot_traits", "noise_fraction"]


def _load_run(folder: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame] | None:
    """One run folder -> (record, epochs, iterations); None if it is not a run folder."""
    run_json, config = folder / "run.json", folder / "config.yaml"
    if not run_json.exists() and not config.exists():
        return None
    info: dict[str, Any] = {}
    record: dict[str, Any] = {col: None for col in _RUN_COLUMNS}
    record.update({"run_id": folder.name, "folder": str(folder), "status": "unknown",
                   "included": False, "reason": "", "error": "", "dataset": "?", "arm": "?",
                   "sampler": "?", "subset": False, "flat_spec": {}})
    try:
        if run_json.exists():
            info = json.loads(run_json.read_text())
        if not isinstance(info, dict):  # valid JSON, but not a run record
            raise ValueError(f"run.json holds a JSON {type(info).__name__}, not an object")
        spec = info.get("spec") or (yaml.safe_load(config.read_text()) if config.exists() else {})
        if not isinstance(spec, dict):
            raise ValueError(f"the run's spec is a {type(spec).__name__}, not a mapping")
    except (OSError, ValueError, yaml.YAMLError) as exc:
        record["reason"] = f"unreadable run.json/config.yaml: {exc}"
        return record, pd.DataFrame(), pd.DataFrame()
    record.update(_describe(folder, info, spec or {}))
    if not run_json.exists():
        record["reason"] = "no run.json (never started?)"
        return record, pd.DataFrame(), pd.DataFrame()
    if record["status"] != "done":
        record["reason"] = _STATUS_REASONS.get(record["status"], "not finished")
        return record, pd.DataFrame(), pd.DataFrame()
    try:
        epochs = _read_csv(folder / "epochs.csv", EPOCH_COLUMNS)
        iterations = _read_csv(folder / "iterations.csv", ITERATION_COLUMNS)
        problem = _check_run(spec or {}, epochs, iterations)
    except ValueError as exc:
        record["reason"] = f"done, but {exc}"
        return record, pd.DataFrame(), pd.DataFrame()
    if problem:
        record["reason"] = f"done, but {problem}"
        return record, pd.DataFrame(), pd.DataFrame()
    record["included"] = True
    epochs.insert(0, "run_id", record["run_id"])
    iterations.insert(0, "run_id", record["run_id"])
    return record, epochs, iterations


def _describe(folder: Path, info: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The run's identity (axes, dataset sizes, status) from run.json with config fallback."""
    data = info.get("dataset") or {}
    subset = spec.get("subset") or data.get("subset")
    sampler = spec.get("sampler") or {}
    n_train = data.get("n_train", (subset or {}).get("train") if isinstance(subset, dict) else None)
    n_test = data.get("n_test", (subset or {}).get("test") if isinstance(subset, dict) else None)
    bank = sampler.get("bank_size")
    return {
        "run_id": info.get("run_id") or folder.name,
        "status": str(info.get("status", "unknown")),
        "error": info.get("error") or "",
        "dataset": str(spec.get("dataset", data.get("name", "?"))),
        "n_train": _int_or_none(n_train),
        "n_test": _int_or_none(n_test),
        "subset": bool(subset),
        "arm": str(spec.get("arm") or sampler.get("name") or "?"),
        "sampler": str(sampler.get("name", "?")),
        "bank_size": _int_or_none(bank),
        "seed": _int_or_none(spec.get("seed")),
        "device": info.get("device") or "",
        "seconds": info.get("seconds"),
        "matrix": spec.get("matrix"),
        "flat_spec": _flatten(spec),
        "plot_traits": info.get(RUN_KEY) if isinstance(info.get(RUN_KEY), dict) else None,
        # the share of wrong training labels the run recorded (label_noise), else None
        "noise_fraction": _finite_or_none((data.get("label_noise") or {}).get("fraction")
                                          if isinstance(data.get("label_noise"), dict) else None),
    }


def _finite_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Read a trainer CSV, raising ValueError with a short reason when it is unusable.

    The trainer ends every row with a line end and writes every field of every row, so a
    file that ends inside a row, or a row with fewer fields than the header, was cut (a
    cut inside the last number would otherwise read as a smaller, plausible number).
    """
    if not path.exists():
        raise ValueError(f"{path.name} is missing")
    try:
        text = path.read_text(encoding="utf-8")
        df = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])  # "n/a": junk
        widths = [len(row) for row in csv.reader(io.StringIO(text))]
    except (OSError, ValueError, csv.Error, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        # ValueError covers UnicodeDecodeError (binary junk) and pandas' own parse errors
        raise ValueError(f"{path.name} is unreadable ({exc.__class__.__name__})") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name} lacks columns {missing}")
    if df.empty:
        raise ValueError(f"{path.name} has no rows")
    for col in df.columns:  # a junk line turns a column into text: name the first bad row
        numeric = pd.to_numeric(df[col], errors="coerce")
        bad = numeric.isna() & df[col].notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise ValueError(f"{path.name} has a non-numeric {col} in data row {row + 1} "
                             f"({str(df[col].iloc[row])[:20]!r})")
        df[col] = numeric
    if not text.endswith("\n"):
        raise ValueError(f"{path.name} ends inside its last row (the file was cut short)")
    short = [i for i, w in enumerate(widths) if w and w != widths[0]]
    if short:
        raise ValueError(f"{path.name} data row {short[0]} has {widths[short[0]]} fields, the "
                         f"header {widths[0]} (a row cut short?)")
    return df


def _check_run(spec: dict[str, Any], epochs: pd.DataFrame, iterations: pd.DataFrame) -> str | None:
    """Why a ``done`` run's CSVs do not add up, or None.

    The trainer writes one iterations.csv row per optimizer step, numbered 1..n, and one
    epochs.csv row per epoch 0..E whose ``iteration`` is the step count at its end, so
    the two files must agree with each other and with the spec's epoch count. A file cut
    short, padded, or with rows lost or repeated fails one of these checks and the run is
    left out (and listed) instead of being averaged in.
    """
    def whole(col: pd.Series) -> bool:
        v = col.to_numpy(dtype=float)
        return bool(np.isfinite(v).all() and (v == np.round(v)).all())

    for name, df, cols in (("iterations.csv", iterations, ("iteration", "epoch", "loss", "lr",
                                                            "backprops", "forwards")),
                           ("epochs.csv", epochs, ("epoch", "iteration", "test_loss", "test_acc",
                                                   "backprops", "forwards"))):
        for col in cols:
            values = df[col].to_numpy(dtype=float)
            if not np.isfinite(values).all():
                return f"{name} has an empty or non-finite {col}"
    for col in ("iteration", "epoch", "backprops", "forwards"):
        if not whole(iterations[col]) or not whole(epochs[col]):
            return f"a CSV has a non-integer {col}"
    problem = _range_problem("iterations.csv", iterations) or _range_problem("epochs.csv", epochs)
    if problem:
        return problem
    n = len(iterations)
    if iterations["iteration"].tolist() != list(range(1, n + 1)):
        return f"iterations.csv rows are not numbered 1..{n} (rows lost, repeated or out of order)"
    ep = epochs["epoch"].astype(int).tolist()
    if ep != list(range(len(ep))):
        return f"epochs.csv epochs are {ep[:3]}...{ep[-1:]}, not 0, 1, 2, ..."
    want_epochs = spec.get("epochs")
    if isinstance(want_epochs, int) and ep[-1] != want_epochs:
        return f"epochs.csv ends at epoch {ep[-1]}, but the run was for {want_epochs} epochs"
    trained = epochs.loc[epochs["epoch"] > 0, "train_loss"].to_numpy(dtype=float)
    if not np.isfinite(trained).all():
        return "epochs.csv has an empty or non-finite train_loss after epoch 0"
    ends = epochs["iteration"].astype(int).to_numpy()
    if ends[-1] != n:
        return f"iterations.csv has {n} rows, but epochs.csv says {ends[-1]} steps were trained"
    if ends[0] != 0 or (np.diff(ends) < 0).any():
        return "epochs.csv step counts do not start at 0 and grow"
    per_epoch = iterations.groupby(iterations["epoch"].astype(int)).size()
    for e, (lo, hi) in enumerate(zip(ends[:-1], ends[1:]), start=1):
        if int(per_epoch.get(e, 0)) != hi - lo:
            return (f"iterations.csv has {int(per_epoch.get(e, 0))} rows for epoch {e}, "
                    f"epochs.csv says {hi - lo}")
    if (np.diff(iterations["epoch"].to_numpy()) < 0).any():
        return "iterations.csv epochs go down (rows out of order)"
    # Both files count from the same counters: merged in step order (an epoch's row after
    # its last step), every counter only grows. A number cut short (864 read as 86) breaks it.
    order = np.lexsort((np.r_[np.zeros(n), np.ones(len(ends))], np.r_[np.arange(1, n + 1), ends]))
    for col in _CUMULATIVE:
        for name, values in (("iterations.csv", iterations[col].to_numpy()),
                             ("epochs.csv", epochs[col].to_numpy())):
            drop = np.flatnonzero(np.diff(values) < 0)
            if drop.size:
                return (f"{name} {col} goes down in data row {drop[0] + 2} ({values[drop[0]]:g} "
                        f"then {values[drop[0] + 1]:g}): a number cut short?")
        merged = np.r_[iterations[col].to_numpy(), epochs[col].to_numpy()][order]
        if (np.diff(merged) < 0).any():
            return f"epochs.csv {col} disagrees with iterations.csv (counts of the same steps)"
    return None


def _range_problem(name: str, df: pd.DataFrame) -> str | None:
    """The first value of ``df`` outside its column's type and range (:data:`_RANGES`), or None."""
    for col in df.columns:
        values = df[col].to_numpy(dtype=float)
        rule, ok = _RULES.get(_RANGES.get(col, ""), ("finite", lambda v: np.isfinite(v)))
        bad = np.flatnonzero(~np.isnan(values) & ~(np.isfinite(values) & ok(values)))
        if bad.size:
            return (f"{name} has {col} = {values[bad[0]]:g} in data row {bad[0] + 1}; "
                    f"it must be {rule}")
    return None


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) \
            else int(value)
    except (TypeError, ValueError):
        return None


def _flatten(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested spec -> {"optimizer.lr": 0.1, ...} with scalar leaves (lists as strings)."""
    flat: dict[str, Any] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def _matrix_name(runs: pd.DataFrame, root: Path) -> str:
    names = runs.loc[runs["included"], "matrix"].dropna().unique()
    return str(names[0]) if len(names) == 1 else root.name


def _varying_spec_keys(included: pd.DataFrame) -> list[str]:
    """Spec keys (besides the fixed axes) that differ between runs of one arm on one dataset.

    These are the matrix's extra axes (e.g. ``optimizer.lr`` in a learning-rate sweep of
    one arm); they become summary.csv columns and split arms into variants so they are
    never averaged together. Differences *between* arms are what the arm name already
    stands for (an arm is a named bundle of overrides), so they are not axes.
    """
    skip = _NOT_VARIANT_KEYS | {"sampler.bank_size", "sampler.name"}
    keys: list[str] = []
    for _, group in included.groupby(["arm", "dataset"]):
        flat = pd.DataFrame(list(group["flat_spec"]))
        for col in flat.columns:
            if col in skip or col.startswith(_NOT_VARIANT_PREFIXES) or col in keys:
                continue
            if flat[col].astype(str).nunique(dropna=False) > 1:
                keys.append(col)
    return sorted(keys)


def _add_labels(runs: pd.DataFrame, spec_axes: list[str]) -> pd.DataFrame:
    """Add ``panel`` (dataset as trained on) and ``variant`` (what one line stands for).

    ``variant`` is the arm name, extended by the bank size and any other axis that takes
    several values *within* that arm (``impon (N=50)``), so a line is always a mean over
    seeds of one configuration only.
    """
    runs = runs.copy()
    for key in spec_axes:
        runs[key] = [fs.get(key) for fs in runs["flat_spec"]]
    runs["bank_size"] = runs["bank_size"].astype("Int64")
    runs["seed"] = runs["seed"].astype("Int64")
    runs["n_train"] = runs["n_train"].astype("Int64")
    runs["n_test"] = runs["n_test"].astype("Int64")

    sizes = runs.loc[runs["included"]].groupby("dataset")[["n_train", "n_test"]].nunique()
    ambiguous = set(sizes.index[(sizes > 1).any(axis=1)])
    runs["panel"] = [
        f"{d} ({nt}/{ne})" if d in ambiguous else d
        for d, nt, ne in zip(runs["dataset"], runs["n_train"], runs["n_test"])
    ]

    inc = runs.loc[runs["included"]]
    split_keys: dict[str, list[str]] = {}
    for arm, group in inc.groupby("arm"):
        split_keys[arm] = [k for k in ["bank_size", *spec_axes]
                           if group[k].astype(str).nunique(dropna=False) > 1]

    def variant(row: pd.Series) -> str:
        parts = []
        for key in split_keys.get(row["arm"], []):
            value = row[key]
            parts.append(f"N={value}" if key == "bank_size" else f"{key}={value}")
        return f"{row['arm']} ({', '.join(parts)})" if parts else row["arm"]

    runs["variant"] = runs.apply(variant, axis=1) if len(runs) else []
    return runs


def _dataset_table(included: pd.DataFrame) -> pd.DataFrame:
    """One row per panel: name, sizes, whether it is reduced, and the title label."""
    rows = []
    for panel, group in included.groupby("panel", sort=True):
        first = group.iloc[0]
        name = first["dataset"]
        reduced = bool(group["subset"].any()) or name not in BUILTINS  # any other: prepared
        rows.append({"panel": panel, "dataset": name, "n_train": first["n_train"],
                     "n_test": first["n_test"], "reduced": reduced,
                     "label": dataset_label(name, first["n_train"], first["n_test"], reduced)})
    return pd.DataFrame(rows).set_index("panel")


def dataset_label(name: str, n_train: Any, n_test: Any, reduced: bool) -> str:
    """``CIFAR-10 (train 50,000 / test 10,000)`` or ``cifar10-5k [subset] (train 5,170 / ...)``."""
    display = BUILTINS[name].title if not reduced and name in BUILTINS else name
    tag = " [subset]" if reduced else ""
    return f"{display}{tag} (train {_count(n_train)} / test {_count(n_test)})"


def _count(n: Any) -> str:
    return "?" if n is None or pd.isna(n) else f"{int(n):,}"


def seeds_text(counts: pd.Series) -> str:
    """"3 seeds", or "2–3 seeds per arm" when arms differ (e.g. a failed seed)."""
    if counts.empty:
        return "0 seeds"
    lo, hi = int(counts.min()), int(counts.max())
    if lo == hi:
        return f"{lo} seed" + ("" if lo == 1 else "s")
    return f"{lo}–{hi} seeds per arm"


# ------------------------------------------------------------------------ statistics


@functools.lru_cache(maxsize=256)
def _t_quantile(dof: int, level: float) -> float:
    return float(stats.t.ppf(0.5 + level / 2, dof))


def t_interval(values: Sequence[float] | np.ndarray, level: float = CONFIDENCE
               ) -> tuple[float, float]:
    """Two-sided Student-t confidence interval of the mean over seeds.

    Why t and not seaborn's bootstrap: with the 2-5 seeds a benchmark affords, a
    bootstrap interval can never be wider than the range of the seeds and so is far too
    narrow; the t-interval is the honest small-sample interval. One seed -> no band.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan, math.nan)
    mean = float(v.mean())
    if v.size < 2:
        return (mean, mean)
    half = _t_quantile(v.size - 1, level) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return (mean - half, mean + half)


def seed_stats(df: pd.DataFrame, by: Sequence[str], value: str,
               level: float = CONFIDENCE) -> pd.DataFrame:
    """Mean, sample std, n and the t-interval (``lo``, ``hi``) of ``value`` over seeds.

    Vectorised twin of :func:`t_interval` (same formula), for tables and cost curves.
    """
    out = (df.groupby(list(by), observed=True, sort=False)[value]
           .agg(mean="mean", std="std", n="count").reset_index())
    quantile = np.array([_t_quantile(int(n) - 1, level) if n >= 2 else 0.0 for n in out["n"]])
    half = np.where(out["n"] >= 2, quantile * out["std"].fillna(0.0) / np.sqrt(out["n"]), 0.0)
    out["lo"], out["hi"] = out["mean"] - half, out["mean"] + half
    return out


def checkpoints(epochs: pd.DataFrame, at: Sequence[int] = CHECKPOINT_EPOCHS) -> pd.DataFrame:
    """Each run's rows at the epochs ``at`` and at its final epoch, labelled.

    ``checkpoint`` is "epoch 1", "epoch 5" or "final"; the final epoch number stays in
    ``epoch``. Runs shorter than an epoch in ``at`` simply have no row for it.
    """
    final = epochs.loc[epochs.groupby("run_id")["epoch"].idxmax()].assign(checkpoint="final")
    fixed = [epochs.loc[epochs["epoch"] == e].assign(checkpoint=f"epoch {e}") for e in at]
    return pd.concat([*fixed, final], ignore_index=True)


# ------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only on success.

    A reader (or a second ``make plots``) then never sees a half-written file.
    The temporary name keeps the suffix so tools that infer the format from it work.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # benchmarks.files.temp_sibling: umask mode (not mkstemp's 0600), stale temps of
    # interrupted writes removed, and the temp locked against a concurrent cleaner.
    with temp_sibling(path, prefix=f".{path.stem}.", suffix=path.suffix) as (_, tmp):
        yield tmp
        os.replace(tmp, path)


def write_summary(results: MatrixResults, path: Path | None = None) -> Path:
    """Write ``summary.csv``: one row per included run x epoch, RunSpec axes as columns."""
    path = path or results.root / "summary.csv"
    with atomic_path(path) as tmp:
        results.epochs.to_csv(tmp, index=False)
    return path
