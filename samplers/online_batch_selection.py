"""Online batch selection (Loshchilov & Hutter 2015, arXiv:1511.06343): rank by latest loss.

Rules:

- Every example has a *latest known loss*: the training loss of the last time it was
  trained on (``observe``, no extra forward), or the loss from the last full recomputation.
- At every step the n examples are ranked by that loss, rank 1 = largest, and b ranks are
  drawn independently (with replacement) with probability
  ``p_r ∝ exp(-log(s_e) / n * r)`` for r = 1..n: exponential decay with rank, so the
  most likely example is ``s_e^((n-1)/n) ≈ s_e`` times as likely as the least likely
  (the paper's "selection pressure" s_e). Ranks are drawn from this fixed distribution
  and mapped to examples through a sort on the device, so a step never syncs.
- ``s_e`` is annealed per epoch from ``s_e0`` (epoch 1) to ``s_e_end`` (last epoch),
  geometrically: ``s_e = s_e0 * (s_e_end / s_e0) ** ((epoch - 1) / (epochs - 1))``.
- At the start of epoch 1 and then every ``recompute_epochs`` epochs, the losses of all n
  examples are recomputed with a no-grad forward (``ctx.score``, in chunks, on freshly
  augmented views like the training losses they replace): n forwards, counted.

Provenance. The selection rule (exponential decay with rank, ratio s_e between the most
and least likely example) and the existence of both the annealing of s_e and the
periodic recomputation are from the paper (sections 3 and 4, as summarised in the issue).
The paper's exact values could not be consulted offline, so the defaults are GUESSES:
``s_e0`` 100 (GUESS: the paper's smaller explored pressure, 10^2), ``s_e_end`` 1
(GUESS: pressure decaying to uniform by the last epoch; Song et al. 2020's "Recency Bias",
built on this rule, also decays its pressure to 1), the geometric annealing shape
(GUESS) and ``recompute_epochs`` 2 (GUESS: "every few epochs"). The epoch length is the
suite's n // b steps, as for every sampler.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from .base import Batch, Sampler, StepContext
from .registry import register

#: examples per chunk of the recomputation forward (bounds the augmented-views memory)
RECOMPUTE_CHUNK = 4096


def rank_probabilities(n: int, s_e: float, device: torch.device | str = "cpu") -> Tensor:
    """``p_r ∝ exp(-log(s_e) / n * r)`` for ranks r = 1..n (index 0 = rank 1), normalised."""
    r = torch.arange(1, n + 1, dtype=torch.float64, device=device)
    logits = -math.log(s_e) / n * r
    p = torch.softmax(logits, dim=0)
    return p.float()


def annealed_pressure(s_e0: float, s_e_end: float, epoch: int, epochs: Optional[int]) -> float:
    """Geometric interpolation from ``s_e0`` at epoch 1 to ``s_e_end`` at the last epoch."""
    if not epochs or epochs <= 1:
        return s_e0
    t = min(max((epoch - 1) / (epochs - 1), 0.0), 1.0)
    return s_e0 * (s_e_end / s_e0) ** t


@register("online_batch_selection")
class OnlineBatchSelection(Sampler):
    """``s_e0`` / ``s_e_end``: selection pressure (>= 1) at the first / last epoch;
    ``recompute_epochs``: recompute every example's loss every that many epochs (from
    epoch 1; 0 = only at epoch 1). Epoch metrics: ``obs_s_e`` (this epoch's pressure) and
    ``obs_recomputed`` (1 if this epoch started with a full recomputation)."""

    def __init__(self, s_e0: float = 100.0, s_e_end: float = 1.0, recompute_epochs: int = 2) -> None:
        for name, value in (("s_e0", s_e0), ("s_e_end", s_e_end)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 1 (1 = uniform), got {value!r}")
        if isinstance(recompute_epochs, bool) or not isinstance(recompute_epochs, int) or recompute_epochs < 0:
            raise ValueError(f"recompute_epochs must be an integer >= 0, got {recompute_epochs!r}")
        self.s_e0, self.s_e_end = float(s_e0), float(s_e_end)
        self.recompute_epochs = recompute_epochs
        self._losses: Optional[Tensor] = None
        self._p: Optional[Tensor] = None
        self._s_e = self.s_e0
        self._recomputed = False

    def recompute_due(self, epoch: int) -> bool:
        if epoch == 1 or self._losses is None:
            return True
        return self.recompute_epochs > 0 and (epoch - 1) % self.recompute_epochs == 0

    def start_epoch(self, epoch: int, ctx: StepContext) -> None:
        self._recomputed = self.recompute_due(epoch)
        if self._recomputed:
            self._losses = self.recompute(ctx)
        self._s_e = annealed_pressure(self.s_e0, self.s_e_end, epoch, ctx.epochs)
        self._p = rank_probabilities(ctx.n_train, self._s_e, ctx.device)

    @staticmethod
    def recompute(ctx: StepContext) -> Tensor:
        """Every example's loss under the current model (n counted forwards)."""
        all_idx = torch.arange(ctx.n_train, device=ctx.device)
        return torch.cat([ctx.score(all_idx[s:s + RECOMPUTE_CHUNK])
                          for s in range(0, ctx.n_train, RECOMPUTE_CHUNK)]).float()

    def next_batch(self, ctx: StepContext) -> Batch:
        if self._losses is None or self._p is None:
            raise RuntimeError("start_epoch must be called before next_batch")
        order = torch.sort(self._losses, descending=True, stable=True).indices
        ranks = torch.multinomial(self._p, ctx.batch_size, replacement=True, generator=ctx.generator)
        return Batch(idx=order[ranks])

    def observe(self, idx: Tensor, losses: Tensor, p_true: Tensor) -> None:
        if self._losses is None:
            raise RuntimeError("start_epoch must be called before observe")
        self._losses[idx] = losses.to(self._losses.dtype)

    def latest_losses(self) -> Tensor:
        assert self._losses is not None
        return self._losses.clone()

    def epoch_metrics(self) -> dict[str, float]:
        return {"obs_s_e": self._s_e, "obs_recomputed": float(self._recomputed)}

    def state_dict(self) -> dict[str, Any]:
        return {"losses": None if self._losses is None else self._losses.detach().clone(),
                "p": None if self._p is None else self._p.detach().clone(),
                "s_e": self._s_e, "recomputed": self._recomputed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._losses, self._p = state["losses"], state["p"]
        self._s_e, self._recomputed = float(state["s_e"]), bool(state["recomputed"])
