"""Cost estimates for ``--dry-run`` and the CPU guard, from throughput measured here.

A few real ResNet training steps are timed on the current device at each (width, batch)
of the matrix; a run's cost is its optimizer steps times that step time, times the
sampler's extra forwards (a no-grad forward costs about a third of a training step),
plus evaluation. Good to within tens of percent, which is what a go/no-go needs.
"""
from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import models

from .config import RunSpec

BUILTIN_SIZES = {"cifar10": (50000, 10000, 10), "cifar100": (50000, 10000, 100),
                 "svhn": (73257, 26032, 10)}
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


@lru_cache(maxsize=None)
def step_seconds(device: str, width: float, batch_size: int, num_classes: int, amp: bool,
                 channels_last: bool, budget_s: float = 3.0, max_steps: int = 12) -> float:
    """Seconds of one ResNet-18 training step (synthetic data), once warmed up.

    Steps until ``budget_s`` is spent (at least 4, at most ``max_steps``) and takes the
    median of the second half. Why not "one warm-up step, then a few": on CPU the first
    five or so steps run up to 2x slower (allocator and oneDNN warm-up; measured on a
    width-0.25 ResNet-18, batch 128: 0.96, 0.40, 0.41, 0.41, 0.35, then 0.21-0.27 s),
    which made estimates ~2x too high. A slow device (width 1 on CPU, ~4 s/step) still
    stops after 4 steps.
    """
    dev = torch.device(device)
    net = models.build("resnet18", num_classes, width=width).to(dev)
    x = torch.randn(batch_size, 3, 32, 32, device=dev)
    if channels_last and dev.type == "cuda":
        net, x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch_size,), device=dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    times: list[float] = []
    while len(times) < max_steps and (len(times) < 4 or sum(times) < budget_s):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[len(times) // 2:]))


def sampler_factor(spec: RunSpec) -> float:
    """Training-step cost multiplier from the forwards a sampler spends on selection."""
    s, b = spec["sampler"], spec["batch_size"]
    extra = 0.0  # extra forwarded examples per step
    if s["name"] == "selective_backprop":
        extra = (s["beta"] + 1) * b  # E[keep] = 1/(beta+1) for uniform percentiles
    elif s["name"] == "loss_oracle":
        extra = s["bank_size"]
    elif s["name"] == "impon" and s.get("diagnose_every"):
        extra = s["bank_size"] / s["diagnose_every"]
    return 1.0 + FORWARD_FRACTION * extra / b


def run_seconds(spec: RunSpec, device: str, data_root: str | Path) -> float | None:
    sizes = dataset_sizes(spec["dataset"], data_root, spec["subset"])
    if sizes is None:
        return None
    n_train, n_test, k = sizes
    cuda = device.startswith("cuda")
    t = step_seconds(device, float(spec["model"]["width"]), spec["batch_size"], k,
                     cuda and spec["amp"] == "bf16", cuda and spec["channels_last"])
    steps = (n_train // spec["batch_size"]) * spec["epochs"]
    evals = (spec["epochs"] + 1) * n_test / spec["batch_size"] * FORWARD_FRACTION * t
    return steps * t * sampler_factor(spec) + evals


def format_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def describe(specs: list[RunSpec], device: str, data_root: str | Path) -> dict[str, Any]:
    per_run = {s.run_id: run_seconds(s, device, data_root) for s in specs}
    known = [v for v in per_run.values() if v is not None]
    return {"per_run": per_run, "total": sum(known), "unknown": len(per_run) - len(known)}
