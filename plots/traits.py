"""The methods' plot traits as the runner recorded them (``run.json``, ``methods.json``).

Why read from files: a method's colours, diagnostic figures and report note are declared
in its own class (``samplers.traits.PlotTraits``), but ``plots`` must not import
``samplers`` (torch). The runner writes each run's sampler's traits into its ``run.json``
(key ``plot_traits``) and every registered sampler's into the matrix folder's
``methods.json``; this module reads that JSON into :class:`MethodTraits`. A run's own
record wins over the catalogue for its sampler. A method with no traits anywhere (runs
recorded before traits existed) is drawn with neutral defaults (a colour from a hash of the
arm name, no diagnostics, no note) and :func:`missing_warning` says so in one line.

Chance lines and note numbers are formulas over a run's flattened config keys, evaluated
here by :func:`evaluate`: numbers, names (dotted, ``sampler.bank_size``), + - * / // **,
unary minus and parentheses; nothing else is accepted, so a results folder can never make
the plots run code.
"""
from __future__ import annotations

import ast
import json
import math
import operator
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The run.json key and the matrix folder's catalogue file (as ``benchmarks.traits`` writes them).
RUN_KEY = "plot_traits"
CATALOGUE = "methods.json"


@dataclass(frozen=True)
class DiagnosticColumn:
    column: str
    label: str
    chance: str | None = None
    chance_text: str = ""
    chance_label: str = "{y:.3g}"


@dataclass(frozen=True)
class DiagnosticFigure:
    """A method's diagnostic figure; ``name`` (``diag_<key>``) is its key among the outputs."""

    key: str
    title: str
    report_title: str
    skip_reason: str
    columns: tuple[DiagnosticColumn, ...]
    rank: float = 100.0

    @property
    def name(self) -> str:
        return f"diag_{self.key}"

    @property
    def stem(self) -> str:
        return f"diagnostics_{self.key}"


@dataclass(frozen=True)
class ArmTable:
    """What the methods of one matrix say about colours (read by :mod:`plots.style`).

    ``arms``: named arm -> fixed colour, in legend order; ``families``: sampler -> family
    colour; ``grey_samplers``: samplers whose ``<arm>_lr<value>`` arms are drawn in greys;
    ``grey_arms``: their named arms; ``aliases``: pairs of named arms that are one arm
    under two names (may share a colour).
    """

    arms: dict[str, str] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)
    grey_samplers: frozenset[str] = frozenset()
    grey_arms: frozenset[str] = frozenset()
    aliases: tuple[frozenset[str], ...] = ()


@dataclass(frozen=True)
class MethodTraits:
    """Sampler name -> its recorded plot traits (raw JSON form), and what is derived."""

    by_sampler: dict[str, dict[str, Any]] = field(default_factory=dict)

    def arm_styles(self) -> ArmTable:
        named: list[tuple[float, str, str, str]] = []  # rank, arm, colour, sampler
        families, greys = {}, set()
        for sampler, t in sorted(self.by_sampler.items()):
            if isinstance(t.get("colour"), str):
                families[sampler] = t["colour"]
            if t.get("lr_controls_grey"):
                greys.add(sampler)
            for arm, style in (t.get("arms") or {}).items():
                named.append((float(style.get("rank", math.inf)), arm, str(style["colour"]), sampler))
        named.sort(key=lambda r: (r[0], r[1]))
        arms: dict[str, str] = {}
        owner: dict[str, str] = {}
        for _, arm, colour, sampler in named:
            arms.setdefault(arm, colour)
            owner.setdefault(arm, sampler)
        aliases = tuple(frozenset({a, b}) for i, a in enumerate(arms) for b in list(arms)[i + 1:]
                        if owner[a] == owner[b] and arms[a] == arms[b])
        return ArmTable(arms, families, frozenset(greys),
                        frozenset(a for a, s in owner.items() if s in greys), aliases)

    def diagnostics(self) -> list[DiagnosticFigure]:
        """Every diagnostic figure of every method, by report rank then key; a figure
        several methods share (same key) once."""
        found: dict[str, DiagnosticFigure] = {}
        for _, t in sorted(self.by_sampler.items()):
            for d in t.get("diagnostics") or []:
                fig = DiagnosticFigure(
                    key=str(d["key"]), title=str(d.get("title", d["key"])),
                    report_title=str(d.get("report_title", d["key"])),
                    skip_reason=str(d.get("skip_reason", "no run logged its columns")),
                    columns=tuple(DiagnosticColumn(**{k: c[k] for k in (
                        "column", "label", "chance", "chance_text", "chance_label") if k in c})
                        for c in d.get("columns") or []),
                    rank=float(t.get("report_rank", 100.0)))
                if fig.key not in found or fig.rank < found[fig.key].rank:
                    found[fig.key] = fig
        return sorted(found.values(), key=lambda f: (f.rank, f.key))

    def note(self, sampler: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The note parts and note values of ``sampler`` (empty when it declares none)."""
        t = self.by_sampler.get(sampler) or {}
        return list(t.get("note") or []), dict(t.get("note_values") or {})

    def report_rank(self, sampler: str) -> float:
        return float((self.by_sampler.get(sampler) or {}).get("report_rank", 100.0))


def read_catalogue(root: Path) -> dict[str, dict[str, Any]]:
    """The matrix folder's ``methods.json`` (empty if absent or unreadable)."""
    path = Path(root) / CATALOGUE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def collect(root: Path, runs: Iterable[tuple[str, Any]]) -> MethodTraits:
    """Traits of a matrix: the catalogue, overridden per sampler by the runs' own records
    (``runs``: (sampler, recorded traits or None) per run)."""
    by_sampler = read_catalogue(root)
    for sampler, traits in runs:
        if isinstance(traits, dict):
            by_sampler[sampler] = traits
    return MethodTraits(by_sampler)


def missing_warning(samplers_used: Iterable[str], traits: MethodTraits) -> str | None:
    """One line naming the samplers of included runs that have no recorded traits."""
    missing = sorted({s for s in samplers_used if s not in traits.by_sampler and s != "?"})
    if not missing:
        return None
    return (f"no plot traits recorded for sampler(s) {', '.join(missing)} (runs made before the "
            "runner recorded them): drawn with neutral colours, no diagnostics or notes; add "
            "them with `python -m benchmarks traits --backfill <results folder>`")


# ----------------------------------------------------------------------------- formulas

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def evaluate(formula: str, values: Mapping[str, Any]) -> float:
    """The value of ``formula`` with names from ``values``; NaN when a name is missing or
    not a number, or the arithmetic fails (division by zero). Anything but numbers, names
    and + - * / // ** ( ) raises ValueError."""
    tree = ast.parse(formula, mode="eval")

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return node.value
        name = _dotted(node)
        if name is not None:
            value = values.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return math.nan
            return value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            try:
                return _BINARY[type(node.op)](left, right)
            except (ZeroDivisionError, OverflowError, ValueError):
                return math.nan
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = walk(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        raise ValueError(f"formula {formula!r}: only numbers, names and + - * / // ** ( ) allowed")

    try:
        return walk(tree)
    except TypeError:
        return math.nan


def _known(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return not (isinstance(value, str) and not value)


class _FlatFormatter(string.Formatter):
    """``str.format`` whose field names are looked up whole (``{sampler.il_epochs}`` is the
    flat key ``sampler.il_epochs``, not an attribute)."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        if field_name in kwargs:
            return kwargs[field_name], field_name
        if field_name.startswith("sampler."):  # a key the spec leaves out: the default
            return "default", field_name
        return super().get_field(field_name, args, kwargs)


def render_note(parts: list[dict[str, Any]], values: dict[str, str],
                fields: dict[str, Any]) -> str:
    """The note text: ``values`` evaluated over ``fields`` (when their names are known), then
    each part whose ``needs`` are known and some ``unless`` is not, formatted."""
    fields = dict(fields)
    for name, formula in values.items():
        value = evaluate(formula, fields)
        if math.isfinite(value):
            fields[name] = int(value) if float(value).is_integer() else value
    fmt = _FlatFormatter()
    out = []
    for part in parts:
        needs, unless = part.get("needs") or [], part.get("unless") or []
        if not all(_known(fields.get(n)) for n in needs):
            continue
        if unless and all(_known(fields.get(n)) for n in unless):
            continue
        out.append(fmt.vformat(str(part.get("text", "")), (), fields))
    return "".join(out)
