"""Per-example losses for samplers that score examples, safe to call inside a training loop.

Why a helper: a sampler that scores candidates (Selective Backprop, the loss oracle, IMPON's
diagnostics) runs extra forwards between optimiser steps. Written naively --
``F.cross_entropy(model(x), y, reduction="none")`` with the model in training mode -- each
of those forwards also updates every BatchNorm layer's running mean and variance, so the
statistics the model is later evaluated with drift with the number of *scoring* forwards
(Selective Backprop at beta 3 scores about four examples per one it trains on), and
gradients are tracked for nothing. The suite's own trainer avoids both
by scoring through :func:`score_fn` too, which gives a user's own loop the same behaviour.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["logits_fn", "model_device", "score_fn"]

from .base import SCORE_MODES


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); CPU for a model with neither."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _bn_buffers(model: nn.Module) -> list[Tensor]:
    return [b for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]


def logits_fn(model: nn.Module, mode: str = "train", chunk_size: int | None = None,
              autocast: Callable[[], ContextManager] | None = None) -> Callable[[Tensor], Tensor]:
    """The forward behind :func:`score_fn`: ``inputs -> float logits`` under ``model``,
    with the same guarantees (no gradient, ``mode``'s BatchNorm rule, train/eval state
    unchanged afterwards, chunks of ``chunk_size``, no host synchronisation).

    ``autocast`` (a zero-argument factory of a context manager, e.g. ``lambda:
    torch.autocast("cuda", dtype=torch.bfloat16)``) wraps the forward, so scoring runs in
    the precision the training forward runs in; the logits are returned as float32.
    """
    if mode not in SCORE_MODES:
        raise ValueError(f"score_fn: mode must be one of {', '.join(SCORE_MODES)}, got {mode!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"score_fn: chunk_size must be >= 1 or None, got {chunk_size}")
    buffers = _bn_buffers(model)
    context = autocast or contextlib.nullcontext

    def forward(inputs: Tensor) -> Tensor:
        inputs = inputs.to(model_device(model))
        was_training = model.training
        saved = [b.clone() for b in buffers] if mode == "train" else []
        step = chunk_size or max(1, int(inputs.shape[0]))
        try:
            model.train(mode != "eval")
            with torch.no_grad(), context():
                return torch.cat([model(inputs[i:i + step]).float()
                                  for i in range(0, int(inputs.shape[0]), step)])
        finally:
            model.train(was_training)
            for b, old in zip(buffers, saved):
                b.copy_(old)

    return forward


def score_fn(model: nn.Module, mode: str = "train", chunk_size: int | None = None,
             loss: Callable[..., Tensor] = F.cross_entropy,
             autocast: Callable[[], ContextManager] | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    """A ``StepContext.score_fn``: ``(inputs, labels) -> per-example losses`` under ``model``.

    - No gradient is tracked, and the model's train/eval state is the same afterwards.
    - ``mode="train"`` (default, what the suite's trainer does): the forward uses batch
      statistics, as the training forward that follows will see the examples, and every
      BatchNorm running mean/var/count is restored afterwards, so scoring never changes
      the model. ``mode="train_update"``: the same forward, keeping its BatchNorm update
      (RHO-LOSS's reference selection). ``mode="eval"``: the forward uses the running
      statistics (scores as the model would be evaluated; nothing to restore).
    - Inputs and labels are moved to the model's device (a no-op when already there), so
      the same code runs on CPU or GPU.
    - ``chunk_size`` bounds memory when large banks are scored (None: one forward).
    - ``loss`` is called as ``loss(logits, labels, reduction="none")``.
    - ``autocast``: see :func:`logits_fn`.

    No host synchronisation: buffers are saved and restored with device copies. The
    suite's trainer scores through this function too (``benchmarks/train.py``).
    """
    logits = logits_fn(model, mode, chunk_size, autocast)

    def score(inputs: Tensor, labels: Tensor) -> Tensor:
        out = logits(inputs)
        return loss(out, labels.to(out.device), reduction="none")

    return score
