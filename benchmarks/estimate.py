"""Cost estimates for ``--dry-run`` and the CPU guard, from throughput measured here.

A few real training steps of the run's model (at its width, batch size and image size:
a 64x64 dataset costs more per step than a 32x32 one) are timed on the current device,
with a fixed CPU thread count; a run's cost is its optimizer steps times the median step
time, times the sampler's extra forwards (a no-grad forward costs about a
third of a training step), plus evaluation. The interquartile range of the timed steps
gives the range quoted with the estimate. Good to within tens of percent, which is what a
go/no-go needs; on a busy machine the range says how much less.
"""
from __future__ import annotations

import os
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

import models
import samplers

from .catalogue import BUILTINS
from .config import RunSpec
from .errors import UserError

#: (n_train, n_test, classes) of each built-in, from the catalogue (benchmarks/catalogue.py).
BUILTIN_SIZES = {d.name: (d.train_size, d.test_size, d.classes) for d in BUILTINS.values()}
FORWARD_FRACTION = 1 / 3  # cost of a no-grad forward relative to a training step


def dataset_sizes(name: str, data_root: str | Path, subset: dict | None) -> tuple[int, int, int] | None:
    """(n_train, n_test, classes) without loading images; None if unknown."""
    from .synthetic import SMOKE_DATASETS

    if name in BUILTIN_SIZES:
        n_train, n_test, k = BUILTIN_SIZES[name]
    elif name in SMOKE_DATASETS and not (Path(data_root) / name / "train.npz").is_file():
        k, n_train, n_test = SMOKE_DATASETS[name]   # written on first use, sizes known
    else:
        try:
            with np.load(Path(data_root) / name / "train.npz") as z:
                y = z["y"]
                n_train, k = len(y), int(y.max()) + 1
            with np.load(Path(data_root) / name / "test.npz") as z:
                n_test = len(z["y"])
        except (OSError, KeyError, ValueError):
            return None
    if subset:
        n_train = subset.get("train") or n_train
        n_test = subset.get("test") or n_test
    return n_train, n_test, k


@dataclass(frozen=True)
class StepTime:
    """Seconds per training step: the median of the timed steps and their interquartile
    range (``low``..``high``), the uncertainty the estimate is quoted with."""

    median: float
    low: float
    high: float
    steps: int

    def scaled(self, k: float) -> "StepTime":
        return StepTime(self.median * k, self.low * k, self.high * k, self.steps)


def time_steps(step: Callable[[], None], clock: Callable[[], float] = time.perf_counter,
               sync: Callable[[], None] = lambda: None, budget_s: float = 3.0,
               min_steps: int = 6, max_steps: int = 24) -> StepTime:
    """Time ``step()`` repeatedly; the first half of the steps is warm-up and dropped.

    Steps until ``budget_s`` of clock time is spent (at least ``min_steps``, at most
    ``max_steps``). Why the median and the interquartile range of the second half: on CPU
    the first five or so steps run up to 2x slower (allocator and oneDNN warm-up; measured
    on a width-0.25 ResNet-18, batch 128: 0.96, 0.40, 0.41, 0.41, 0.35, then 0.21-0.27 s),
    and on a shared machine single steps can take many times the typical one; the median
    ignores both, and the IQR says how much to trust it. ``clock``/``sync`` are injectable
    so the logic is tested without depending on real time.
    """
    times: list[float] = []
    while len(times) < max_steps and (len(times) < min_steps or sum(times) < budget_s):
        sync()
        t0 = clock()
        step()
        sync()
        times.append(clock() - t0)
    kept = np.asarray(times[len(times) // 2:], dtype=float)
    low, med, high = np.percentile(kept, [25, 50, 75])
    return StepTime(float(med), float(low), float(high), int(kept.size))


@contextmanager
def fixed_threads(n: int) -> Iterator[None]:
    """Run with exactly ``n`` intra-op threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def estimate_threads() -> int:
    """Threads the timing uses on CPU: the cores this process may run on, which is what
    ``runner.run_local`` gives a run with ``--jobs 1`` (it splits them for more jobs).
    Fixed, so that two estimates of one matrix time the same thing."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def image_size(name: str, data_root: str | Path) -> int:
    """Height (= width) of a dataset's images without loading them: the catalogue's for a
    built-in, else the shape in ``train.npz``'s header; 32 when unknown (not written yet).

    Why it matters: a step's FLOPs grow with the pixels, so a 64x64 dataset timed at 32x32
    would be estimated at a quarter of its cost (with the CIFAR stem)."""
    if name in BUILTINS:
        return BUILTINS[name].image_size
    try:
        with zipfile.ZipFile(Path(data_root) / name / "train.npz") as z, z.open("x.npy") as f:
            fmt = np.lib.format
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape = read(f)[0]
        return int(shape[1])
    except (OSError, KeyError, ValueError, IndexError, zipfile.BadZipFile):
        return 32


def model_key(model: dict[str, Any]) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """``(name, other params)`` of a RunSpec's model section, hashable for the timing cache
    (``width`` is :func:`step_time`'s own argument)."""
    return model["name"], tuple(sorted((k, v) for k, v in model.items() if k not in ("name", "width")))


@lru_cache(maxsize=None)
def step_time(device: str, width: float | None, batch_size: int, num_classes: int, amp: bool,
              channels_last: bool, image_size: int = 32,
              model: tuple[str, tuple[tuple[str, Any], ...]] = ("resnet18", ())) -> StepTime:
    """One training step of ``model`` (:func:`model_key`; ResNet-18 by default) at ``width``
    (None: a model without one, e.g. timm's) on random ``image_size`` images on ``device``,
    timed by :func:`time_steps` with a fixed CPU thread count (:func:`estimate_threads`)."""
    dev = torch.device(device)
    name, params = model
    kw = dict(params) if width is None else {**dict(params), "width": width}
    try:
        net = models.build(name, num_classes, **kw).to(dev)
    except (ValueError, ImportError) as e:  # the schema check refuses these first
        raise UserError(f"model {name}: cannot build it to time a step ({e})") from e
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev)
    if channels_last and dev.type == "cuda":
        net, x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch_size,), device=dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    with fixed_threads(estimate_threads()):
        return time_steps(step, sync=sync)


def step_seconds(device: str, width: float, batch_size: int, num_classes: int, amp: bool,
                 channels_last: bool) -> float:
    """Median seconds of one training step (see :func:`step_time`)."""
    return step_time(device, width, batch_size, num_classes, amp, channels_last).median


def sampler_cost(spec: RunSpec, n_train: int) -> samplers.Cost:
    """The run's sampler cost model, as its class declares it (``Sampler.cost``).

    A sampler that declares none is a UserError: estimating it as free would be a silent
    lie about a method that may spend many selection forwards."""
    params = dict(spec["sampler"])
    name = params.pop("name")
    sampler = samplers.build(name, **params)
    cost = sampler.cost(n_train=n_train, batch_size=spec["batch_size"], epochs=spec["epochs"])
    if cost is None:
        raise UserError(f"sampler {name!r} declares no cost model, so its runs cannot be "
                        f"estimated; give {type(sampler).__name__} a cost() method returning "
                        "samplers.Cost(...) (Cost() if it costs nothing beyond training)")
    return cost


def sampler_factor(spec: RunSpec, n_train: int = 0) -> float:
    """Training-step cost multiplier from the forwards a sampler spends on selection."""
    cost = sampler_cost(spec, n_train)
    return 1.0 + FORWARD_FRACTION * cost.forwards_per_step / spec["batch_size"]


def sampler_run_extra(spec: RunSpec, n_train: int) -> tuple[float, float]:
    """(step-count factor, extra training-step equivalents per run) from the sampler's
    cost model: e.g. InfoBatch's pruned epochs, RHO-LOSS's IL model, online batch
    selection's full recomputations."""
    cost = sampler_cost(spec, n_train)
    extra = cost.backprops_per_run + FORWARD_FRACTION * cost.forwards_per_run
    return cost.step_fraction, extra / spec["batch_size"]


def run_time(spec: RunSpec, device: str, data_root: str | Path) -> StepTime | None:
    """Estimated seconds of one run (median and IQR bounds); None if its data size is unknown."""
    sizes = dataset_sizes(spec["dataset"], data_root, spec["subset"])
    if sizes is None:
        return None
    n_train, n_test, k = sizes
    n_val = spec.get("validation") or 0
    cuda = device.startswith("cuda")
    width = spec["model"].get("width")
    t = step_time(device, None if width is None else float(width), spec["batch_size"], k,
                  cuda and spec["amp"] == "bf16", cuda and spec["channels_last"],
                  image_size(spec["dataset"], data_root), model_key(spec["model"]))
    # as train.planned_steps, on the training set left after the validation split
    n_fit = n_train - n_val
    steps = int(n_fit * spec["budget"] / spec["batch_size"]) * spec["epochs"]
    evals = (spec["epochs"] + 1) * (n_test + n_val) / spec["batch_size"] * FORWARD_FRACTION
    factor, extra_steps = sampler_run_extra(spec, n_fit)
    return t.scaled(steps * factor * sampler_factor(spec) + extra_steps + evals)


def run_seconds(spec: RunSpec, device: str, data_root: str | Path) -> float | None:
    t = run_time(spec, device, data_root)
    return None if t is None else t.median


def format_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def describe(specs: list[RunSpec], device: str, data_root: str | Path) -> dict[str, Any]:
    """Per-run median estimates, their ``total`` and its range ``total_low``..``total_high``
    (sums of the per-run interquartile bounds), and how many runs are of unknown size."""
    times = {s.run_id: run_time(s, device, data_root) for s in specs}
    known = [t for t in times.values() if t is not None]
    return {"per_run": {k: (None if t is None else t.median) for k, t in times.items()},
            "total": sum(t.median for t in known), "total_low": sum(t.low for t in known),
            "total_high": sum(t.high for t in known), "unknown": len(times) - len(known)}


def range_text(est: dict[str, Any]) -> str:
    """``"range 35 min-48 min over the timed steps' interquartile range"``."""
    return (f"range {format_seconds(est['total_low'])}-{format_seconds(est['total_high'])} "
            "from the interquartile range of the timed steps")


def format_range(est: dict[str, Any]) -> str:
    """``"40 min (range 35 min-48 min ...)"``: the estimate with its uncertainty."""
    return f"{format_seconds(est['total'])} ({range_text(est)})"


def data_bytes(spec: RunSpec, data_root: str | Path) -> int | None:
    """uint8 bytes of the images a run loads (training split, validation carved from it,
    test split) without loading them; None if the dataset's size is unknown."""
    sizes = dataset_sizes(spec["dataset"], data_root, spec["subset"])
    if sizes is None:
        return None
    side = image_size(spec["dataset"], data_root)
    return (sizes[0] + sizes[1]) * side * side * 3


def placement_lines(specs: list[RunSpec], device: str, data_root: str | Path,
                    requested: str) -> list[str]:
    """``--dry-run``'s lines on where each dataset's images will live
    (:mod:`benchmarks.placement`): one per dataset and subset of the runs to do."""
    from .placement import describe_auto

    seen: dict[str, int | None] = {}
    for s in specs:
        subset = ",".join(f"{k}={v}" for k, v in sorted((s["subset"] or {}).items()) if v)
        seen.setdefault(s["dataset"] + (f" [{subset}]" if subset else ""), data_bytes(s, data_root))
    lines = []
    for name, nbytes in seen.items():
        if nbytes is None:
            what = "size unknown until the data is prepared"
        elif requested == "auto":
            what = describe_auto(nbytes, device)
        else:
            what = f"{nbytes / 2 ** 30:.2f} GiB of uint8 images -> {requested} (--data-placement {requested})"
        lines.append(f"data placement, {name}: {what}")
    return lines
