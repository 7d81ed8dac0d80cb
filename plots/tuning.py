"""Learning-rate tuning on the validation split: pick each arm's best LR, never on test.

A learning-rate sweep (``benchmarks/matrices/lr_sweep.yaml``, ``cpu_lr_sweep.yaml``) trains
every arm at several ``optimizer.lr`` values with ``validation: N``, so every run also
logs ``val_loss``/``val_acc`` on examples held out of its training set. This module

- picks, per arm (and dataset, and any other axis of the sweep), the learning rate with the
  highest **final validation accuracy, mean over seeds** (ties: lower mean final
  validation loss, then the smaller learning rate);
- writes ``best_lr.csv`` and a section of ``report.md`` with the whole sweep table;
- writes ``tuned.yaml``: a matrix (``<sweep>_tuned``) that reruns every arm at its own
  best learning rate with :data:`TUNED_SEEDS`, everything else as in the sweep (the same
  validation split, so the tuned runs train on exactly the data the LR was chosen on), to
  be compared **on test** with ``python -m plots <sweep>_tuned``. Its header invites
  editing, so a rerun never overwrites an edited one (:func:`write_generated`).

Why the care: with one LR per arm taken from a paper, "the sampler helps" and "this arm's
learning rate happened to suit this setup better" cannot be told apart. Tuning each arm
on held-out data and reporting on test separates them. The choice reads only the
``val_*`` columns: :func:`lr_sweep_table` selects its columns by name before doing
anything, so the test split can never influence it (a test pins this).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .aggregate import MatrixResults, atomic_path

LR_KEY = "optimizer.lr"
TUNED_SEEDS = (0, 1, 2)
SECTION = "## Learning rate chosen on validation"
#: Columns the choice may read. Anything named test_* is deliberately absent.
_VAL_COLUMNS = ("val_acc", "val_loss")
#: Second line of a generated file: the sha256 of the rest of it, as generated.
_HASH_PREFIX = "# generated-sha256: "
_HASH_NOTE = " (while this matches, `python -m plots` may replace this file; once edited, it never does)"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _unedited(text: str) -> bool:
    """True if ``text`` is a generated file exactly as generated (its hash line matches)."""
    head, sep, rest = text.partition("\n")
    line, sep2, body = rest.partition("\n")
    if not (sep and sep2 and line.startswith(_HASH_PREFIX)):
        return False
    return line[len(_HASH_PREFIX):].split(" ", 1)[0] == _digest(head + "\n" + body)


def write_generated(path: Path, text: str) -> Path:
    """Write generated ``text`` (whose first line is a comment) to ``path``, never over edits.

    Why: the file invites hand edits (seeds), and a rerun of the plots must not silently
    throw them away. ``path`` is written if absent or unchanged since generated (a hash of
    the generated text sits on its second line); if it already holds this very text
    (also in the older form without hash line) it is left alone, byte for byte; otherwise
    the fresh text goes to ``<stem>.new<suffix>`` next to it, whose path is returned.
    """
    head, _, body = text.partition("\n")
    stamped = f"{head}\n{_HASH_PREFIX}{_digest(text)}{_HASH_NOTE}\n{body}"
    if path.exists():
        old = path.read_text(encoding="utf-8", errors="replace")
        if old in (text, stamped):
            return path
        if not _unedited(old):
            path = path.with_name(f"{path.stem}.new{path.suffix}")
    with atomic_path(path) as tmp:
        tmp.write_text(stamped, encoding="utf-8")
    return path


def kept_note(written: Path) -> str | None:
    """What to tell the user when :func:`write_generated` kept an edited file, else None."""
    if not written.stem.endswith(".new"):
        return None
    kept = written.with_name(written.name.replace(".new.", ".", 1))
    return (f"kept {kept.name}: edited since it was generated; the matrix generated now is "
            f"{written.name}, compare the two and merge by hand")


def has_validation(res: MatrixResults) -> bool:
    """True if some included run logged validation accuracy."""
    return "val_acc" in res.epochs.columns and bool(res.epochs["val_acc"].notna().any())


def _group_keys(res: MatrixResults) -> list[str]:
    """What one choice is made for: panel, arm and every sweep axis except lr and seed."""
    return ["panel", "arm", *[a for a in res.axes if a not in ("dataset", "arm", "seed", LR_KEY)]]


def _lr_of_runs(res: MatrixResults) -> pd.Series:
    """Each run's ``optimizer.lr`` from its spec (run_id -> lr)."""
    return pd.Series({r: float(fs.get(LR_KEY, float("nan")))
                      for r, fs in zip(res.runs["run_id"], res.runs["flat_spec"])}, name="lr")


def lr_sweep_table(res: MatrixResults) -> pd.DataFrame:
    """One row per (group, lr): seeds, mean/std of the final-epoch val_acc and val_loss,
    and ``chosen`` (True on each group's best learning rate)."""
    keys = _group_keys(res)
    # Only these columns are read from here on: no test_* column can reach the choice.
    ep = res.epochs[["run_id", "seed", "epoch", *keys, *_VAL_COLUMNS]].copy()
    final = ep.loc[ep.groupby("run_id")["epoch"].idxmax()]
    final = final.assign(lr=final["run_id"].map(_lr_of_runs(res))).dropna(subset=["val_acc"])
    if final.empty:
        return pd.DataFrame(columns=[*keys, "lr", "seeds", "val_acc", "val_acc_std",
                                     "val_loss", "example_run", "chosen"])
    table = (final.groupby([*keys, "lr"], dropna=False, observed=True, sort=True)
             .agg(seeds=("seed", "nunique"), val_acc=("val_acc", "mean"),
                  val_acc_std=("val_acc", "std"), val_loss=("val_loss", "mean"),
                  example_run=("run_id", "first"))
             .reset_index())
    order = table.sort_values(["val_acc", "val_loss", "lr"], ascending=[False, True, True],
                              kind="stable")
    best = order.groupby(keys, dropna=False, observed=True, sort=False).head(1).index
    table["chosen"] = table.index.isin(best)
    return table


def best_lrs(res: MatrixResults) -> pd.DataFrame:
    """The chosen rows of :func:`lr_sweep_table`, plus how many LRs were compared."""
    table = lr_sweep_table(res)
    keys = _group_keys(res)
    counts = table.groupby(keys, dropna=False, observed=True)["lr"].transform("count")
    return table.assign(lrs_compared=counts).loc[table["chosen"]].drop(columns="chosen") \
        .reset_index(drop=True)


def tuned_matrix(res: MatrixResults, best: pd.DataFrame) -> dict[str, Any]:
    """A matrix that reruns each chosen (arm, lr) with :data:`TUNED_SEEDS`.

    Each arm carries the full resolved spec of a sweep run at its best learning rate
    (dataset, subset and validation included), so nothing but the seed changes."""
    folders = dict(zip(res.runs["run_id"], res.runs["folder"]))
    keys = _group_keys(res)
    multi_panel = best["panel"].nunique() > 1
    arms = []
    for _, row in best.iterrows():
        spec = json.loads(Path(folders[row["example_run"]], "run.json").read_text())["spec"]
        body = {k: v for k, v in spec.items() if k not in ("matrix", "seed", "arm")}
        suffix = [str(spec["dataset"])] if multi_panel else []
        # a key names the tuned arm only where this arm has several values of it (a real
        # sweep axis such as bank size); a constant like IMPON's bank size does not
        mine = best.loc[best["arm"] == row["arm"]]
        suffix += [f"{k.split('.')[-1]}{row[k]}" for k in keys[2:]
                   if pd.notna(row[k]) and mine[k].nunique(dropna=True) > 1]
        arms.append({"name": "_".join([str(row["arm"]), *suffix]), **body})
    return {"name": f"{res.matrix}_tuned",
            "description": (f"Every arm of {res.matrix} at the learning rate chosen on its "
                            f"validation split (python -m plots {res.matrix}: best_lr.csv), "
                            f"{len(TUNED_SEEDS)} seeds; compare the arms on test."),
            "grid": {"seed": list(TUNED_SEEDS), "arm": arms}}


def _fmt(mean: float, std: float, n: int) -> str:
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if n > 1 and pd.notna(std) else "")


def report_section(res: MatrixResults, table: pd.DataFrame, tuned: Path) -> list[str]:
    keys = _group_keys(res)
    rows = []
    for _, r in table.iterrows():
        group = " / ".join(str(r[k]) for k in keys if pd.notna(r[k]))
        rows.append(f"| {group} | {r['lr']:g} | {int(r['seeds'])} | "
                    f"{_fmt(r['val_acc'], r['val_acc_std'], int(r['seeds']))} | "
                    f"{r['val_loss']:.4f} | {'**best**' if r['chosen'] else ''} |")
    return [SECTION, "",
            "Final validation accuracy (%, mean ± std over seeds) of every arm at every learning "
            "rate of the sweep; the validation examples are held out of the training set. The "
            "best per arm (ties: lower validation loss) is in [best_lr.csv](best_lr.csv). "
            "Test accuracy is not used to choose anything.", "",
            f"| {' / '.join(keys)} | lr | seeds | val acc | val loss | |",
            "|---|---|---|---|---|---|", *rows, "",
            f"Rerun every arm at its own best learning rate with seeds {list(TUNED_SEEDS)} and "
            f"compare on test: `python -m benchmarks run {tuned}` then "
            f"`python -m plots {res.matrix}_tuned`.", "",
            *([f"**Note:** {kept_note(tuned)}.", ""] if kept_note(tuned) else [])]


def write_tuning_files(res: MatrixResults) -> tuple[list[Path], list[str]] | None:
    """For a matrix with validation columns that compares at least two learning rates for
    some arm: write best_lr.csv and tuned.yaml and return them with the report section
    (lines; ``python -m plots`` puts it before "Runs left out"). None, nothing written,
    for any other matrix."""
    if not has_validation(res):
        return None
    table = lr_sweep_table(res)
    if table.empty:
        return None
    best = best_lrs(res)
    if best["lrs_compared"].max() < 2:
        # one lr per arm (e.g. the tuned reruns themselves): nothing was chosen, and a
        # "tuned" matrix of it would only rename the same runs
        return None
    root = res.root
    with atomic_path(root / "best_lr.csv") as tmp:
        best.to_csv(tmp, index=False)
    header = (f"# Generated by `python -m plots {res.matrix}` from the validation accuracy of "
              "the sweep; edit the seeds if you like.\n")
    tuned = write_generated(root / "tuned.yaml",
                            header + yaml.safe_dump(tuned_matrix(res, best), sort_keys=False))
    return [root / "best_lr.csv", tuned], report_section(res, table, tuned)


def write_tuning(res: MatrixResults) -> list[Path]:
    """:func:`write_tuning_files`, plus its section put into an existing report.md (an
    older one replaced): [best_lr.csv, tuned.yaml, report.md], or [] when there is no
    tuning. ``python -m plots`` renders the section with the rest of the report instead."""
    made = write_tuning_files(res)
    if made is None:
        return []
    files, section = made
    report = res.root / "report.md"
    text = report.read_text(encoding="utf-8") if report.exists() else ""
    if SECTION in text:  # an older section: replace it (up to the next "## ")
        head, _, tail = text.partition(SECTION)
        rest = tail.split("\n## ", 1)
        text = head + ("## " + rest[1] if len(rest) > 1 else "")
    marker = "## Runs left out"
    block = "\n".join(section) + "\n"
    text = text.replace(marker, block + marker, 1) if marker in text else text + "\n" + block
    with atomic_path(report) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return [*files, report]
