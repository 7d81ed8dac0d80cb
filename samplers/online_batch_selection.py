"""Online batch selection (Loshchilov & Hutter 2015, arXiv:1511.06343): rank by latest loss.

Reference: idiap/importance-sampling, ``OnlineBatchSelectionSampler`` in
``importance_sampling/samplers.py`` (``update``), with its defaults in
``scripts/importance_sampling.py`` (the ``"obs"`` entry of ``get_samplers_dictionary``).
Its rule, which is this sampler's default:

- Every example has a *latest known loss* (``_raw_scores``): 1.0 before anything is known
  (``np.ones``), then the training loss of the last time it was trained on (``observe``,
  no extra forward), or the loss from the last full recomputation.
- Epoch 1 is uniform: all scores start equal, so b examples are drawn uniformly with
  replacement; nothing is recomputed before it.
- At the end of every epoch (here: the start of the next, same model), if the epoch
  about to start, ``e`` (1-based), is a multiple of ``recompute_epochs`` (the reference's
  ``self._epoch % self.recompute == 0`` with ``_epoch = 1 + batches // steps_per_epoch``),
  the losses of all n examples are recomputed with a no-grad forward in **eval mode**
  (``model.score`` runs with Keras learning phase 0) on the **un-augmented** training
  inputs (``dataset.train_data``): n forwards, counted. With the default 2 that is before
  epochs 2, 4, 6, ...; ``recompute_epochs: 0`` never recomputes.
- Then, **once per epoch**, the examples are ranked by latest loss (rank 0 = largest) and
  the epoch's b-example batches are drawn independently, with replacement, with
  ``p_r ∝ exp(-log(s_e) / n * r)``: exponential decay with rank, so the most likely
  example is about ``s_e`` times as likely as the least likely (the paper's selection
  pressure). Losses observed during the epoch only matter at the next ranking. Ranks are
  mapped to examples through one sort on the device at the epoch start, so a step never
  syncs.
- ``s_e`` decays geometrically over the run: epoch e (>= 2) uses
  ``s_e0 * (s_e_end / s_e0) ** (e / epochs)`` (the reference's
  ``s_e0 * exp(log(s_eend / s_e0) / n_epochs) ** _epoch``; ``n_epochs`` is the run's
  epochs here), so the last epoch uses ``s_e_end``. ``StepContext.epochs`` must be set.
- No weights (the paper's unweighted selection; the reference takes a reweighting policy
  as an argument and ``unweighted`` is the one that matches the paper).

Defaults: ``s_e0`` 100 and ``s_e_end`` 1 are the decaying pressure "from 100 to 1" that
Song et al. 2020 ("Carpe Diem, Seize the Samples Uncertain 'at the Moment' for Adaptive
Batch Selection", CIKM 2020, section 5.2 and its footnote) use for online batch selection;
``recompute_epochs`` 2 is the reference script's ``obs_recompute`` default. The epoch length
is the suite's n // b steps, as for every sampler (the reference's ``steps_per_epoch`` is a
free argument, 300 by default). Our difference, named: the reference ranks with numpy's
unstable ``argsort``; we break ties by index (stable sort), so a run is reproducible.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from .base import Batch, Cost, Sampler, StepContext
from .registry import register
from .traits import ArmStyle, PlotTraits

#: examples per chunk of the recomputation forward (bounds the augmented-views memory)
RECOMPUTE_CHUNK = 4096


def rank_probabilities(n: int, s_e: float, device: torch.device | str = "cpu") -> Tensor:
    """``p_r ∝ exp(-log(s_e) / n * r)`` for ranks r = 1..n (index 0 = rank 1), normalised."""
    r = torch.arange(1, n + 1, dtype=torch.float64, device=device)
    logits = -math.log(s_e) / n * r
    p = torch.softmax(logits, dim=0)
    return p.float()


def annealed_pressure(s_e0: float, s_e_end: float, epoch: int, epochs: int) -> float:
    """The reference's pressure for 1-based ``epoch`` (>= 2): ``s_e0 * (s_e_end / s_e0) **
    (epoch / epochs)``; epoch 1 is uniform (pressure 1)."""
    if epoch <= 1:
        return 1.0
    return s_e0 * (s_e_end / s_e0) ** (min(epoch, epochs) / epochs)


@register("online_batch_selection")
class OnlineBatchSelection(Sampler):
    """``s_e0`` / ``s_e_end``: selection pressure (>= 1) at the start / end of the run;
    ``recompute_epochs``: recompute every example's loss (eval mode, un-augmented) before
    each epoch whose number is a multiple of it (0 = never). Epoch metrics: ``obs_s_e``
    (this epoch's pressure; 1 = uniform) and ``obs_recomputed`` (1 if this epoch started
    with a full recomputation)."""

    revision = 2   # 2: the reference's schedule; 1 recomputed in train mode and re-sorted each step
    plot = PlotTraits(colour="#5E4FA2",  # indigo
                      arms={"online_batch_selection": ArmStyle("#5E4FA2", 140)})

    @classmethod
    def test_params(cls, n_train: int, batch_size: int) -> dict[str, Any]:
        return {"recompute_epochs": 1}

    def cost(self, *, n_train: int, batch_size: int, epochs: int) -> Cost:
        return Cost(forwards_per_run=self.recomputations(epochs) * n_train)

    def __init__(self, s_e0: float = 100.0, s_e_end: float = 1.0, recompute_epochs: int = 2) -> None:
        for name, value in (("s_e0", s_e0), ("s_e_end", s_e_end)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 1 (1 = uniform), got {value!r}")
        if isinstance(recompute_epochs, bool) or not isinstance(recompute_epochs, int) or recompute_epochs < 0:
            raise ValueError(f"recompute_epochs must be an integer >= 0, got {recompute_epochs!r}")
        self.s_e0, self.s_e_end = float(s_e0), float(s_e_end)
        self.recompute_epochs = recompute_epochs
        self._losses: Optional[Tensor] = None
        self._order: Optional[Tensor] = None   # examples by decreasing latest loss (this epoch)
        self._p: Optional[Tensor] = None
        self._s_e = 1.0
        self._recomputed = False

    def recompute_due(self, epoch: int) -> bool:
        """True if the 1-based ``epoch`` starts with a full recomputation (never epoch 1)."""
        return epoch >= 2 and self.recompute_epochs > 0 and epoch % self.recompute_epochs == 0

    def recomputations(self, epochs: int) -> int:
        """How many full recomputations a run of ``epochs`` epochs makes (cost model)."""
        return sum(self.recompute_due(e) for e in range(1, epochs + 1))

    def start_epoch(self, epoch: int, ctx: StepContext) -> None:
        if ctx.epochs is None:
            raise ValueError("online_batch_selection anneals its pressure over the run: "
                             "set StepContext.epochs")
        if self._losses is None:
            self._losses = torch.ones(ctx.n_train, dtype=torch.float32, device=ctx.device)
        self._recomputed = self.recompute_due(epoch)
        if self._recomputed:
            self._losses = self.recompute(ctx)
        self._s_e = annealed_pressure(self.s_e0, self.s_e_end, epoch, ctx.epochs)
        self._order = torch.sort(self._losses, descending=True, stable=True).indices
        self._p = rank_probabilities(ctx.n_train, self._s_e, ctx.device)

    @staticmethod
    def recompute(ctx: StepContext) -> Tensor:
        """Every example's loss under the current model, eval mode, un-augmented (n counted
        forwards)."""
        all_idx = torch.arange(ctx.n_train, device=ctx.device)
        chunks = [all_idx[s:s + RECOMPUTE_CHUNK] for s in range(0, ctx.n_train, RECOMPUTE_CHUNK)]
        return torch.cat([ctx.score(c, ctx.plain(c), mode="eval") for c in chunks]).float()

    def next_batch(self, ctx: StepContext) -> Batch:
        if self._order is None or self._p is None:
            raise RuntimeError("start_epoch must be called before next_batch")
        ranks = torch.multinomial(self._p, ctx.batch_size, replacement=True, generator=ctx.generator)
        return Batch(idx=self._order[ranks])

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
        def clone(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.detach().clone()
        return {"losses": clone(self._losses), "order": clone(self._order), "p": clone(self._p),
                "s_e": self._s_e, "recomputed": self._recomputed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._losses, self._order, self._p = state["losses"], state["order"], state["p"]
        self._s_e, self._recomputed = float(state["s_e"]), bool(state["recomputed"])
