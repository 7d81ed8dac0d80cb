"""Drive any sampler from a standard ``torch.utils.data.DataLoader`` loop.

Why: most training code (timm scripts, Lightning modules, course notebooks) iterates a
``DataLoader`` and owns its dataset, transforms and workers. To try a sampler there, only
two things change: the loader gets a ``batch_sampler`` that asks the sampler which indices
form each batch, and the loop makes one ``observe`` call after computing the loss. The
dataset is wrapped so each batch also carries the indices it was built from::

    batches = samplers.batch_sampler(sampler, ctx)
    loader = DataLoader(samplers.WithIndex(train_set), batch_sampler=batches, num_workers=2)
    for epoch in range(epochs):
        for x, y, idx in loader:
            losses = F.cross_entropy(model(x.to(dev)), y.to(dev), reduction="none")
            ...backward, step...
            batches.observe(idx, losses)

What differs from the suite's own loop (``benchmarks/train.py``), and why:

- The indices must reach the host for the loader to fetch examples, so each batch costs
  one device->host copy of its b indices (the suite's loop never syncs per step).
- The loader augments the examples itself, so a sampler's pre-scored views
  (``Batch.inputs``, set by Selective Backprop) are not used: the model trains on a fresh
  view of the same examples.
- With ``num_workers > 0`` the loader asks for a few batches ahead
  (``prefetch_factor * num_workers``), so a batch may be chosen before the last few
  ``observe`` calls: the sampler sees losses a few steps late. ``num_workers=0`` keeps
  choice and observation in lockstep.
- Samplers that return per-example ``weights`` cannot pass them through a loader; the
  adapter refuses them instead of silently training unweighted (no built-in sampler
  returns weights).
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.data import Sampler as TorchSampler

from .base import Sampler, StepContext

__all__ = ["SamplerBatches", "WithIndex", "batch_sampler"]


class WithIndex(Dataset):
    """``dataset[i] + (i,)``: each example carries its index, so a batch carries its indices."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple:
        item = self.dataset[i]
        return (*item, i) if isinstance(item, tuple) else (item, i)


class SamplerBatches(TorchSampler):
    """A ``DataLoader`` ``batch_sampler`` whose batches a :class:`~samplers.base.Sampler` picks.

    Each pass over it (``for ... in loader``) is one epoch of ``steps_per_epoch`` batches
    (default ``ctx.n_train // ctx.batch_size``, as in the suite) and starts with
    ``sampler.start_epoch``; epochs count from ``start_epoch`` (1 unless resuming), or set
    one explicitly with :meth:`set_epoch`.
    """

    def __init__(self, sampler: Sampler, ctx: StepContext, steps_per_epoch: Optional[int] = None,
                 start_epoch: int = 1) -> None:
        steps = ctx.n_train // ctx.batch_size if steps_per_epoch is None else int(steps_per_epoch)
        if steps < 1:
            raise ValueError(f"steps_per_epoch must be >= 1 (n_train {ctx.n_train}, "
                             f"batch_size {ctx.batch_size}); lower the batch size")
        self.sampler = sampler
        self.ctx = ctx
        self.steps_per_epoch = steps
        self.epoch = int(start_epoch)

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next pass runs (like ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self.epoch += 1
        self.sampler.start_epoch(epoch, self.ctx)
        for _ in range(self.steps_per_epoch):
            batch = self.sampler.next_batch(self.ctx)
            if batch.weights is not None:
                raise ValueError(f"sampler {self.sampler.name!r} returns per-example weights, which a "
                                 "DataLoader cannot carry; use it in a loop of your own (docs/own-loop.md)")
            yield batch.idx.tolist()   # the loader needs host indices: one copy per batch

    def observe(self, idx: Tensor, losses: Tensor, p_true: Optional[Tensor] = None) -> None:
        """Report the batch's per-example training losses to the sampler (once per step).

        ``idx``: the indices the batch carried (``WithIndex``), any device; ``losses``: the
        per-example losses you trained on (detached here); ``p_true``: the true-class
        probabilities, default ``exp(-losses)`` (exact for cross-entropy).
        """
        dev = self.ctx.device
        losses = losses.detach().to(dev)
        p = torch.exp(-losses) if p_true is None else p_true.detach().to(dev)
        self.sampler.observe(torch.as_tensor(idx, dtype=torch.int64).to(dev), losses, p)


def batch_sampler(sampler: Sampler, ctx: StepContext, steps_per_epoch: Optional[int] = None,
                  start_epoch: int = 1) -> SamplerBatches:
    """``DataLoader(..., batch_sampler=batch_sampler(sampler, ctx))``; see :class:`SamplerBatches`."""
    return SamplerBatches(sampler, ctx, steps_per_epoch, start_epoch)
