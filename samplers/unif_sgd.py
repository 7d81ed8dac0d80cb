"""unif-SGD: each epoch trains on a fresh uniformly random fraction of the training set.

The budgeted-training baseline of Arazo et al. 2021 ("How Important is Importance
Sampling for Deep Budgeted Training?"): with a budget ``f`` (``StepContext.budget``),
every epoch draws ``int(f * n)`` distinct examples uniformly at random and visits them in
random order, cut into batches of b. Reference: ``select_samples`` in
``utils_train/utils_train.py`` of the public EricArazo/ImportanceSampling code
(method ``unif-SGD``: all-ones probabilities, ``np.random.choice(..., samples_to_keep,
replace=False)`` with ``samples_to_keep = int(len(curr_prob) * args.budget)``), served by
``prepare_loader`` through a ``SubsetRandomSampler`` with ``drop_last=True``. The same
rule is RS2 without replacement ("repeated sampling of random subsets", Okanovic et al.,
ICLR 2024).

At budget 1 this is exactly the ``uniform`` sampler's distribution (a fresh permutation
per epoch). The trainer runs ``floor(f * n / b)`` steps per epoch; if it asks for more
batches than the subset holds (a custom ``epoch_steps``), a fresh subset follows.
No forwards, no synchronisation: the draw is one ``randperm`` per epoch on the device.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from .base import Batch, Sampler, StepContext
from .registry import register


@register("unif_sgd")
class UnifSGD(Sampler):
    """A fresh uniform ``int(budget * n)``-subset per epoch, in random order. No parameters:
    the budget is the run's (``StepContext.budget``)."""

    def __init__(self) -> None:
        self._order: Optional[Tensor] = None
        self._pos = 0

    def _draw(self, ctx: StepContext) -> None:
        k = max(int(ctx.n_train * ctx.budget), 1)
        # The first k of a uniform permutation: a uniform k-subset in uniform random order.
        self._order = torch.randperm(ctx.n_train, generator=ctx.generator, device=ctx.device)[:k]
        self._pos = 0

    def start_epoch(self, epoch: int, ctx: StepContext) -> None:
        self._draw(ctx)

    def next_batch(self, ctx: StepContext) -> Batch:
        if self._order is None:
            raise RuntimeError("start_epoch must be called before next_batch")
        b = ctx.batch_size
        if self._pos + b > self._order.shape[0]:  # more steps than the subset holds
            self._draw(ctx)
        idx = self._order[self._pos:self._pos + b]
        self._pos += b
        return Batch(idx=idx)

    def state_dict(self) -> dict[str, Any]:
        return {"order": None if self._order is None else self._order.clone(), "pos": self._pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._order, self._pos = state["order"], int(state["pos"])
