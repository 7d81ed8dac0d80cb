"""Training an auxiliary model inside a run: RHO-LOSS's irreducible-loss (IL) model.

Why apart from the trainer's loop: it is a second, self-contained training (its own model,
optimizer, shuffling and augmentation streams) that a sampler asks for through
``StepContext.train_aux_model``; the trainer only hands it the data and the knobs.
"""
from __future__ import annotations

from typing import Any, Callable, ContextManager, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from . import network
from .data import DeviceData


def train_aux_model(spec: Mapping[str, Any], data: DeviceData, num_classes: int,
                    device: torch.device, autocast: Callable[[], ContextManager],
                    train_idx: Tensor, score_idx: Tensor, *, epochs: int, batch_size: int,
                    lr: float, weight_decay: float, generator: torch.Generator) -> Tensor:
    """Train a fresh model on ``train_idx``; return its per-example losses on ``score_idx``.

    The model is the run's architecture, width and speed knobs (:func:`benchmarks.network.build`),
    initialised, shuffled and augmented from two seeds drawn from ``generator`` (the
    sampler's stream, so the run stays deterministic and the training streams are
    untouched), trained with AdamW in train mode on augmented batches, then evaluated in
    eval mode on the un-augmented ``score_idx``. Reads the two seeds back to the host:
    once per run, not per step.
    """
    seeds = torch.randint(0, 2**62, (2,), generator=generator, device=generator.device).tolist()
    net, aux = network.build(spec, num_classes, device, seeds[0])
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator(device=device)
    gen.manual_seed(seeds[1])
    net.train()
    n = int(train_idx.shape[0])
    for _ in range(epochs):
        order = train_idx[torch.randperm(n, generator=gen, device=device)]
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            with autocast():
                out = aux(data.augment(idx, gen))
            loss = F.cross_entropy(out.float(), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    chunk = spec["eval_batch_size"]
    losses = []
    with torch.no_grad(), autocast():
        for s in range(0, int(score_idx.shape[0]), chunk):
            idx = score_idx[s:s + chunk]
            losses.append(F.cross_entropy(aux(data.plain(idx)).float(), data.y_train[idx],
                                          reduction="none"))
    if not losses:
        return torch.zeros(0, device=device)
    return torch.cat(losses)
