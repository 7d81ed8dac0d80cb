"""The setup a matrix's results were produced with, read back from each run's ``run.json``.

Why: a table of accuracies means nothing without the optimizer, learning rate, model
width, epochs and code version behind it, and a reader should not have to open YAML
files to find them. Everything here comes from the runs themselves (``run.json``: the
resolved spec, git commit and dirty flag, library versions, device), not from the matrix
file, so the report describes what actually ran, even if the matrix was edited since.

Runs of one matrix made from different commits (or from a dirty tree) are flagged: their
differences may be code changes rather than method differences.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .aggregate import MatrixResults
from .style import arm_order
from .traits import ArmTable

#: Spec keys shown per arm (the rest of the sampler's keys go to "sampler parameters").
_OPTIMIZER_EXTRA = ("momentum", "nesterov", "weight_decay", "betas", "eps")


@dataclass(frozen=True)
class Provenance:
    """Per included run: arm, spec, commit, dirty flag, versions and device."""

    runs: pd.DataFrame  # columns: run_id, arm, spec, commit, dirty, torch, cuda, device
    styles: ArmTable = ArmTable()  # the arms' legend order (the methods' plot traits)

    @property
    def commits(self) -> pd.DataFrame:
        """One row per (commit, dirty) with the number of runs, most runs first."""
        counts = (self.runs.groupby(["commit", "dirty"], dropna=False).size()
                  .rename("runs").reset_index().sort_values("runs", ascending=False))
        return counts.reset_index(drop=True)

    @property
    def mixed(self) -> bool:
        """Runs come from more than one commit."""
        return self.runs["commit"].fillna("?").nunique() > 1

    @property
    def dirty(self) -> bool:
        """Some run was made from a working tree with uncommitted changes."""
        return bool(self.runs["dirty"].fillna(False).astype(bool).any())

    def caption_note(self) -> str:
        """A sentence for figure captions when the code version is not one clean commit."""
        if self.mixed:
            n = self.runs["commit"].fillna("?").nunique()
            return (f"Caution: these runs come from {n} different git commits "
                    "(see the setup table of report.md).")
        if self.dirty:
            return "Caution: runs were made from a working tree with uncommitted changes."
        return ""


def provenance(res: MatrixResults) -> Provenance:
    """Read ``run.json`` of every included run (already validated by the loader)."""
    rows = []
    for _, run in res.runs.loc[res.runs["included"]].iterrows():
        info = _read_json(Path(str(run["folder"])) / "run.json")
        git = info.get("git") or {}
        versions = info.get("versions") or {}
        rows.append({"run_id": run["run_id"], "arm": run["arm"], "seed": run["seed"],
                     "spec": info.get("spec") or {}, "commit": git.get("commit"),
                     "dirty": git.get("dirty"), "torch": versions.get("torch"),
                     "cuda": versions.get("cuda"), "device": info.get("device") or ""})
    return Provenance(pd.DataFrame(rows, columns=["run_id", "arm", "seed", "spec", "commit",
                                                  "dirty", "torch", "cuda", "device"]),
                      res.arm_styles)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _num(value: Any) -> str:
    """1e-3 -> "0.001", 5e-4 -> "5e-04" -> "5e-4": short and unambiguous."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:g}"
        return text.replace("e-0", "e-").replace("e+0", "e+")
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_num(v) for v in value) + ")"
    return str(value)


def _join(values: Iterable[str]) -> str:
    """Distinct values in first-seen order; several are joined with " / "."""
    return " / ".join(dict.fromkeys(v for v in values if v)) or "—"


def optimizer_text(spec: dict[str, Any]) -> str:
    opt = spec.get("optimizer") or {}
    extras = [f"{k.replace('_', ' ')} {_num(opt[k])}" for k in _OPTIMIZER_EXTRA if k in opt]
    return f"{opt.get('name', '?')}" + (f" ({', '.join(extras)})" if extras else "")


def schedule_text(spec: dict[str, Any]) -> str:
    sched = dict(spec.get("schedule") or {})
    name = sched.pop("name", "?")
    if name == "linear" and "final_lr" in sched:
        return f"linear per step to {_num(sched.pop('final_lr'))}" + (
            f" ({', '.join(f'{k} {_num(v)}' for k, v in sched.items())})" if sched else "")
    return name + (f" ({', '.join(f'{k} {_num(v)}' for k, v in sched.items())})"
                   if sched else "")


def sampler_text(spec: dict[str, Any]) -> str:
    sampler = dict(spec.get("sampler") or {})
    name = sampler.pop("name", "?")
    params = ", ".join(f"{k} {_num(v)}" for k, v in sampler.items())
    return f"{name}" + (f": {params}" if params else "")


def arm_table(prov: Provenance) -> pd.DataFrame:
    """Per arm: optimizer, lr, schedule, sampler and its parameters (from the runs)."""
    rows = []
    for arm in arm_order(prov.runs["arm"], prov.styles):
        specs = list(prov.runs.loc[prov.runs["arm"] == arm, "spec"])
        rows.append({
            "arm": arm,
            "optimizer": _join(optimizer_text(s) for s in specs),
            "lr": _join(_num((s.get("optimizer") or {}).get("lr", "?")) for s in specs),
            "schedule": _join(schedule_text(s) for s in specs),
            "sampler": _join(sampler_text(s) for s in specs),
            "budget": _join(_num(s["budget"]) for s in specs if s.get("budget") is not None),
        })
    return pd.DataFrame(rows)


def common_table(res: MatrixResults, prov: Provenance) -> list[tuple[str, str]]:
    """(item, value) rows shared by the matrix: model, epochs, batch, data, code, machine."""
    specs = list(prov.runs["spec"])

    def values(fn: Any) -> str:
        return _join(str(fn(s)) for s in specs)

    def model(s: dict[str, Any]) -> str:
        m = s.get("model") or {}
        extra = "".join(f", {k} {_num(v)}" for k, v in m.items()
                        if k not in ("name", "width") and not (k == "stem" and v == "cifar"))
        return f"{m.get('name', '?')}, width {_num(m.get('width', 1.0))}{extra}"

    def noise(s: dict[str, Any]) -> str:
        n = s.get("label_noise")
        if not n:
            return "none"
        if n.get("kind") == "human":
            return f"human (CIFAR-N {n.get('labels')})"
        rate = f"{100 * float(n.get('rate', 0)):g}%"
        return f"{n['kind']} {rate}" + (f", map {n['map']}" if n.get("map") else "")

    rows = [("model", values(model)),
            ("epochs", values(lambda s: s.get("epochs", "?"))),
            ("batch size", values(lambda s: s.get("batch_size", "?")))]
    budgets = [s.get("budget") for s in specs if s.get("budget") is not None]
    if budgets:
        rows.append(("budget (fraction of each epoch trained)", _join(_num(b) for b in budgets)))
    data = "; ".join(f"{row['label']}" for _, row in res.datasets.iterrows())
    rows.append(("datasets", data))
    if any(s.get("label_noise") for s in specs):  # clean matrices: no row (as before the key)
        rows.append(("training-label noise (test labels clean)", values(noise)))
    seeds = sorted({int(s) for s in prov.runs["seed"].dropna()})
    per_arm = prov.runs.groupby("arm")["seed"].nunique()
    seed_text = f"{len(seeds)} ({', '.join(map(str, seeds))})"
    if per_arm.nunique() > 1:
        seed_text += "; per arm " + ", ".join(f"{a} {n}" for a, n in per_arm.items())
    rows.append(("seeds", seed_text))
    commits = prov.commits
    commit_text = "; ".join(
        f"`{str(c)[:10] if isinstance(c, str) else '?'}`"
        + (" (dirty)" if d is True else "" if d is False else " (dirty flag unknown)")
        + (f" — {n} runs" if len(commits) > 1 else "")
        for c, d, n in commits[["commit", "dirty", "runs"]].itertuples(index=False))
    if prov.mixed:
        commit_text = "**MIXED** — " + commit_text
    rows.append(("git commit", commit_text))
    rows.append(("torch", _join(str(v) for v in prov.runs["torch"].dropna())))
    rows.append(("CUDA (build)", _join(str(v) for v in prov.runs["cuda"].fillna("none"))))
    rows.append(("devices", _join(prov.runs["device"])))
    return rows
