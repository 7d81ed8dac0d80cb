"""Timing entries: what one timed configuration is and how a block of its steps is timed
(see ``benchmarks.perf`` for why blocks are interleaved and compared within a round)."""
from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch


from .. import provenance
from ..train import Trainer

MIB = 2 ** 20


# ----------------------------------------------------------------------------- memory
def _rss_bytes() -> int:
    """Current resident set size of this process (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _max_rss_bytes() -> int:
    """Peak RSS of this process so far (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class Device:
    """The device plus the two things timing needs from it: a barrier and a memory gauge."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def allocated(self) -> int:
        """Bytes held now: CUDA tensors on CUDA, process RSS on CPU."""
        return torch.cuda.memory_allocated(self.device) if self.cuda else _rss_bytes()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        """CUDA: max allocated since the last reset; CPU: the process's max RSS ever."""
        return torch.cuda.max_memory_allocated(self.device) if self.cuda else _max_rss_bytes()

    def name(self) -> str:
        return provenance.device_name(self.device)


# ----------------------------------------------------------------------------- entries
@dataclass
class Entry:
    """One timed configuration (a sampler's Trainer, or the conventional pipeline)."""

    label: str
    batch_size: int
    steps_per_epoch: int
    step_s: list[float] = field(default_factory=list)    # per round, incl. amortised epoch start
    start_s: list[float] = field(default_factory=list)   # per round, begin_epoch seconds
    selection_s: list[float] = field(default_factory=list)  # per round, sampler's own s/step
    forwards: int = 0            # examples forwarded in timed steps
    timed_steps: int = 0
    resident: int = 0            # bytes this entry holds (see module docstring)
    transient: int = 0           # largest per-block peak above the block's start (CUDA)
    process_peak: int = 0        # CPU: process max RSS after this entry's last block
    last_loss: Optional[torch.Tensor] = None

    # -- what subclasses provide
    def begin(self, epoch: int) -> None:
        """Per-epoch work that a real run would do before its steps."""

    def step(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def forwards_so_far(self) -> int:
        return self.timed_steps * self.batch_size

    def before_block(self) -> None:
        """Untimed preparation right before a timed block."""

    def after_block(self) -> None:
        """Untimed clean-up right after a timed block."""

    def selection_timing(self, on: bool) -> Optional[float]:
        """Start (``on``) or stop timing the sampler's own calls; stopping (after a device
        sync) returns their seconds since the start, or None where there is no sampler."""
        return None

    # -- shared
    def warm_up(self, dev: Device, steps: int, before: int) -> None:
        """``begin_epoch`` + ``steps`` untimed steps, then record this entry's resident bytes
        (``before``: the gauge's reading before the entry was built)."""
        self.begin(1)
        for _ in range(steps):
            self.step()
        dev.sync()
        self.resident = max(0, dev.allocated() - before)

    def timed_block(self, dev: Device, epoch: int, steps: int) -> None:
        self.before_block()
        dev.reset_peak()
        base = dev.allocated()
        f0 = self.forwards_so_far()
        dev.sync()
        t0 = time.perf_counter()
        self.begin(epoch)
        dev.sync()
        t1 = time.perf_counter()
        self.selection_timing(True)
        for _ in range(steps):
            self.step()
        dev.sync()
        t2 = time.perf_counter()
        selection = self.selection_timing(False)
        self.timed_steps += steps
        self.forwards += self.forwards_so_far() - f0
        self.start_s.append(t1 - t0)
        self.step_s.append((t2 - t1) / steps + (t1 - t0) / self.steps_per_epoch)
        if selection is not None:
            self.selection_s.append(selection / steps + (t1 - t0) / self.steps_per_epoch)
        if dev.cuda:
            self.transient = max(self.transient, dev.peak() - base)
        else:
            self.process_peak = dev.peak()
        self.after_block()

    def peak_bytes(self, dev: Device) -> int:
        return self.resident + self.transient if dev.cuda else self.process_peak


class SamplerEntry(Entry):
    """A sampler's suite step: ``Trainer.begin_epoch`` then ``Trainer.train_step``.

    The sampler's own calls inside the step (``next_batch``, ``observe``) are also timed,
    by wrapping them on this sampler instance: host time on CPU, CUDA events on the stream
    on CUDA (no sync; read after the block's closing sync). Why: the step-time ratio is a
    difference of two noisy block times, while this measures what selection itself adds
    (selection forwards included), which is what the ratio should show once noise averages
    out -- the check that tells "slow sampler" from "noisy machine".
    """

    def __init__(self, label: str, trainer: Trainer) -> None:
        super().__init__(label, trainer.spec["batch_size"], trainer.steps_per_epoch)
        self.trainer = trainer
        self.lr = float(trainer.spec["optimizer"]["lr"])
        self._cuda = trainer.device.type == "cuda"
        self._timing = False
        self._host_s = 0.0
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        for name in ("next_batch", "observe"):
            setattr(trainer.sampler, name, self._timed(getattr(trainer.sampler, name)))

    def _timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not self._timing:
                return fn(*args, **kwargs)
            if self._cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = fn(*args, **kwargs)
                end.record()
                self._events.append((start, end))
                return out
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            self._host_s += time.perf_counter() - t0
            return out
        return wrapper

    def selection_timing(self, on: bool) -> Optional[float]:
        if on:
            self._timing, self._host_s, self._events = True, 0.0, []
            return None
        self._timing = False
        if self._cuda:
            return sum(a.elapsed_time(b) for a, b in self._events) / 1e3
        return self._host_s

    def begin(self, epoch: int) -> None:
        self.trainer.begin_epoch(epoch)

    def step(self) -> None:
        self.last_loss = self.trainer.train_step(self.lr)

    def forwards_so_far(self) -> int:
        # Training forwards + selection forwards (scoring), as the suite counts them.
        return self.trainer.counters.forwards + self.trainer.ctx.forwards



MODEL = "model"
#: uniform with host-resident images (``--data-placement host``; benchmarks/placement.py)
HOST = "uniform (host-resident data)"


class ModelEntry(Entry):
    """The pure model step: forward, per-example loss, backward and optimiser step on one
    pre-made batch already on the device, with a uniform Trainer's own model, optimiser
    and knobs (autocast, channels_last, compile) -- no sampler, no indexing, no
    augmentation, no bookkeeping. Its time over a sampler's step time is that sampler's
    *loop efficiency*: the fraction of the step spent on the model itself.

    Why the uniform Trainer's model: the same module object (compiled once), the same
    optimiser implementation, so the only difference to the suite's step is what the suite
    adds around it. The uniform entry's parameters move a little more in the process; the
    cost of a step does not depend on the weights' values.
    """

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(MODEL, trainer.spec["batch_size"], trainer.steps_per_epoch)
        self.trainer = trainer
        trainer.begin_epoch(1)
        idx = trainer.sampler.next_batch(trainer.ctx).idx
        self.inputs = trainer._augment(idx).clone()  # pre-made, on the device
        self.labels = trainer.data.y_train[idx].clone()

    def step(self) -> None:
        t = self.trainer
        with t._autocast():
            logits = t.model(self.inputs)
        losses = torch.nn.functional.cross_entropy(logits.float(), self.labels, reduction="none")
        t.optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        t.optimizer.step()
        self.last_loss = losses.detach().mean()
