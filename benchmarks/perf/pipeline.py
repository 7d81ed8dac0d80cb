"""The conventional pipeline: a torchvision Dataset + DataLoader feeding the same model
(what our on-device data path is compared with)."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

import models

from ..config import RunSpec
from ..data import load_splits
from ..optim import build_optimizer
from ..train import derive_seed

from .timing import Entry

CONVENTIONAL = "conventional"
PREFETCH_FACTOR = 2  # DataLoader's default, named here because the drain/settle use it


class _PILDataset(torch.utils.data.Dataset):
    """The usual CIFAR ``Dataset``: one PIL image per example through torchvision transforms.

    Module level (not a closure) so DataLoader workers can receive it under any start method.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: Any) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


class ConventionalEntry(Entry):
    """torchvision Dataset + DataLoader + transforms feeding the same model/optimizer/loss.

    Two untimed steps keep its DataLoader workers from distorting the comparison:
    ``before_block`` drains the batches the workers prefetched while other entries were
    being timed (otherwise up to ``workers * prefetch_factor`` batches would arrive free in
    the block; after draining, the workers produce every timed batch during the block, as
    in a steady state where loading is the bottleneck), and ``after_block`` waits while the
    workers refill their prefetch queue, so that work does not land in the next entry's
    timed block on a machine where workers and training share CPU cores. The drain makes
    the block wait for its first batch, a bias *against* this pipeline of at most one
    batch's loading time per block.
    """

    def __init__(self, spec: RunSpec, data_root: Path, device: torch.device, workers: int) -> None:
        from torchvision import transforms as T

        train, _, info = load_splits(spec["dataset"], data_root, False, spec["subset"])
        b = spec["batch_size"]
        super().__init__(CONVENTIONAL, b, info.n_train // b)
        self.device, self.cuda, self.workers = device, device.type == "cuda", workers
        flip = spec["augment"]["flip"]
        flip = info.flip if flip == "auto" else bool(flip)
        size = (int(train.x.shape[1]), int(train.x.shape[2]))
        tf = [T.RandomCrop(size, padding=spec["augment"]["crop_padding"])]
        tf += [T.RandomHorizontalFlip()] if flip else []
        tf += [T.ToTensor(), T.Normalize(info.mean, info.std)]
        self.dataset = _PILDataset(train.x, train.y, T.Compose(tf))
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=b, shuffle=True, num_workers=workers,
            pin_memory=self.cuda, persistent_workers=workers > 0, drop_last=True,
            prefetch_factor=PREFETCH_FACTOR if workers > 0 else None,
            generator=torch.Generator().manual_seed(derive_seed(spec["seed"], 0, "conventional")))
        with torch.random.fork_rng(devices=[]):  # the Trainer's init, global RNG untouched
            torch.manual_seed(derive_seed(spec["seed"], 0, "init"))
            net = models.build(spec["model"]["name"], info.num_classes,
                               **{k: v for k, v in spec["model"].items() if k != "name"})
        self.channels_last = spec["channels_last"]
        net = net.to(device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net.train()
        self.model = torch.compile(net) if spec["compile"] else net
        self.amp = spec["amp"] == "bf16"
        self.optimizer = build_optimizer(net.parameters(), spec["optimizer"])
        self._it: Optional[Iterator] = None
        self.batch_build_s = self._time_one_batch()

    def _time_one_batch(self) -> float:
        """Seconds to build one batch in this process (sizes the post-block settle)."""
        collate = torch.utils.data.default_collate
        times = []
        with torch.random.fork_rng(devices=[]):  # the transforms draw from the global RNG
            for r in range(2):
                t0 = time.perf_counter()
                collate([self.dataset[(r * self.batch_size + i) % len(self.dataset)]
                         for i in range(self.batch_size)])
                times.append(time.perf_counter() - t0)
        return min(times)

    def _next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._it is None:
            self._it = iter(self.loader)
        try:
            return next(self._it)
        except StopIteration:  # an epoch ended: the next one (a real run pays this too)
            self._it = iter(self.loader)
            return next(self._it)

    def step(self) -> None:
        x, y = self._next()
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(self.device, non_blocking=True)
        ctx = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()
        with ctx:
            logits = self.model(x)
        losses = F.cross_entropy(logits.float(), y, reduction="none")
        self.optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        self.optimizer.step()
        self.last_loss = losses.detach().mean()

    def before_block(self) -> None:
        for _ in range(self.workers * PREFETCH_FACTOR):
            self._next()

    def after_block(self) -> None:
        if self.workers:
            # Each worker refills PREFETCH_FACTOR batches in parallel; 2x margin for noise.
            time.sleep(2 * PREFETCH_FACTOR * self.batch_build_s)

    def close(self) -> None:
        """Stop persistent workers now rather than at interpreter exit."""
        it, self._it = self._it, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

