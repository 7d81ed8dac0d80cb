"""Uniform sampling: the paper's "SGD" and "Adam" baselines (with that optimiser).

Each epoch is a fresh random permutation cut into consecutive batches of b; the last
partial batch is dropped so every sampler makes ``n_train // b`` steps per epoch.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import Batch, Cost, Sampler, StepContext
from .registry import register
from .traits import ArmStyle, PerfRow, PlotTraits


@register("uniform")
class Uniform(Sampler):
    # The plain baseline blue (seaborn "colorblind"); its other named arms are the suite's
    # baselines: Adam light blue, Adam at its customary lr dark blue, SGD at IMPON's lr a
    # grey (the same-lr control), and any uniform arm at another lr a grey too. Ranks: the
    # legend order of every figure (the baselines first).
    plot = PlotTraits(
        colour="#0173B2", lr_controls_grey=True,
        arms={"sgd": ArmStyle("#0173B2", 0), "uniform": ArmStyle("#0173B2", 10),
              "adam": ArmStyle("#56B4E9", 30), "adam_lr1e-3": ArmStyle("#1B4F72", 40),
              "sgd_lr1e-3": ArmStyle("#8C8C8C", 50), "uniform_lr1e-3": ArmStyle("#8C8C8C", 60)})

    @classmethod
    def perf_rows(cls, n_train: int | None = None, batch_size: int | None = None) -> dict[str, PerfRow]:
        # the loop around a plain step must cost (almost) nothing
        return {"uniform": PerfRow(efficiency_target=True)}

    def cost(self, *, n_train: int, batch_size: int, epochs: int) -> Cost:
        return Cost()                      # plain training

    def __init__(self) -> None:
        self._perm: Tensor | None = None
        self._pos = 0

    def start_epoch(self, epoch: int, ctx: StepContext) -> None:
        self._perm = torch.randperm(ctx.n_train, generator=ctx.generator, device=ctx.device)
        self._pos = 0

    def next_batch(self, ctx: StepContext) -> Batch:
        assert self._perm is not None, "start_epoch must be called before next_batch"
        b = ctx.batch_size
        if self._pos + b > ctx.n_train:  # more steps than one pass: start a new permutation
            self.start_epoch(-1, ctx)
        idx = self._perm[self._pos:self._pos + b]
        self._pos += b
        return Batch(idx=idx)

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self._perm, "pos": self._pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._perm, self._pos = state["perm"], state["pos"]
