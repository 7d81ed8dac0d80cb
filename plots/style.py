"""Colours, line styles and the paper look shared by every figure.

Why a module of its own: a reader compares arms *across* figures (Figure 2 next to
Figure 3 next to the cost plots) and across matrices (paper vs fair vs ablation). That only
works if "impon" is the same colour everywhere, so the mapping is fixed per arm name, not
"the i-th colour of whatever arms happen to be in this matrix". The fixed colours are
declared by the methods (their plot traits, :class:`plots.traits.ArmTable`).
Other arm names get their sampler's family colour (or a shade of it, when it is taken in
that figure), else a colour from a hash of the name (``zlib.crc32``, which, unlike
``hash()``, does not change between Python processes), so they are stable too. No two arms
of a figure may be closer than MIN_DELTA_E in CIEDE2000 (:func:`close_pairs`).
"""
from __future__ import annotations

import contextlib
import math
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence

import matplotlib as mpl
import matplotlib.colors as mcolors
import numpy as np
import seaborn as sns

from .traits import ArmTable

#: The arm colours come from the methods themselves: each sampler declares its family
#: colour and the arms it is run under with fixed colours and legend ranks (its ``plot``
#: trait, recorded by the runner; :mod:`plots.traits` reads it into an :class:`ArmTable`).
#: With meaning: the plain baseline blue, any uniform sampler at another learning rate a
#: grey (the same-lr control of the arms run at that lr), the loss oracle black (a bound,
#: not a method), a method's ablation/control arms a lighter or darker relative of the
#: method's colour. Base: seaborn "colorblind" / Okabe-Ito, extended by hand; every pair is
#: at least MIN_DELTA_E apart in CIEDE2000 (tested).
NO_TABLE = ArmTable()

#: Shades for uniform samplers at a learning rate other than the baseline's.
GREY_FAMILY: tuple[str, ...] = ("#8C8C8C", "#4D4D4D", "#BDBDBD", "#6B6B6B", "#A5A5A5")

#: Smallest CIEDE2000 difference allowed between two arms of one figure. GUESS: ~10 is
#: where neighbouring lines of a 1.6-pt plot stop being confused at a glance; 2.3 is the
#: usual "just noticeable" difference, far too small for thin lines.
MIN_DELTA_E = 10.0

#: Colours for arm names known neither to the table nor by sampler, by a stable hash.
FALLBACK_COLOURS: tuple[str, ...] = (
    "#7F3C8D", "#11A579", "#3969AC", "#F2B701", "#E73F74", "#80BA5A",
    "#E68310", "#008695", "#CF1C90", "#F97B72", "#4B4B8F", "#A5AA99",
    "#1B9E77", "#D95F02", "#7570B3", "#E7298A", "#66A61E", "#A6761D",
)

#: Line styles that tell several bank sizes of one arm apart in the per-arm figures
#: (the colour stays the arm's colour).
VARIANT_DASHES: tuple[str | tuple, ...] = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)),
                                           (0, (1, 3)), (0, (8, 2)))


def _is_other_lr_uniform(arm: str, sampler: str | None, table: ArmTable) -> bool:
    """``sgd_lr0.01``, ``uniform_lr3e-4``: an arm of a grey-controls sampler (uniform) at a
    non-default lr (without the sampler: the name's base is one of its named arms)."""
    base, sep, _ = arm.partition("_lr")
    if not sep or not base:
        return False
    if sampler is not None:
        return sampler in table.grey_samplers
    return base in table.grey_arms


def _family(arm: str, sampler: str | None, table: ArmTable) -> list[str]:
    """Candidate colours for an arm the table does not know, best first."""
    if _is_other_lr_uniform(arm, sampler, table):
        start = zlib.crc32(arm.encode("utf-8")) % len(GREY_FAMILY)
        return [*GREY_FAMILY[start:], *GREY_FAMILY[:start]]
    base = table.families.get(sampler or "") or table.arms.get(arm.partition("_")[0])
    hashed = FALLBACK_COLOURS[zlib.crc32(arm.encode("utf-8")) % len(FALLBACK_COLOURS)]
    if base is None:
        return [hashed, *FALLBACK_COLOURS]
    return [*shades(base), hashed, *FALLBACK_COLOURS]


def arm_colour(arm: str, sampler: str | None = None, table: ArmTable = NO_TABLE) -> str:
    """Hex colour of one arm, identical in every figure of every matrix.

    Arms a method names: their fixed colour. Others: a grey if it is a uniform sampler at
    another lr, else the family colour of its ``sampler`` (or of its name's prefix), else a
    colour from a stable hash (``zlib.crc32``, unlike ``hash()``, is the same in every
    process). ``table``: what the matrix's methods declare (:attr:`MatrixResults.arm_styles`).
    """
    if arm in table.arms:
        return table.arms[arm]
    return _family(arm, sampler, table)[0]


def arm_order(arms: Iterable[str], table: ArmTable = NO_TABLE) -> list[str]:
    """Named arms in their methods' legend ranks, then the others alphabetically.

    A fixed order keeps legends and report tables lined up across figures.
    """
    known = list(table.arms)
    unique = set(arms)
    return [a for a in known if a in unique] + sorted(a for a in unique if a not in known)


# ---------------------------------------------------------------- perceptual distance


def srgb_to_lab(colour: str | tuple[float, ...]) -> tuple[float, float, float]:
    """CIE L*a*b* (D65 white) of an sRGB colour: the IEC 61966-2-1 transfer function, the
    sRGB -> XYZ matrix, then the CIE 1976 formulas."""
    rgb = mcolors.to_rgb(colour)
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb)
    x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047
    y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b
    z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883

    def f(t: float) -> float:
        d = 6 / 29
        return t ** (1 / 3) if t > d ** 3 else t / (3 * d * d) + 4 / 29

    fx, fy, fz = f(x), f(y), f(z)
    return (116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz))


def delta_e(c1: str | tuple[float, ...], c2: str | tuple[float, ...]) -> float:
    """CIEDE2000 colour difference of two sRGB colours (hex or RGB tuples)."""
    return ciede2000(srgb_to_lab(c1), srgb_to_lab(c2))


def ciede2000(lab1: tuple[float, float, float], lab2: tuple[float, float, float]) -> float:
    """CIEDE2000 difference of two L*a*b* colours (Sharma, Wu & Dalal 2005, eqs. 1-21)."""
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    c_mean = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_mean ** 7 / (c_mean ** 7 + 25 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360 if c1p else 0.0
    h2p = math.degrees(math.atan2(b2, a2p)) % 360 if c2p else 0.0
    d_l, d_c = l2 - l1, c2p - c1p
    dh = 0.0
    if c1p * c2p:
        dh = h2p - h1p
        dh = dh - 360 if dh > 180 else dh + 360 if dh < -180 else dh
    d_h = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(dh / 2))
    l_m, c_m = (l1 + l2) / 2, (c1p + c2p) / 2
    if c1p * c2p == 0:
        h_m = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        h_m = (h1p + h2p) / 2
    else:
        h_m = (h1p + h2p + 360) / 2 if h1p + h2p < 360 else (h1p + h2p - 360) / 2
    t = (1 - 0.17 * math.cos(math.radians(h_m - 30)) + 0.24 * math.cos(math.radians(2 * h_m))
         + 0.32 * math.cos(math.radians(3 * h_m + 6)) - 0.20 * math.cos(math.radians(4 * h_m - 63)))
    d_theta = 30 * math.exp(-(((h_m - 275) / 25) ** 2))
    r_c = 2 * math.sqrt(c_m ** 7 / (c_m ** 7 + 25 ** 7))
    s_l = 1 + 0.015 * (l_m - 50) ** 2 / math.sqrt(20 + (l_m - 50) ** 2)
    s_c, s_h = 1 + 0.045 * c_m, 1 + 0.015 * c_m * t
    r_t = -math.sin(math.radians(2 * d_theta)) * r_c
    return math.sqrt((d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2
                     + r_t * (d_c / s_c) * (d_h / s_h))


def shades(colour: str, steps: Sequence[float] = (0.0, -0.35, 0.4, -0.6, 0.65)) -> list[str]:
    """The colour, then darker (negative) and lighter (positive) versions of it: mixes
    with black or white, so an unknown IMPON variant stays recognisably vermillion."""
    rgb = np.array(mcolors.to_rgb(colour))
    out = []
    for s in steps:
        mixed = rgb * (1 + s) if s < 0 else rgb + (1 - rgb) * s
        out.append(mcolors.to_hex(np.clip(mixed, 0, 1)))
    return out


def close_pairs(palette: dict[str, str], threshold: float = MIN_DELTA_E,
                aliases: Iterable[frozenset[str]] = ()) -> list[tuple[str, str, float]]:
    """Pairs of arms whose colours are within ``threshold`` (CIEDE2000), ``aliases``
    (one arm under two names, :attr:`ArmTable.aliases`) excepted."""
    names = list(palette)
    aliases = set(aliases)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if frozenset({a, b}) in aliases:
                continue
            d = delta_e(palette[a], palette[b])
            if d < threshold:
                out.append((a, b, d))
    return out


def arm_palette(arms: Iterable[str], samplers: dict[str, str] | None = None,
                table: ArmTable = NO_TABLE) -> dict[str, str]:
    """Arm -> colour for the arms of one figure, every pair at least MIN_DELTA_E apart.

    Named arms keep their fixed colour (cross-figure stability is the point of naming
    them). Another arm takes the first candidate of its family (:func:`_family`) that is
    far enough from every colour already given out; if none is, the clash is reported
    with a warning rather than hidden.
    """
    samplers = samplers or {}
    ordered = arm_order(arms, table)
    palette = {a: table.arms[a] for a in ordered if a in table.arms}
    for arm in (a for a in ordered if a not in table.arms):
        candidates = _family(arm, samplers.get(arm), table)
        palette[arm] = next((c for c in candidates
                             if all(delta_e(c, other) >= MIN_DELTA_E
                                    for other in palette.values())), candidates[0])
    palette = {a: palette[a] for a in ordered}
    clashes = close_pairs(palette, aliases=table.aliases)
    if clashes:
        text = ", ".join(f"{a}/{b} (ΔE {d:.1f})" for a, b, d in clashes)
        warnings.warn(f"arms of one figure have near-identical colours: {text}; "
                      "give them colours in their samplers' plot traits", stacklevel=2)
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
