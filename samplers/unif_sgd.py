"""unif-SGD: each epoch trains on a uniformly random fraction of the training set.

The budgeted-training baseline of Arazo et al. 2021 ("How Important is Importance
Sampling for Deep Budgeted Training?"), and RS2 ("repeated sampling of random subsets",
Okanovic et al., ICLR 2024) in both of its forms, chosen by ``draw``:

- ``with_replacement`` (default; Arazo et al.'s rule): every epoch draws ``int(f * n)``
  distinct examples uniformly at random (f = ``StepContext.budget``) and visits them in
  random order, cut into batches of b. Reference: ``select_samples`` in
  ``utils_train/utils_train.py`` of EricArazo/ImportanceSampling (method ``unif-SGD``:
  all-ones probabilities, ``np.random.choice(..., samples_to_keep, replace=False)`` with
  ``samples_to_keep = int(len(curr_prob) * args.budget)``), served by ``prepare_loader``
  through a ``SubsetRandomSampler`` with ``drop_last=True``. Each epoch's subset is drawn
  independently of the previous ones: this is RS2 *with* replacement (between rounds).
- ``without_replacement``: RS2 without replacement. The stream of examples is one random
  permutation of the training set, then another, and so on; each epoch takes its
  ``floor(f * n / b) * b`` examples as the next consecutive chunk of that stream, so no
  example is repeated until every example has been used (the state carries across
  epochs and is checkpointed). Ours, named: a batch that straddles two permutations
  takes the old one's last examples and the new one's first, so it may rarely hold one
  example twice; the permutation property is exact.

At budget 1 both are the ``uniform`` sampler's distribution (a fresh permutation per
epoch; ``without_replacement`` then uses exactly one permutation per epoch when b divides
n). The trainer runs ``floor(f * n / b)`` steps per epoch; with ``with_replacement``, if it
asks for more batches than the subset holds (a custom ``epoch_steps``), a fresh subset
follows. No forwards, no synchronisation: ``randperm`` and slicing on the device.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from .base import Batch, Cost, Sampler, StepContext
from .registry import register
from .traits import ArmStyle, PlotTraits


DRAWS = ("with_replacement", "without_replacement")


@register("unif_sgd")
class UnifSGD(Sampler):
    """``draw``: ``with_replacement`` (a fresh uniform ``int(budget * n)``-subset per epoch,
    Arazo et al.'s unif-SGD = RS2 with replacement) or ``without_replacement`` (RS2 without
    replacement: consecutive chunks of a stream of permutations). The budget is the run's
    (``StepContext.budget``)."""

    test_variants = {"rs2-without-replacement": {"draw": "without_replacement"}}
    # a greyish blue: uniform sampling, on a budget; next to the baselines in legends
    plot = PlotTraits(colour="#6C8EBF", arms={"unif_sgd": ArmStyle("#6C8EBF", 20)})

    def cost(self, *, n_train: int, batch_size: int, epochs: int) -> Cost:
        return Cost()                      # a permutation per epoch: free

    def __init__(self, draw: str = "with_replacement") -> None:
        if draw not in DRAWS:
            raise ValueError(f"draw must be one of {', '.join(DRAWS)}, got {draw!r}")
        self.draw = draw
        self._order: Optional[Tensor] = None
        self._pos = 0

    def _draw(self, ctx: StepContext) -> None:
        k = max(int(ctx.n_train * ctx.budget), 1)
        # The first k of a uniform permutation: a uniform k-subset in uniform random order.
        self._order = torch.randperm(ctx.n_train, generator=ctx.generator, device=ctx.device)[:k]
        self._pos = 0

    def start_epoch(self, epoch: int, ctx: StepContext) -> None:
        if self.draw == "with_replacement":
            self._draw(ctx)
        elif self._order is None:     # the stream's first permutation; later ones on demand
            self._order = torch.randperm(ctx.n_train, generator=ctx.generator, device=ctx.device)
            self._pos = 0

    def next_batch(self, ctx: StepContext) -> Batch:
        if self._order is None:
            raise RuntimeError("start_epoch must be called before next_batch")
        b = ctx.batch_size
        if self.draw == "without_replacement":
            return Batch(idx=self._take_from_stream(ctx, b))
        if self._pos + b > self._order.shape[0]:  # more steps than the subset holds
            self._draw(ctx)
        idx = self._order[self._pos:self._pos + b]
        self._pos += b
        return Batch(idx=idx)

    def _take_from_stream(self, ctx: StepContext, b: int) -> Tensor:
        """The next b examples of the permutation stream (a new permutation when used up)."""
        assert self._order is not None
        left = int(self._order.shape[0]) - self._pos
        if left >= b:
            idx = self._order[self._pos:self._pos + b]
            self._pos += b
            return idx
        tail = self._order[self._pos:]
        self._order = torch.randperm(ctx.n_train, generator=ctx.generator, device=ctx.device)
        self._pos = b - left
        return torch.cat([tail, self._order[:self._pos]])

    def state_dict(self) -> dict[str, Any]:
        return {"order": None if self._order is None else self._order.clone(), "pos": self._pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._order, self._pos = state["order"], int(state["pos"])
