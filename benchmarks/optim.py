"""Optimisers and learning-rate schedules from a RunSpec.

The schedule is a pure function of the iteration (``lr_at``), applied by the trainer
before every step. There is no scheduler object to forget to step, its state is just the
iteration number (so resume is exact), and the lr of every step is logged from the host
value without touching the device.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import torch


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    name = cfg["name"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"],
                               nesterov=cfg["nesterov"], weight_decay=cfg["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"],
                                weight_decay=cfg["weight_decay"])
    raise ValueError(f"unknown optimizer {name!r}")


def lr_at(iteration: int, total: int, steps_per_epoch: int, base_lr: float,
          schedule: Mapping[str, Any], epoch: int | None = None) -> float:
    """Learning rate of step ``iteration`` (0-based) of ``total`` steps.

    ``linear``/``cosine`` go from ``base_lr`` at the first step to ``final_lr`` at the last,
    per iteration (as in Arazo et al. 2021, whose setup the IMPON paper follows:
    ``linearLR_per_it`` in ``utils_train/utils_train.py``), and hold ``final_lr`` past
    ``total`` (as that function's fallback does).
    ``step`` multiplies by ``gamma`` at each milestone epoch (1-based epoch boundaries);
    its epoch is ``epoch`` (0-based) when given, else ``iteration // steps_per_epoch``.
    """
    name = schedule["name"]
    frac = min(1.0, iteration / max(1, total - 1))
    if name == "constant":
        return base_lr
    if name == "linear":
        return base_lr + (schedule["final_lr"] - base_lr) * frac
    if name == "cosine":
        return schedule["final_lr"] + (base_lr - schedule["final_lr"]) * 0.5 * (1 + math.cos(math.pi * frac))
    if name == "step":
        if epoch is None:
            epoch = iteration // steps_per_epoch  # 0-based epoch of this step
        passed = sum(1 for m in schedule["milestones"] if epoch >= int(m))
        return base_lr * schedule["gamma"] ** passed
    raise ValueError(f"unknown schedule {name!r}")
