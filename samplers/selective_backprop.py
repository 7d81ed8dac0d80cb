"""Selective Backprop (Jiang et al. 2019): back-propagate mostly the high-loss examples.

Candidates stream from successive random permutations of the training set, in chunks of
b (the last chunk of a permutation may be shorter, so every example is a candidate once
per pass). Each chunk is augmented, scored with a counted no-grad forward
(``ctx.score``), and its losses are pushed into a FIFO of the last ``history`` losses.
Then each candidate is kept independently with probability ``(pct_i / 100) ** beta``,
where ``pct_i`` is the percentage of the FIFO's losses (this chunk's included, as in the
reference implementation, which appends before ranking) strictly below ``loss_i``.
Kept examples queue up, index *and* the exact augmented view that was scored; when b are
queued, the first b form the batch (``Batch.inputs`` holds their views) and the rest wait
for the next step, across epoch boundaries too, as does the candidate stream and FIFO.

Reference settings (the authors' code, github.com/angelajiang/SelectiveBackprop, also
vendored as ``SelectiveBackprop/lib`` in EricArazo/ImportanceSampling; the defaults here):

- ``prime_epochs: 1``. ``lib/SelectiveBackpropper.py`` sets ``num_images_to_prime`` to the
  training-set size and ``lib/selectors.py`` (``PrimedSelector``) uses the
  ``BaselineSelector`` until that many images went by: for one full epoch every candidate
  is kept, and since ``BaselineSelector.mark`` never calls the probability calculator,
  the loss history is *not* updated while priming (``lib/calculators.py``,
  ``BatchedRelativeProbabilityCalculator.get_probability`` is where losses are appended).
  The reference still runs the scoring forward while priming (``MemoizedTrainer
  .train_batch`` in ``lib/trainer.py`` forwards every batch before the selector marks it),
  so ours scores too and counts those forwards: the cost columns match the reference.
  The FIFO is therefore empty when selection starts; the first chunk after priming is
  ranked among itself (it is appended before ranking, as in the reference).
- ``score_mode: eval``. ``lib/forwardproppers.py`` (``CutoutForwardpropper.forward_pass``)
  calls ``net.eval()`` before the no-grad scoring forward: BatchNorm uses its running
  statistics and does not update them. ``score_mode: train`` is our variant: a no-grad
  forward with batch statistics (as the training forward sees them), BatchNorm running
  statistics restored afterwards (the suite's ``ctx.score`` default).
- ``beta: 3`` (``--SB_sensitivity`` default in EricArazo/ImportanceSampling ``train.py``,
  passed as ``prob_pow``), ``history: 1024`` (``max_history_len`` in
  ``lib/SelectiveBackpropper.py``).

Pacing (ours, not the reference's): the suite's epoch is ``n // b`` optimiser steps with
the learning rate indexed by step, and a partial queue of kept candidates carries over to
the next step. The reference's epoch is one pass of candidates (about ``n / (beta + 1)``
backprops), Arazo et al.'s ``train.py`` indexes its learning rate by examples forwarded
(``forwardlr=True``), and it backprops the partial batch at the end of each pass. So the
selection rule is the authors'; the amount of training per epoch and the schedule are not.

Synchronisation: one of two samplers exempt from the no-sync rule (with upper-bound IS).
How many chunks must be scored to fill a batch depends on the random keep decisions, so
the host has to learn how many were kept. It costs exactly one small sync per scored chunk (the
``nonzero`` of the keep mask); nothing else here reads device values on the host.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from .base import Batch, Cost, HostSyncs, Sampler, StepContext
from .registry import register
from .traits import ArmStyle, DiagnosticColumn, DiagnosticFigure, PlotTraits


def fraction_below(losses: Tensor, history: Tensor) -> Tensor:
    """For each loss, the fraction of ``history`` strictly below it (pct_i / 100)."""
    below = (history[None, :] < losses[:, None]).sum(dim=1)
    return below.to(torch.float32) / history.shape[0]


def keep_probability(losses: Tensor, history: Tensor, beta: float) -> Tensor:
    """``(pct_i / 100) ** beta`` with pct_i the percentage of ``history`` below ``loss_i``."""
    return fraction_below(losses, history) ** beta


@register("selective_backprop")
class SelectiveBackprop(Sampler):
    """``beta``: selectivity (0 keeps every candidate, larger keeps fewer: the expected
    keep rate is about 1 / (beta + 1)); ``history``: FIFO length for the percentiles;
    ``prime_epochs``: leading epochs that keep every candidate without updating the
    FIFO; ``score_mode``: ``eval`` (reference) or ``train`` (ours, see the module
    docstring). Epoch metrics: ``sb_keep_rate`` (kept / scored) and ``sb_scored``
    (candidates scored in the epoch)."""

    # one ``nonzero`` of the keep mask per scored chunk (see the module docstring); no
    # priming in the sync test, so epoch 1 already selects and the counted sync runs
    host_syncs = HostSyncs(per_score_call={"nonzero": 1}, test_params={"prime_epochs": 0})
    test_variants = {"prime": {"prime_epochs": 1},
                     "train-noprime": {"prime_epochs": 0, "score_mode": "train"}}
    # green; beta 0 (keeps every candidate: a control) pale green
    plot = PlotTraits(
        colour="#029E73", report_rank=1,
        arms={"selective_backprop": ArmStyle("#029E73", 70),
              "selective_backprop_beta0": ArmStyle("#9ACD8A", 80)},
        diagnostics=(DiagnosticFigure(
            "selective_backprop", "Selective Backprop keep rate", "Selective Backprop keep rate",
            "no selective_backprop run",
            (DiagnosticColumn("sb_keep_rate", "keep rate (kept / scored)", "1 / (sampler.beta + 1)",
                              "1/(β+1): expected if the loss percentiles were uniform",
                              "1/(β+1)\n= {y:.3g}"),)),))

    @classmethod
    def test_params(cls, n_train: int, batch_size: int) -> dict[str, Any]:
        return {"history": 4 * batch_size}

    def cost(self, *, n_train: int, batch_size: int, epochs: int) -> Cost:
        # E[keep] = 1/(beta+1) for uniform percentiles, so (beta+1)*b candidates are scored
        # per step; priming epochs keep all (b scored per step)
        primed = min(self.prime_epochs, epochs)
        scored = ((self.beta + 1) * (epochs - primed) + primed) / epochs * batch_size
        return Cost(forwards_per_step=scored)

    def __init__(self, beta: float = 3, history: int = 1024, prime_epochs: int = 1,
                 score_mode: str = "eval") -> None:
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (0 <= beta < float("inf")):
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"history must be an integer >= 1, got {history!r}")
        if isinstance(prime_epochs, bool) or not isinstance(prime_epochs, int) or prime_epochs < 0:
            raise ValueError(f"prime_epochs must be an integer >= 0, got {prime_epochs!r}")
        if score_mode not in ("train", "eval"):
            raise ValueError(f"score_mode must be 'train' or 'eval', got {score_mode!r}")
        self.score_mode = score_mode
        self.beta = float(beta)
        self.history = history
        self.prime_epochs = prime_epochs

        self._epoch = 0
        self._perm: Optional[Tensor] = None     # current candidate permutation
        self._pos = 0                           # next unread position in it
        self._fifo: Optional[Tensor] = None     # ring buffer of the last `history` losses
        self._fifo_len = 0                      # how many slots hold a loss
        self._fifo_next = 0                     # slot the next loss goes to
        self._queue_idx: Optional[Tensor] = None     # kept, not yet trained on
        self._queue_inputs: Optional[Tensor] = None  # their scored views
        self._scored = 0                        # this epoch (host ints: known after sync)
        self._kept = 0

    # -- Sampler interface --------------------------------------------------------------
    def start_epoch(self, epoch: int, ctx: StepContext) -> None:
        self._epoch = epoch
        self._scored = self._kept = 0
        if self._fifo is None:
            self._fifo = torch.zeros(self.history, dtype=torch.float32, device=ctx.device)

    def next_batch(self, ctx: StepContext) -> Batch:
        if self._fifo is None:
            raise RuntimeError("start_epoch must be called before next_batch")
        b = ctx.batch_size
        while self._queued() < b:
            self._score_chunk(ctx, b)
        assert self._queue_idx is not None and self._queue_inputs is not None
        idx, inputs = self._queue_idx[:b], self._queue_inputs[:b]
        self._queue_idx, self._queue_inputs = self._queue_idx[b:], self._queue_inputs[b:]
        return Batch(idx=idx, inputs=inputs)

    def epoch_metrics(self) -> dict[str, float]:
        rate = self._kept / self._scored if self._scored else float("nan")
        return {"sb_keep_rate": rate, "sb_scored": float(self._scored)}

    def history_losses(self) -> Tensor:
        """The FIFO's losses, oldest first (for inspection and tests)."""
        assert self._fifo is not None
        if self._fifo_len < self.history:
            return self._fifo[:self._fifo_len].clone()
        return torch.cat([self._fifo[self._fifo_next:], self._fifo[:self._fifo_next]])

    # -- internals ------------------------------------------------------------------------
    def _queued(self) -> int:
        return 0 if self._queue_idx is None else int(self._queue_idx.shape[0])

    def _next_candidates(self, ctx: StepContext, b: int) -> Tensor:
        if self._perm is None or self._pos >= self._perm.shape[0]:
            self._perm = torch.randperm(ctx.n_train, generator=ctx.generator, device=ctx.device)
            self._pos = 0
        chunk = self._perm[self._pos:self._pos + b]
        self._pos += int(chunk.shape[0])
        return chunk

    def _push(self, losses: Tensor) -> None:
        """Append to the FIFO ring buffer (host-known positions: no sync)."""
        assert self._fifo is not None
        losses = losses.to(self._fifo.dtype)[-self.history:]
        k, start = int(losses.shape[0]), self._fifo_next
        first = min(k, self.history - start)
        self._fifo[start:start + first] = losses[:first]
        self._fifo[:k - first] = losses[first:]
        self._fifo_next = (start + k) % self.history
        self._fifo_len = min(self.history, self._fifo_len + k)

    def _score_chunk(self, ctx: StepContext, b: int) -> None:
        idx = self._next_candidates(ctx, b)
        inputs = ctx.augment(idx)
        losses = ctx.score(idx, inputs, mode=self.score_mode)
        assert self._fifo is not None
        if self._epoch <= self.prime_epochs:  # priming: keep all, history untouched
            keep_pos = torch.arange(idx.shape[0], device=idx.device)
        else:
            self._push(losses)
            prob = keep_probability(losses, self._fifo[:self._fifo_len], self.beta)
            draw = torch.rand(prob.shape, generator=ctx.generator, device=prob.device)
            keep_pos = torch.nonzero(draw < prob).squeeze(1)  # the one sync per chunk
        n_keep = int(keep_pos.shape[0])
        self._scored += int(idx.shape[0])
        self._kept += n_keep
        if n_keep == 0:
            return
        kept_idx, kept_inputs = idx[keep_pos], inputs[keep_pos]
        if self._queue_idx is None or self._queue_inputs is None:
            self._queue_idx, self._queue_inputs = kept_idx, kept_inputs
        else:
            self._queue_idx = torch.cat([self._queue_idx, kept_idx])
            self._queue_inputs = torch.cat([self._queue_inputs, kept_inputs])

    # -- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        def clone(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.detach().clone()
        return {"epoch": self._epoch, "perm": clone(self._perm), "pos": self._pos,
                "fifo": clone(self._fifo), "fifo_len": self._fifo_len,
                "fifo_next": self._fifo_next, "queue_idx": clone(self._queue_idx),
                "queue_inputs": clone(self._queue_inputs), "scored": self._scored,
                "kept": self._kept}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._epoch = int(state["epoch"])
        self._perm, self._pos = state["perm"], int(state["pos"])
        self._fifo = state["fifo"]
        self._fifo_len, self._fifo_next = int(state["fifo_len"]), int(state["fifo_next"])
        self._queue_idx, self._queue_inputs = state["queue_idx"], state["queue_inputs"]
        self._scored, self._kept = int(state["scored"]), int(state["kept"])
