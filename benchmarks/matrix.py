"""Matrix files: ``defaults`` + ``grid`` axes -> the list of RunSpecs.

Validation reports *every* problem at once, each with the path where the user wrote the
offending key (``grid.arm[3].sampler.bank_sise: unknown key (did you mean bank_size?)``),
before anything runs.

Grid axes: ``dataset``, ``seed``, ``arm`` (named bundles of overrides: the sampler axis),
``bank_size`` (sets ``sampler.bank_size``; only for samplers with a bank) and any other
RunSpec key, dotted for nested ones (``model.width: [0.25, 0.5]``). The run list is the
cartesian product, in axis order dataset, arm, bank_size, other axes, seed.
"""
from __future__ import annotations

import copy
import difflib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import samplers

from . import comparisons, yamlsafe
from .config import ALL_KEYS, RunSpec, deep_merge, identifier_problem, resolve
from .errors import UserError

MATRIX_DIR = Path(__file__).resolve().parent / "matrices"
MATRIX_KEYS = ("name", "description", "defaults", "grid", "reference", "comparisons")
ORDER = ("dataset", "arm", "bank_size")


@dataclass(frozen=True)
class Matrix:
    name: str
    description: str
    path: Path
    runs: tuple[RunSpec, ...]
    #: (arm, reference arm) pairs for the paired comparisons of ``plots`` (not in any
    #: RunSpec, so they never change run ids); see :mod:`benchmarks.comparisons`.
    comparisons: tuple[tuple[str, str], ...] = ()
    #: One-line remarks for the CLI to print (e.g. a reference arm left out by ``--set arm=``).
    notes: tuple[str, ...] = ()


def find(matrix: str) -> Path:
    """A path to a YAML file, or the name of one in ``benchmarks/matrices``."""
    p = Path(matrix)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise UserError(f"{matrix}: no such matrix file")
        return p
    candidate = MATRIX_DIR / f"{matrix}.yaml"
    if candidate.is_file():
        return candidate
    names = sorted(q.stem for q in MATRIX_DIR.glob("*.yaml"))
    hint = difflib.get_close_matches(matrix, names, n=1)
    extra = f" (did you mean {hint[0]}?)" if hint else ""
    raise UserError(f"{matrix}: unknown matrix{extra}; give a YAML path or one of: {', '.join(names)}")


def _nested(dotted: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cur = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value
    return out


def _has_path(tree: Any, dotted: str) -> bool:
    cur = tree
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return False
        cur = cur[part]
    return True


def _attribute(problem: str, sources: list[tuple[str, Mapping[str, Any]]]) -> str:
    """Rewrite ``path: msg`` so that path points into the source that wrote the key."""
    path, sep, msg = problem.partition(": ")
    if not sep:
        return problem
    key = path
    while key:
        for label, tree in sources:
            if _has_path(tree, key):
                return f"{label}.{path}: {msg}" if label else f"{path}: {msg}"
        key = key.rpartition(".")[0]
    return f"{sources[-1][0]}.{path}: {msg}" if sources and sources[-1][0] else problem


def _pop_path(tree: dict[str, Any], dotted: str) -> Any:
    """Remove ``dotted`` from the nested ``tree`` (pruning emptied parents); return its value."""
    *parents, leaf = dotted.split(".")
    chain = [tree]
    for part in parents:
        chain.append(chain[-1][part])
    value = chain[-1].pop(leaf)
    for parent, part in zip(reversed(chain[:-1]), reversed(parents)):
        if not parent[part]:
            del parent[part]
    return value


def _set_replaces_axes(axes: dict[str, list[Any]], overrides: dict[str, Any],
                       problems: list[str]) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """A ``--set`` of a grid axis replaces that axis by the one value given.

    Why: ``--set`` means "every run uses this value". Applying it on top of an axis would
    either be silently undone by the axis (``seed``, ``dataset``: the grid wins) or turn
    the axis into copies of one run. So ``--set seed=5`` runs seed 5 only, ``--set
    dataset=svhn`` runs svhn only, ``--set model.width=0.5`` (a ``model.width`` axis)
    width 0.5 only, ``--set sampler.bank_size=400`` a ``bank_size`` axis at 400 only, and
    ``--set arm=NAME`` keeps only the arm called NAME (an error if there is none).
    """
    axes, overrides = dict(axes), copy.deepcopy(overrides)
    for axis in list(axes):
        dotted = "sampler.bank_size" if axis == "bank_size" else axis
        for key in dict.fromkeys((axis, dotted)):
            if not _has_path(overrides, key):
                continue
            value = _pop_path(overrides, key)
            if axis == "arm":
                picked = [a for a in axes["arm"] if isinstance(a, Mapping) and a.get("name") == value]
                if not picked:
                    names = [str(a.get("name")) for a in axes["arm"] if isinstance(a, Mapping)]
                    problems.append(f"--set arm={value}: no arm of that name; the matrix has "
                                    f"{', '.join(names)}")
                    picked = axes["arm"]
                axes["arm"] = picked
            else:
                axes[axis] = [value]
    return axes, overrides


def load(matrix: str, overrides: Mapping[str, Any] | None = None) -> Matrix:
    """Read, validate and expand a matrix; UserError lists every problem."""
    path = find(matrix)
    doc = yamlsafe.load_file(path)  # UTF-8, size, alias-expansion and duplicate-key checks
    if not isinstance(doc, Mapping):
        raise UserError(f"{path}: expected a mapping with keys {', '.join(MATRIX_KEYS)}")
    problems: list[str] = []
    for key in doc:
        if key not in MATRIX_KEYS:
            hint = difflib.get_close_matches(str(key), MATRIX_KEYS, n=1)
            problems.append(f"{key}: unknown key" + (f" (did you mean {hint[0]}?)" if hint else "")
                            + f"; a matrix has {', '.join(MATRIX_KEYS)}")
    name = doc.get("name") or path.stem
    bad_name = identifier_problem(name)
    if bad_name:  # it becomes results/<name>/: never a path
        where = "name" if doc.get("name") else f"name (taken from the file name {path.name})"
        problems.append(f"{where}: {bad_name}")
        name = "invalid-name"
    defaults = doc.get("defaults") or {}
    grid = doc.get("grid") or {}
    overrides = dict(overrides or {})
    if not isinstance(defaults, Mapping):
        problems.append("defaults: expected a mapping")
        defaults = {}
    if not isinstance(grid, Mapping):
        problems.append("grid: expected a mapping of axis -> list of values")
        grid = {}

    axes: dict[str, list[Any]] = {}
    for axis, values in grid.items():
        if not isinstance(values, list) or not values:
            problems.append(f"grid.{axis}: expected a non-empty list")
            continue
        root = str(axis).split(".")[0]
        if axis not in ("arm", "bank_size") and root not in ALL_KEYS:
            hint = difflib.get_close_matches(root, [*ALL_KEYS, "bank_size"], n=1)
            problems.append(f"grid.{axis}: unknown axis" + (f" (did you mean {hint[0]}?)" if hint else ""))
            continue
        axes[str(axis)] = values
    # reference/comparisons name arms of the whole grid, also those --set arm=X leaves out
    grid_arms = [a.get("name") for a in axes.get("arm", []) if isinstance(a, Mapping)]
    axes, overrides = _set_replaces_axes(axes, overrides, problems)
    arms: list[Mapping[str, Any]] = []
    for i, arm in enumerate(axes.get("arm", [{}])):
        if not isinstance(arm, Mapping) or not arm.get("name"):
            problems.append(f"grid.arm[{i}]: expected a mapping with a name, e.g. "
                            "{name: sgd, sampler: {name: uniform}}")
            arm = {"name": f"arm{i}"}
        elif identifier_problem(arm["name"]):
            problems.append(f"grid.arm[{i}].name: {identifier_problem(arm['name'])}")
        arms.append(arm)
    names = [a["name"] for a in arms]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"grid.arm: name {dup!r} used twice; arm names must be unique")
    pairs, compare_problems = comparisons.parse(doc.get("reference"), doc.get("comparisons"),
                                                [n for n in grid_arms if isinstance(n, str)])
    problems += compare_problems
    # --set arm=X may leave a reference out: the runs are the same, the pairing is only for
    # the plots, so drop those pairs and say how to get them instead of refusing the run
    notes = tuple(f"reference arm {r!r} is not selected: run it too (--set arm={r}) for "
                  f"paired differences of {', '.join(a for a, q in pairs if q == r and a in names)}"
                  for r in dict.fromkeys(r for a, r in pairs if a in names and r not in names))
    pairs = [(a, r) for a, r in pairs if a in names and r in names]
    banks = axes.get("bank_size")

    # Validate each arm once (errors attributed to the source), then expand.
    arm_sources: list[list[tuple[str, Mapping[str, Any]]]] = []
    for i, arm in enumerate(arms):
        body = {k: v for k, v in arm.items() if k != "name"}
        srcs = [("--set", overrides), (f"grid.arm[{i}]", body), ("defaults", defaults)]
        arm_sources.append(srcs)
        probe = deep_merge(deep_merge(defaults, body), overrides)
        probe.setdefault("dataset", (axes.get("dataset") or ["probe"])[0])
        if banks is not None:
            sampler_name = probe.get("sampler", {}).get("name", "uniform") \
                if isinstance(probe.get("sampler"), Mapping) else None
            try:
                has_bank = "bank_size" in samplers.params(sampler_name)
            except samplers.SamplerConfigError:
                has_bank = True  # the sampler name problem is reported below
            if not has_bank:
                problems.append(f"grid.bank_size: crossed with arm {arm['name']!r} (grid.arm[{i}]), "
                                f"whose sampler {sampler_name!r} has no bank; move bank-less arms "
                                "to another matrix or drop the bank_size axis")
                continue
            probe = deep_merge(probe, {"sampler": {"bank_size": banks[0]}})
        try:
            resolve(probe)
        except UserError as e:
            for p in e.problems:
                problems.append(_attribute(p, srcs))
    if problems:
        raise UserError(*dict.fromkeys(problems))  # dedupe, keep order

    other = [a for a in axes if a not in (*ORDER, "seed")]
    runs: list[RunSpec] = []
    datasets = axes.get("dataset", [None])
    for ds in datasets:
        for i, arm in enumerate(arms):
            body = {k: v for k, v in arm.items() if k != "name"}
            for bank in (banks or [None]):
                for combo in itertools.product(*(axes[a] for a in other)):
                    for seed in axes.get("seed", [None]):
                        raw = deep_merge(defaults, body)
                        for axis, value in zip(other, combo):
                            raw = deep_merge(raw, _nested(axis, value))
                        if bank is not None:
                            raw = deep_merge(raw, {"sampler": {"bank_size": bank}})
                        raw = deep_merge(raw, overrides)
                        if ds is not None:
                            raw["dataset"] = ds
                        if seed is not None:
                            raw["seed"] = seed
                        raw["arm"] = arm.get("name", raw.get("arm"))
                        raw["matrix"] = name
                        try:
                            runs.append(RunSpec.from_dict(raw))
                        except UserError as e:
                            problems += [_attribute(p, [("grid", {"dataset": ds, "seed": seed,
                                                                  **{a: v for a, v in zip(other, combo)}}),
                                                        *arm_sources[i]]) for p in e.problems]
    if problems:
        raise UserError(*dict.fromkeys(problems))
    ids = [r.run_id for r in runs]
    dups = sorted({x for x in ids if ids.count(x) > 1})
    if dups:
        raise UserError(f"grid: {len(dups)} run(s) appear twice with identical settings "
                        f"(e.g. {dups[0]}); remove the duplicate axis values")
    return Matrix(name=name, description=str(doc.get("description", "")), path=path, runs=tuple(runs),
                  comparisons=tuple(pairs), notes=notes)
