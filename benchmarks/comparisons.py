"""Which arm each arm of a matrix is compared against (paired differences in ``plots``).

A matrix may name a ``reference`` arm (``reference: sgd``) and, per arm, override which
reference(s) it is compared to (``comparisons: {impon: [sgd, sgd_lr1e-3]}``: IMPON against
plain SGD *and* against SGD at IMPON's learning rate, its same-lr control).

Why this lives in its own module with no torch import: the runner validates these keys
before anything runs (:mod:`benchmarks.matrix`), and the plotting code (which must work on
a laptop without torch) reads the same keys from the same YAML to know what to pair.
Neither key is part of any RunSpec, so adding or changing them never changes a run id.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

MATRIX_DIR = Path(__file__).resolve().parent / "matrices"
#: The copy of the matrix file that the runner keeps in ``results/<matrix>/`` (exact text).
RECORDED = "matrix.yaml"


def _hint(name: str, arms: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(arms), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def parse(reference: Any, comparisons: Any, arms: Sequence[str]
          ) -> tuple[list[tuple[str, str]], list[str]]:
    """(arm, reference) pairs in arm order, and a list of one-line problems.

    Rules: with ``reference: R`` every other arm is compared with R; ``comparisons`` maps an
    arm to one reference or a list of them and replaces the default for that arm (so an arm
    can be compared with R and its own control, or with a control only). An arm is never
    compared with itself. Every name must be an arm of the matrix.
    """
    problems: list[str] = []
    arms = list(arms)
    listing = ", ".join(arms)
    ref: str | None = None
    if reference is not None:
        if not isinstance(reference, str) or not reference:
            problems.append(f"reference: expected the name of an arm ({listing})")
        elif reference not in arms:
            problems.append(f"reference: {reference!r} is not an arm of this matrix"
                            f"{_hint(reference, arms)}; arms: {listing}")
        else:
            ref = reference
    overrides: dict[str, list[str]] = {}
    if comparisons is not None:
        if not isinstance(comparisons, Mapping):
            problems.append("comparisons: expected a mapping arm -> reference arm (or list), "
                            "e.g. {impon: [sgd, sgd_lr1e-3]}")
        else:
            for arm, refs in comparisons.items():
                where = f"comparisons.{arm}"
                if arm not in arms:
                    problems.append(f"{where}: {arm!r} is not an arm of this matrix"
                                    f"{_hint(str(arm), arms)}; arms: {listing}")
                    continue
                names = [refs] if isinstance(refs, str) else refs
                if not isinstance(names, list) or not names or \
                        not all(isinstance(n, str) for n in names):
                    problems.append(f"{where}: expected an arm name or a non-empty list of them")
                    continue
                for name in names:
                    if name not in arms:
                        problems.append(f"{where}: {name!r} is not an arm of this matrix"
                                        f"{_hint(name, arms)}; arms: {listing}")
                    elif name == arm:
                        problems.append(f"{where}: an arm cannot be compared with itself")
                overrides[str(arm)] = list(dict.fromkeys(names))
    pairs: list[tuple[str, str]] = []
    for arm in arms:
        refs = overrides.get(arm, [ref] if ref is not None else [])
        pairs += [(arm, r) for r in refs if r is not None and r != arm and r in arms]
    return pairs, problems


def matrix_file(name: str, results_dir: Path | None = None) -> Path | None:
    """The YAML a matrix's results came from: ``<results_dir>/matrix.yaml`` if a copy sits
    next to the runs (the runner records the file it ran: it may live anywhere), else
    ``benchmarks/matrices/<name>.yaml`` (results recorded before the runner kept a copy);
    None if neither exists."""
    own = MATRIX_DIR / f"{name}.yaml"
    recorded = Path(results_dir) / RECORDED if results_dir is not None else None
    if recorded is not None and recorded.is_file():
        # A copy of the suite's own file names that file, so a report reads the same with
        # or without the copy (git keeps it out of the committed results/cpu_* folders).
        return own if _same_text(recorded, own) else recorded
    return own if own.is_file() else None


def _same_text(a: Path, b: Path) -> bool:
    try:
        return a.read_bytes() == b.read_bytes()
    except OSError:  # unreadable or absent: not the same (reading ``a`` then says why)
        return False


def read(path: Path) -> tuple[Any, Any, list[str]]:
    """(reference, comparisons, arm names) as written in a matrix YAML (not validated).

    Raises UnicodeDecodeError, OSError or yaml.YAMLError on a file that cannot be read."""
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(doc, Mapping):
        return None, None, []
    grid = doc.get("grid") or {}
    arms = grid.get("arm", []) if isinstance(grid, Mapping) else []
    names = [a["name"] for a in arms if isinstance(a, Mapping) and isinstance(a.get("name"), str)]
    return doc.get("reference"), doc.get("comparisons"), names
