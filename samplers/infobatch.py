"""InfoBatch (Qin et al., ICLR 2024): prune well-learned examples, rescale the rest.

Rules (from the reference implementation, NUS-HPC-AI-Lab/InfoBatch ``infobatch/infobatch.py``):

- Score = each example's latest training loss, written by ``observe`` (no extra forward).
  Examples never trained on keep the reference's initial score **3.0** (``scores =
  ones * 3``), so in the first epoch nothing is below the mean and nothing is pruned.
- At every pruning epoch, the "well-learned" set W = {i : score_i < mean(score)}. Exactly
  ``int(keep_ratio * |W|)`` of them, drawn uniformly without replacement, are kept with
  weight ``1 / keep_ratio``; the rest of W is skipped this epoch; every example not in W
  is kept with weight 1. ``keep_ratio = 1 - ratio`` (the reference clamps it to
  [0.1, 1]; here a ratio above 0.9 is an error instead of a silent clamp). The kept
  examples are shuffled and served in batches of b (last partial batch dropped, as every
  sampler of the suite does), so the epoch has ``len(kept) // b`` steps, reported to the
  trainer through ``epoch_steps``.
- Pruning epochs: the reference's ``IBSampler`` counts its resets in ``iterations`` and
  prunes while ``iterations <= num_epochs * delta`` (``IBSampler.reset``). Its constructor
  already calls ``reset()`` once, so the DataLoader's first epoch sees ``iterations`` = 1:
  the 0-based epoch e prunes iff ``e + 1 <= num_epochs * delta``. With the suite's 1-based
  epochs that is: prune iff ``epoch <= epochs * delta``, i.e. ``floor(epochs * delta)``
  pruned epochs, then the full data set (uniform permutation, weight 1). (Example: 6
  epochs at delta 0.875 prune epochs 1-5 and train epoch 6 on the full data.)
  Ours, named: the reference resets the weights to 1 only when ``num_epochs * delta`` is
  an integer (``iterations == stop_prune + 1``), so otherwise its last pruned epoch's
  1/keep_ratio weights leak into the full-data epochs; we always use weight 1 there, the
  paper's "full data, unscaled".
- Loss: the reference multiplies each loss by its weight and takes the **plain mean**
  over the batch (``values.mul_(weights); values.mean()``), so batches carry
  ``weight_mode="mean"``. Over an epoch, the expected sum of rescaled losses equals the
  full-data sum (exactly when ``keep_ratio * |W|`` is an integer): tested.
- LR schedule: the trainer places every step by its fraction of the epoch
  (``benchmarks.train.schedule_position``), as the reference's per-epoch rebuild of
  OneCycleLR does, so the schedule spans the run's real (fewer) steps.

Defaults: ``ratio`` 0.5 and ``delta`` 0.875 are the reference's defaults
(``InfoBatch.__init__`` and the ``--ratio``/``--delta`` arguments of
``examples/cifar_example.py``). The number of epochs comes from ``ctx.epochs``.

Synchronisation: once per epoch (``start_epoch`` must know how many examples it keeps to
size the epoch); never inside ``next_batch``/``observe``.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from .base import Batch, Cost, HostSyncs, Sampler, StepContext
from .registry import register
from .traits import ArmStyle, NotePart, PlotTraits

#: The reference's score for examples not yet trained on (``torch.ones(n) * 3``).
INITIAL_SCORE = 3.0


def _check_fraction(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


@register("infobatch")
class InfoBatch(Sampler):
    """``ratio``: fraction of the below-mean examples pruned per epoch (0 .. 0.9);
    ``delta``: fraction of the epochs that prune (the rest train on the full data).
    Epoch metrics: ``infobatch_kept_frac`` (examples kept / n) and ``infobatch_pruning``
    (1 if the epoch pruned)."""

    revision = 2   # 2: floor(E * delta) pruned epochs (the reference's counter); 1: one more

    # a pruning epoch's length is |kept| // b, which the host must know: two ``nonzero``
    # per epoch start (below / not below the mean). The sync test's two epochs both prune.
    host_syncs = HostSyncs(per_epoch={"nonzero": 2}, test_params={"delta": 1.0})
    plot = PlotTraits(
        colour="#E6C229", arms={"infobatch": ArmStyle("#E6C229", 110)}, report_rank=4,  # mustard
        note=(NotePart("**{arm}** (InfoBatch): pruned epochs are shorter, so its runs train "
                       "fewer steps than the other arms; compare it against backprops, not "
                       "epochs."),))

    def check_sizes(self, *, n_train: int, batch_size: int, epochs: int) -> list[str]:
        # a pruning epoch keeps every example at or above the mean (at least one) and
        # int(keep_ratio * |below|) of the rest: at least 1 + int(keep_ratio * (n - 1))
        if not any(self.is_pruning_epoch(e, epochs) for e in range(1, epochs + 1)):
            return []
        least = 1 + int(self.keep_ratio * (n_train - 1))
        if least < batch_size:
            return [f"infobatch: a pruning epoch may keep as few as {least} of {n_train} examples "
                    f"(ratio {self.ratio:g}), less than one batch of {batch_size}; lower ratio or "
                    f"batch_size"]
        return []

    def cost(self, *, n_train: int, batch_size: int, epochs: int) -> Cost:
        # GUESS: about half the examples score below the mean, so a pruning epoch keeps
        # 1 - ratio/2 of the data (the true share depends on the loss distribution)
        pruned = sum(self.is_pruning_epoch(e, epochs) for e in range(1, epochs + 1))
        return Cost(step_fraction=(pruned * (1 - self.ratio / 2) + (epochs - pruned)) / epochs)

    def __init__(self, ratio: float = 0.5, delta: float = 0.875) -> None:
        self.ratio = _check_fraction("ratio", ratio, 0.0, 0.9)
        self.delta = _check_fraction("delta", delta, 0.0, 1.0)
        self.keep_ratio = 1.0 - self.ratio
        self._scores: Optional[Tensor] = None
        self._order: Optional[Tensor] = None     # this epoch's kept examples, shuffled
        self._weights: Optional[Tensor] = None   # weight of each entry of _order
        self._pos = 0
        self._pruning = False

    def is_pruning_epoch(self, epoch: int, total_epochs: int) -> bool:
        """The reference's rule (``IBSampler.reset``, whose counter starts at 1 because the
        constructor resets once): the 1-based ``epoch`` prunes iff ``epoch <= total * delta``."""
        return epoch <= total_epochs * self.delta

    def start_epoch(self, epoch: int, ctx: StepContext) -> None:
        if ctx.epochs is None:
            raise ValueError("infobatch needs the run's number of epochs: set StepContext.epochs")
        n = ctx.n_train
        if self._scores is None:
            self._scores = torch.full((n,), INITIAL_SCORE, dtype=torch.float32, device=ctx.device)
        self._pruning = self.is_pruning_epoch(epoch, ctx.epochs)
        if self._pruning:
            self._order, self._weights = self.prune(self._scores, ctx.generator)
        else:
            self._order = torch.randperm(n, generator=ctx.generator, device=ctx.device)
            self._weights = torch.ones(n, dtype=torch.float32, device=ctx.device)
        self._pos = 0

    def prune(self, scores: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(shuffled kept indices, their weights) for one pruning epoch (syncs once)."""
        well = scores < scores.mean()
        low = torch.nonzero(well).squeeze(1)          # the per-epoch sync: |W| sizes the epoch
        high = torch.nonzero(~well).squeeze(1)
        n_keep = int(self.keep_ratio * int(low.shape[0]))
        pick = torch.randperm(int(low.shape[0]), generator=generator, device=scores.device)[:n_keep]
        kept_low = low[pick]
        idx = torch.cat([high, kept_low])
        w = torch.cat([torch.ones(high.shape[0], device=scores.device),
                       torch.full((n_keep,), 1.0 / self.keep_ratio, device=scores.device)])
        perm = torch.randperm(int(idx.shape[0]), generator=generator, device=scores.device)
        return idx[perm], w[perm]

    def epoch_steps(self, epoch: int, ctx: StepContext, default: int) -> int:
        assert self._order is not None, "start_epoch must be called before epoch_steps"
        return min(default, int(self._order.shape[0]) // ctx.batch_size)

    def next_batch(self, ctx: StepContext) -> Batch:
        if self._order is None or self._weights is None:
            raise RuntimeError("start_epoch must be called before next_batch")
        b = ctx.batch_size
        if self._pos + b > self._order.shape[0]:
            # A loop that ignores epoch_steps (the suite's trainer honours it) gets another
            # shuffled pass over the same kept examples and weights instead of an error.
            perm = torch.randperm(int(self._order.shape[0]), generator=ctx.generator,
                                  device=self._order.device)
            self._order, self._weights, self._pos = self._order[perm], self._weights[perm], 0
        idx = self._order[self._pos:self._pos + b]
        w = self._weights[self._pos:self._pos + b]
        self._pos += b
        return Batch(idx=idx, weights=w, weight_mode="mean")

    def observe(self, idx: Tensor, losses: Tensor, p_true: Tensor) -> None:
        if self._scores is None:
            raise RuntimeError("start_epoch must be called before observe")
        self._scores[idx] = losses.to(self._scores.dtype)

    def scores(self) -> Tensor:
        """The latest training loss of every example (3.0 where never trained on)."""
        assert self._scores is not None
        return self._scores.clone()

    def epoch_metrics(self) -> dict[str, float]:
        if self._scores is None or self._order is None:
            return {}
        return {"infobatch_kept_frac": int(self._order.shape[0]) / int(self._scores.shape[0]),
                "infobatch_pruning": float(self._pruning)}

    def state_dict(self) -> dict[str, Any]:
        def clone(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.detach().clone()
        return {"scores": clone(self._scores), "order": clone(self._order),
                "weights": clone(self._weights), "pos": self._pos, "pruning": self._pruning}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._scores, self._order, self._weights = state["scores"], state["order"], state["weights"]
        self._pos, self._pruning = int(state["pos"]), bool(state["pruning"])
