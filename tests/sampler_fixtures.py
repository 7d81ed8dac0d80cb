"""A tiny, hand-checkable StepContext and a fake trainer loop for the sampler tests.

The toy data set is built so that every quantity a sampler sees is known by construction:
pixel ``[0, 0, 0]`` of example i holds its "true loss" ``losses[i]``; ``augment`` copies the
image and adds Gaussian noise (drawn from ``ctx.generator``, as any randomness must be) to
every *other* pixel, so each view is unique (it can be traced back) yet its loss is exact;
``score`` returns pixel ``[0, 0, 0]`` of the inputs, i.e. ``losses[idx]`` for any view, in
every mode (the score backends agree; ``Toy.modes``/``Toy.logit_modes`` record which ran).
The fake trainer follows the real trainer's contract (see ``samplers.base``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor

import samplers
from samplers import Batch, Sampler, StepContext


#: the fake auxiliary (IL) model's loss is this times the example's true loss
AUX_FACTOR = 0.25


@dataclass
class Toy:
    ctx: StepContext
    images: Tensor          # (n, 3, hw, hw) un-augmented, normalised
    losses: Tensor          # (n,) the true loss of each example
    scored: list = field(default_factory=list)   # (inputs, losses) of every score call
    modes: list = field(default_factory=list)    # score mode of every score call
    logit_modes: list = field(default_factory=list)  # mode of every score_logits call
    wnorm: list = field(default_factory=lambda: [2.0])  # mutable ||W||_F seen by the ctx
    aux_calls: list = field(default_factory=list)  # (train_idx, score_idx, kwargs) per call


def make_toy(n: int = 40, b: int = 4, *, num_classes: int = 4, hw: int = 4,
             device: str | torch.device = "cpu", seed: int = 0,
             losses: Optional[Tensor] = None,
             weight_norm_fn: Optional[Callable[[], Tensor]] = None,
             epochs: Optional[int] = 10) -> Toy:
    """Toy data set + StepContext. ``losses`` defaults to distinct values in (0, 2]."""
    device = torch.device(device)
    data_gen = torch.Generator().manual_seed(1234)
    images = torch.randn(n, 3, hw, hw, generator=data_gen)
    if losses is None:
        losses = (torch.randperm(n, generator=data_gen).float() + 1) * (2.0 / n)
    losses = losses.float()
    images[:, 0, 0, 0] = losses
    images, losses = images.to(device), losses.to(device)
    labels = (torch.arange(n) % num_classes).to(device)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)

    toy_ref: list[Toy] = []

    def augment(idx: Tensor) -> Tensor:
        x = images.index_select(0, idx)
        noise = torch.randn(x.shape, generator=generator, device=device)
        noise[:, 0, 0, 0] = 0.0
        return x + noise

    def scorer(mode: str) -> Callable[[Tensor, Tensor], Tensor]:
        def score(inputs: Tensor, labels_: Tensor) -> Tensor:
            out = inputs[:, 0, 0, 0].clone()
            toy_ref[0].scored.append((inputs.clone(), out.clone()))
            toy_ref[0].modes.append(mode)
            return out
        return score

    def logits(mode: str) -> Callable[[Tensor], Tensor]:
        def fn(inputs: Tensor) -> Tensor:
            toy_ref[0].logit_modes.append(mode)
            return _toy_logits(inputs, num_classes)
        return fn

    def train_aux(train_idx: Tensor, score_idx: Tensor, **kwargs) -> Tensor:
        """Fake auxiliary model: its loss on example i is ``AUX_FACTOR * losses[i]``; it
        draws once from the generator it is given, as a real one would."""
        torch.randint(0, 10, (1,), generator=kwargs["generator"], device=device)
        toy_ref[0].aux_calls.append((train_idx.clone(), score_idx.clone(), kwargs))
        return AUX_FACTOR * losses[score_idx]

    def wnorm() -> Tensor:
        return torch.tensor(toy_ref[0].wnorm[0], device=device)

    ctx = StepContext(n_train=n, batch_size=b, device=device, generator=generator,
                      labels=labels, num_classes=num_classes,
                      weight_norm_fn=weight_norm_fn or wnorm, augment_fn=augment,
                      score_fn=scorer("train"), score_eval_fn=scorer("eval"),
                      score_update_fn=scorer("train_update"),
                      images_fn=lambda: images, epochs=epochs,
                      score_logits_fn=logits("train"), score_logits_eval_fn=logits("eval"),
                      train_aux_fn=train_aux)
    toy = Toy(ctx=ctx, images=images, losses=losses)
    toy_ref.append(toy)
    return toy


def _toy_logits(inputs: Tensor, num_classes: int) -> Tensor:
    """Toy logits: channel-0 pixels 1..num_classes (row-major) of the view, so a test can
    recompute them from the view it was given."""
    return inputs[:, 0].reshape(inputs.shape[0], -1)[:, 1:1 + num_classes].clone()


def reseed(ctx: StepContext, seed: int, epoch: int) -> None:
    """What the trainer does before every ``start_epoch``: generator from (seed, epoch)."""
    ctx.generator.manual_seed(seed * 100_003 + epoch)


def train_step(sampler: Sampler, toy: Toy) -> Batch:
    """One step of the trainer contract; the training loss of a view is its true loss."""
    ctx = toy.ctx
    batch = sampler.next_batch(ctx)
    inputs = batch.inputs if batch.inputs is not None else ctx.augment(batch.idx)
    losses = inputs[:, 0, 0, 0].float()
    p_true = torch.exp(-losses)
    sampler.observe(batch.idx, losses, p_true)
    if sampler.wants_logits:   # the training forward's logits (toy: read off the view)
        sampler.observe_logits(batch.idx, _toy_logits(inputs, ctx.num_classes).float())
    return batch


def run(sampler: Sampler, toy: Toy, *, seed: int, epochs: int, steps: Optional[int] = None,
        first_epoch: int = 1) -> list[Batch]:
    """Train ``epochs`` epochs (``steps`` steps each, default the sampler's
    ``epoch_steps`` of n // b), like the trainer."""
    ctx = toy.ctx
    batches = []
    for epoch in range(first_epoch, first_epoch + epochs):
        reseed(ctx, seed, epoch)
        sampler.start_epoch(epoch, ctx)
        n_steps = (sampler.epoch_steps(epoch, ctx, ctx.n_train // ctx.batch_size)
                   if steps is None else steps)
        for _ in range(n_steps):
            batches.append(train_step(sampler, toy))
    return batches


def build(name: str, **params) -> Sampler:
    return samplers.build(name, **params)
