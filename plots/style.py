"""Colours, line styles and the paper look shared by every figure.

Why a module of its own: a reader compares arms *across* figures (Figure 2 next to
Figure 3 next to the cost plots) and across matrices (paper vs fair vs ablation). That only
works if "impon" is the same colour everywhere, so the mapping is a fixed table keyed by
arm name, not "the i-th colour of whatever arms happen to be in this matrix".
Unknown arm names get a colour from a hash of the name (``zlib.crc32``, which, unlike
``hash()``, does not change between Python processes), so they are stable too.
"""
from __future__ import annotations

import contextlib
import warnings
import zlib
from collections.abc import Iterable, Iterator

import matplotlib as mpl
import seaborn as sns

#: Fixed colours of the arms the suite ships (colour-blind-safe base: seaborn "colorblind"
#: / Okabe-Ito). Order of this dict is also the legend order.
ARM_COLOURS: dict[str, str] = {
    "sgd": "#0173B2",  # blue: the plain baseline
    "uniform": "#0173B2",  # the same method as "sgd" under its sampler name
    "adam": "#56B4E9",  # light blue: the other uniform baseline
    "uniform_lr1e-3": "#7F7F7F",  # grey: SGD at IMPON's learning rate (control)
    "selective_backprop": "#029E73",  # green
    "p_sgd": "#DE8F05",  # orange
    "c_sgd": "#CA9161",  # brown
    "impon": "#D55E00",  # vermillion: the method under study
    "impon_low": "#CC78BC",  # pink: IMPON with lowest scores
    "loss_oracle": "#222222",  # near-black: the upper bound
}

#: Colours for arm names not in ARM_COLOURS, picked by a stable hash of the name.
#: Chosen to stay distinguishable from the fixed table.
FALLBACK_COLOURS: tuple[str, ...] = (
    "#7F3C8D", "#11A579", "#3969AC", "#F2B701", "#E73F74", "#80BA5A",
    "#E68310", "#008695", "#CF1C90", "#F97B72", "#4B4B8F", "#A5AA99",
    "#1B9E77", "#D95F02", "#7570B3", "#E7298A", "#66A61E", "#A6761D",
)

#: Line styles that tell several bank sizes of one arm apart in the per-arm figures
#: (the colour stays the arm's colour).
VARIANT_DASHES: tuple[str | tuple, ...] = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)),
                                           (0, (1, 3)), (0, (8, 2)))


def arm_colour(arm: str) -> str:
    """Hex colour of one arm, identical in every figure of every matrix."""
    if arm in ARM_COLOURS:
        return ARM_COLOURS[arm]
    return FALLBACK_COLOURS[zlib.crc32(arm.encode("utf-8")) % len(FALLBACK_COLOURS)]


def arm_order(arms: Iterable[str]) -> list[str]:
    """Known arms in the fixed order of ARM_COLOURS, then unknown ones alphabetically.

    A fixed order keeps legends and report tables lined up across figures.
    """
    known = list(ARM_COLOURS)
    unique = set(arms)
    return [a for a in known if a in unique] + sorted(a for a in unique if a not in known)


def arm_palette(arms: Iterable[str]) -> dict[str, str]:
    """Arm -> colour for the arms of one figure; warns when two arms share a colour.

    Sharing can only happen between a fallback colour and another arm; it is reported
    rather than "fixed" by re-assigning, because re-assigning would break the
    cross-figure stability that the mapping exists for.
    """
    ordered = arm_order(arms)
    palette = {a: arm_colour(a) for a in ordered}
    by_colour: dict[str, list[str]] = {}
    for arm, colour in palette.items():
        by_colour.setdefault(colour, []).append(arm)
    clashes = [names for names in by_colour.values() if len(names) > 1]
    if clashes:
        warnings.warn(f"arms share a colour: {clashes}; add them to plots.style.ARM_COLOURS",
                      stacklevel=2)
    return palette


def bank_palette(bank_sizes: Iterable[int]) -> dict[int, tuple[float, float, float]]:
    """Bank size -> colour on a sequential scale (small = light, large = dark).

    Bank size is ordered, so an ordered palette reads faster than categorical colours.
    """
    sizes = sorted({int(s) for s in bank_sizes})
    colours = sns.color_palette("viridis_r", n_colors=max(len(sizes), 2) + 1)[1:]
    return {s: tuple(colours[i]) for i, s in enumerate(sizes)}


def checkpoint_palette(labels: list[str]) -> dict[str, tuple[float, float, float]]:
    """Colours for "epoch 1 / epoch 5 / final" in the ablation summary (light -> dark)."""
    colours = sns.color_palette("Blues", n_colors=len(labels) + 1)[1:]
    return {label: tuple(c) for label, c in zip(labels, colours)}


#: matplotlib settings of a paper figure: readable at column width, fonts embedded as
#: TrueType in the PDF (journals reject Type 3 fonts).
PAPER_RC: dict[str, object] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 12,
    "lines.linewidth": 1.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Temporarily apply the seaborn "whitegrid" look plus PAPER_RC.

    A context manager rather than ``sns.set_theme`` so that importing or calling the
    plotting code never changes the caller's global matplotlib state (tests, notebooks).
    """
    with sns.axes_style("whitegrid"), mpl.rc_context(PAPER_RC):
        yield
