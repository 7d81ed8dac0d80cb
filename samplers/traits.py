"""What a method declares about how it is drawn, reported and timed: its plot and perf traits.

Why here, in the method's own package: the figures, the report and ``make perf`` used to
keep per-method tables (colour per arm name, diagnostic figures with their chance lines,
report notes, the samplers held to a speed target). A new method then meant editing those
tables in three packages. Now a sampler class declares :class:`PlotTraits` (its ``plot``
attribute) and :class:`PerfRow` s (its ``perf`` attribute), and the rest of the suite reads
them; nothing outside ``samplers/`` names a method.

The plots must not import torch (they run on a laptop from copied results), so they never
import this module: the runner writes :meth:`PlotTraits.to_dict` into each run's
``run.json`` (key ``plot_traits``) and into ``methods.json`` of the matrix folder, and
:mod:`plots.traits` reads that JSON back. Everything here is therefore plain data: colours
as hex strings, chance lines and note numbers as *formulas* over a run's flattened config
keys (``batch_size / sampler.bank_size``), evaluated by the plots per run, and texts with
``str.format`` fields. This module imports nothing of torch either.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class ArmStyle:
    """A fixed colour for an arm name this method is run under in the suite's matrices
    (``impon_low``: the lowest-score ablation), so the arm looks the same in every figure of
    every matrix. ``rank``: its place in legends and report tables among the named arms of
    every method (smaller first; arms no method names follow, alphabetically)."""

    colour: str
    rank: float

    def to_dict(self) -> dict[str, Any]:
        return {"colour": self.colour, "rank": self.rank}


@dataclass(frozen=True)
class DiagnosticColumn:
    """One per-epoch quantity the sampler logs (an ``epochs.csv`` column) and how to draw it.

    ``chance``: a formula over the run's flattened config keys (``batch_size``,
    ``sampler.bank_size``; numbers, + - * / // ** and parentheses) giving the level a
    useless method would reach, drawn as a dotted line per distinct value (none when a key
    is missing or the value is not finite). ``chance_text``: the caption's words for it;
    ``chance_label``: the text on the line, formatted with ``y``.
    """

    column: str
    label: str
    chance: Optional[str] = None
    chance_text: str = ""
    chance_label: str = "{y:.3g}"

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "label": self.label, "chance": self.chance,
                "chance_text": self.chance_text, "chance_label": self.chance_label}


@dataclass(frozen=True)
class DiagnosticFigure:
    """A figure of the method's diagnostic columns (``figures/diagnostics_<key>.png``).

    ``title``: the figure's title; ``report_title``: its heading in report.md after
    "Diagnostics — "; ``skip_reason``: what the report says when no run logged the columns.
    Samplers sharing ``key`` (p-SGD and c-SGD) share the figure.
    """

    key: str
    title: str
    report_title: str
    skip_reason: str
    columns: tuple[DiagnosticColumn, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "report_title": self.report_title,
                "skip_reason": self.skip_reason, "columns": [c.to_dict() for c in self.columns]}


@dataclass(frozen=True)
class NotePart:
    """A piece of a report note: ``text`` with ``str.format`` fields, used when every field
    named in ``needs`` is known (and finite), and only when some field of ``unless`` is not.

    Fields a note may use: ``arm``; ``n_train`` (a run's training examples);
    ``epoch1_extra_backprops`` (examples back-propagated in epoch 1 beyond a later epoch's
    count: a once-per-run cost); every flattened config key of the arm's first run
    (``sampler.il_epochs``); and the note's own ``values``.
    """

    text: str
    needs: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "needs": list(self.needs), "unless": list(self.unless)}


@dataclass(frozen=True)
class PlotTraits:
    """How the figures and the report show a method (see the module docstring).

    ``colour``: the family colour of its arms the suite does not name (``impon_bank50`` is
    a shade of IMPON's vermillion); ``arms``: named arms with fixed colours (two named arms
    of one method with the same colour are one arm under two names); ``lr_controls_grey``:
    arms named ``<arm>_lr<value>`` are same-lr controls of other methods and drawn in
    greys (the uniform baseline); ``diagnostics``: its diagnostic figures; ``note``: a
    paragraph the report prints per arm of the method (a list of :class:`NotePart`) with
    ``note_values`` (name -> formula over the note's fields); ``report_rank``: where its
    diagnostics and note stand among the other methods' in the report (smaller first).
    """

    colour: Optional[str] = None
    arms: dict[str, ArmStyle] = field(default_factory=dict)
    lr_controls_grey: bool = False
    diagnostics: tuple[DiagnosticFigure, ...] = ()
    note: tuple[NotePart, ...] = ()
    note_values: dict[str, str] = field(default_factory=dict)
    report_rank: float = 100.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the runner writes and :mod:`plots.traits` reads."""
        return {"colour": self.colour, "arms": {k: v.to_dict() for k, v in self.arms.items()},
                "lr_controls_grey": self.lr_controls_grey,
                "diagnostics": [d.to_dict() for d in self.diagnostics],
                "note": [p.to_dict() for p in self.note], "note_values": dict(self.note_values),
                "report_rank": self.report_rank}


@dataclass(frozen=True)
class PerfRow:
    """One row of ``make perf`` (and ``benchmarks.sampler_cost``): the sampler with
    ``params``. ``step_target``: its step must stay within the perf report's ratio of
    uniform's step (selection is meant to be cheap next to the step it saves);
    ``efficiency_target``: its loop efficiency is held to the perf report's target."""

    params: dict[str, Any] = field(default_factory=dict)
    step_target: bool = False
    efficiency_target: bool = False
