"""``make perf``: images/s of the suite's training step with every sampler, as ratios.

    python -m benchmarks.perf [--device auto|cpu|cuda] [--width 1.0] [--batch-size 128]
        [--n-train 50000] [--steps 20] [--rounds 3] [--warmup W]
        [--data-root DIR --dataset NAME] [--amp off|bf16]
        [--channels-last/--no-channels-last] [--compile] [--samplers uniform,impon,...]
        [--bank-size 200] [--conventional/--no-conventional] [--workers N] [--seed 0]
        [--json PATH]

What is timed. For each sampler a real :class:`benchmarks.train.Trainer` (same model,
batch, SGD, data and knobs for all of them) runs ``begin_epoch`` and then ``steps``
consecutive ``train_step`` calls -- exactly the suite's step, selection forwards included.
A sampler's step time is the block's time per step plus its ``begin_epoch`` time spread
over an epoch of ``n_train // batch`` steps (p-SGD/c-SGD draw the whole epoch there, so
leaving it out would flatter them). The *conventional pipeline* is what a typical CIFAR
script does: a ``Dataset`` handing out PIL images through torchvision transforms
(RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize with the same
mean/std), a ``DataLoader`` with worker processes, the same ResNet-18, SGD and per-example
loss. Its ratio to our uniform step says what the on-device data path is worth.

Why ratios, interleaved, in one process: on a shared machine (or a GPU with neighbours)
absolute speeds drift by tens of percent within minutes. Every round visits every entry
once, in an order rotated from round to round (and shuffled, so no entry always follows
the same one), each entry timing one block of ``steps``
steps (the device synchronised before and after each block on CUDA); ratios are taken
*within* a round, so slow phases of the machine hit numerator and denominator alike, and
the median over rounds discards the rounds a burst of load landed in. Warm-up steps (lazy
allocations, IMPON's feature cache, cuDNN/compile first calls, DataLoader worker start)
run before any timing.

Memory. On CUDA each row's *peak* is what one run of that sampler would hold: its own
resident state (data, model, optimiser, sampler; ``memory_allocated`` growth while it was
built and warmed up) plus the largest transient of its timed blocks
(``max_memory_allocated`` above the block's starting level, reset before every block). On
CPU the peak is the process's max RSS (``getrusage``), which is process-wide (every
trainer lives in this process) and excludes DataLoader workers; the *own resident* column
(RSS growth while the entry was built and warmed up) is the per-sampler figure there.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import models

from . import estimate, provenance
from .config import RunSpec
from .data import load_splits, write_npz_atomic
from .errors import UserError
from .optim import build_optimizer
from .train import Trainer, derive_seed, resolve_device

#: The suite's samplers as the paper matrix runs them (registry defaults: IMPON lr 1e-6 on
#: pixel features reset every epoch, Selective Backprop beta 3 / history 1024, p/c-SGD with
#: replacement); banked ones get ``--bank-size``.
SAMPLERS: dict[str, dict[str, Any]] = {
    "uniform": {"name": "uniform"},
    "impon": {"name": "impon", "select": "highest"},
    "impon_low": {"name": "impon", "select": "lowest"},
    "p_sgd": {"name": "p_sgd"},
    "c_sgd": {"name": "c_sgd"},
    "selective_backprop": {"name": "selective_backprop"},
    "loss_oracle": {"name": "loss_oracle"},
}
BANKED = ("impon", "impon_low", "loss_oracle")
#: Samplers held to "step time <= TARGET_RATIO x uniform" (DESIGN: selection must be cheap).
TARGETED = ("impon", "impon_low", "p_sgd", "c_sgd")
TARGET_RATIO = 1.05
CONVENTIONAL = "conventional"
SYNTHETIC = "synthetic"
PREFETCH_FACTOR = 2  # DataLoader's default, named here because the drain/settle use it
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
        self.channels_last = self.cuda and spec["channels_last"]
        net = net.to(device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net.train()
        self.model = torch.compile(net) if (self.cuda and spec["compile"]) else net
        self.amp = self.cuda and spec["amp"] == "bf16"
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
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()
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


# ----------------------------------------------------------------------------- set-up
def make_spec(label: str, args: argparse.Namespace, dataset: str,
              subset: Optional[dict]) -> RunSpec:
    """The RunSpec of sampler ``label``: identical for every sampler except ``sampler``."""
    sampler = dict(SAMPLERS[label])
    if label in BANKED:
        sampler["bank_size"] = args.bank_size
    return RunSpec.from_dict({
        "matrix": "perf", "arm": label, "dataset": dataset, "subset": subset,
        "seed": args.seed, "epochs": 1, "batch_size": args.batch_size,
        "model": {"name": "resnet18", "width": args.width},
        "optimizer": {"name": "sgd"}, "schedule": {"name": "constant"}, "sampler": sampler,
        "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile})


def write_synthetic(root: Path, n_train: int, n_test: int, num_classes: int, seed: int) -> None:
    """A prepared dataset of random uint8 images (speed does not depend on pixel content).

    Its own numpy Generator, so the global RNGs are untouched; the first labels cover every
    class so ``num_classes`` is what the loader infers.
    """
    rng = np.random.default_rng(seed)
    folder = root / SYNTHETIC
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, num_classes, size=n, dtype=np.int64)
        y[:min(n, num_classes)] = np.arange(min(n, num_classes))
        write_npz_atomic(folder / f"{split}.npz", x, y)


def _log(msg: str) -> None:
    print(f"[perf] {msg}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.perf",
                                 description="images/s of a ResNet-18 training step per sampler, "
                                             "as ratios to uniform and to a conventional pipeline")
    ap.add_argument("--device", default=os.environ.get("DEVICE", "auto"),
                    help="auto (cuda if available), cpu, cuda or cuda:N")
    ap.add_argument("--width", type=float, default=1.0, help="ResNet-18 width multiplier")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--n-train", type=int, default=None,
                    help="training examples: size of the synthetic set (default 50000), or a "
                         "stratified subset of --dataset (default: all of it)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per entry per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median over rounds)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps per entry first (default 3, 10 with --compile)")
    ap.add_argument("--data-root", default=None, help="data root holding --dataset")
    ap.add_argument("--dataset", default=None,
                    help="a dataset under --data-root (prepared, or a built-in already present; "
                         "nothing is downloaded); default: synthetic random images")
    ap.add_argument("--amp", choices=("off", "bf16"), default="off", help="CUDA only")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                    help="CUDA only (default: on, as the suite)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA only)")
    ap.add_argument("--samplers", default=",".join(SAMPLERS),
                    help=f"comma-separated subset of {', '.join(SAMPLERS)} (uniform is always timed)")
    ap.add_argument("--bank-size", type=int, default=200, help="bank of impon, impon_low, loss_oracle")
    ap.add_argument("--conventional", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the torchvision Dataset/DataLoader pipeline")
    ap.add_argument("--workers", type=int, default=min(4, len(os.sched_getaffinity(0))
                                                       if hasattr(os, "sched_getaffinity")
                                                       else (os.cpu_count() or 1)),
                    help="DataLoader workers of the conventional pipeline (default min(4, CPUs))")
    ap.add_argument("--threads", type=int, default=None,
                    help="intra-op CPU threads for this run (torch.set_num_threads; default: "
                         "torch's). On cores shared with other jobs, fewer threads than cores "
                         "avoids OpenMP barrier stalls")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    return ap


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    problems = []
    for key in ("steps", "rounds", "batch_size"):
        if getattr(args, key) < 1:
            problems.append(f"--{key.replace('_', '-')}: must be >= 1, got {getattr(args, key)}")
    if args.width <= 0:
        problems.append(f"--width: must be > 0, got {args.width}")
    if args.threads is not None and args.threads < 1:
        problems.append(f"--threads: must be >= 1, got {args.threads}")
    if args.workers < 0:
        problems.append(f"--workers: must be >= 0, got {args.workers}")
    if args.warmup is None:
        args.warmup = 10 if args.compile else 3
    elif args.warmup < 0:
        problems.append(f"--warmup: must be >= 0, got {args.warmup}")
    if (args.data_root is None) != (args.dataset is None):
        problems.append("--data-root and --dataset go together (or neither, for synthetic data)")
    if args.n_train is not None and args.n_train < args.batch_size:
        problems.append(f"--n-train: {args.n_train} is smaller than --batch-size {args.batch_size}")
    wanted = [s.strip() for s in args.samplers.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SAMPLERS]
    if unknown:
        problems.append(f"--samplers: unknown {', '.join(unknown)}; choose from {', '.join(SAMPLERS)}")
    # uniform is the denominator of every ratio, so it is always timed, and first in the table.
    args.sampler_list = ["uniform"] + [s for s in SAMPLERS if s in wanted and s != "uniform"]
    if problems:
        raise UserError(*problems)
    return args


def visiting_order(entries: Sequence[Entry], round_index: int, rng: random.Random) -> list[Entry]:
    """Round ``round_index``'s order: shuffled, then rotated so entry ``round_index % n`` leads.

    Why both: a plain rotation keeps every entry's *neighbour* fixed (the block after the
    conventional pipeline's, whose workers may still be busy, would always be the same
    sampler's), while the rotation makes each entry open a round in turn (the first block
    after the host's per-round bookkeeping is the likeliest to be disturbed).
    """
    order = list(entries)
    rng.shuffle(order)
    k = order.index(entries[round_index % len(entries)])
    return order[k:] + order[:k]


# ----------------------------------------------------------------------------- results
def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def summarise(entries: Sequence[Entry], dev: Device) -> dict[str, dict[str, Any]]:
    """Per-entry medians; ratios are per round (same round = same machine state), then median."""
    uniform = next(e for e in entries if e.label == "uniform")
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        ratios = [s / u for s, u in zip(e.step_s, uniform.step_s)]
        step = _median(e.step_s)
        out[e.label] = {
            "images_per_s": e.batch_size / step,
            "step_ms": step * 1e3,
            "ratio_to_uniform": _median(ratios),
            "ratio_rounds": ratios,
            "step_ms_rounds": [s * 1e3 for s in e.step_s],
            "start_epoch_ms": _median(e.start_s) * 1e3,
            "selection_ms": _median(e.selection_s) * 1e3 if e.selection_s else None,
            "selection_share": (_median([a / b for a, b in zip(e.selection_s, e.step_s)])
                                if e.selection_s else None),
            "forwards_per_step": e.forwards / e.timed_steps,
            "peak_memory_mib": e.peak_bytes(dev) / MIB,
            "resident_mib": e.resident / MIB,
        }
    return out


def arm_label(spec: RunSpec) -> str:
    """The row of this table that times a matrix run's sampler."""
    s = spec["sampler"]
    if s["name"] == "impon" and s.get("select") == "lowest":
        return "impon_low"
    return s["name"]


def epoch_estimates(step_s: Mapping[str, float], batch_size: int, n_train: int = 50_000,
                    n_test: int = 10_000) -> dict[str, float]:
    """Seconds per epoch of ``n_train`` images (+ evaluation of ``n_test``) per sampler, with
    ``benchmarks.estimate``'s evaluation convention (a no-grad forward = FORWARD_FRACTION of
    a training step, at the training batch size)."""
    t_eval = n_test / batch_size * estimate.FORWARD_FRACTION * step_s["uniform"]
    return {label: (n_train // batch_size) * s + t_eval for label, s in step_s.items()}


def matrix_estimate(step_s: Mapping[str, float], batch_size: int,
                    matrix_name: str = "paper") -> dict[str, Any]:
    """Sequential (1 job) time of a matrix of built-in datasets from measured step times.

    Per run: its optimizer steps x the measured step time of its sampler (scaled per image
    if the matrix's batch differs from the measured one) + evaluations as in
    ``benchmarks.estimate.run_seconds``. A sampler not measured here falls back to
    uniform x ``estimate.sampler_factor``; the Adam arm is timed as the uniform SGD step.
    """
    from . import matrix

    mat = matrix.load(matrix_name)
    per_image = {k: v / batch_size for k, v in step_s.items()}
    total, fallback, epochs = 0.0, 0, set()
    for spec in mat.runs:
        n_train, n_test, _ = estimate.BUILTIN_SIZES[spec["dataset"]]
        b, e = spec["batch_size"], spec["epochs"]
        label = arm_label(spec)
        if label in per_image:
            t_step = per_image[label] * b
        else:
            fallback += 1
            t_step = per_image["uniform"] * b * estimate.sampler_factor(spec)
        t_uniform = per_image["uniform"] * b
        total += e * (n_train // b) * t_step + (e + 1) * n_test / b * estimate.FORWARD_FRACTION * t_uniform
        epochs.add(e)
    return {"matrix": mat.name, "runs": len(mat.runs), "epochs": sorted(epochs),
            "seconds": total, "runs_estimated_from_uniform": fallback}


def _fmt_mib(x: float) -> str:
    return f"{x:,.0f}"


def render(res: dict[str, Any]) -> str:
    """The report: header, markdown table, ratios against targets, estimates (CUDA)."""
    cfg, rows = res["config"], res["entries"]
    lines = [
        f"device: {res['device']} | torch {res['torch']} | width {cfg['width']} | batch "
        f"{cfg['batch_size']} | dataset {res['dataset']['description']} | amp {cfg['amp']} | "
        f"channels_last {cfg['channels_last']} | compile {cfg['compile']}"
        + (" (CUDA-only knobs: not applied on CPU)" if not res["cuda"] else ""),
        f"{cfg['rounds']} interleaved rounds x {cfg['steps']} timed steps per entry after "
        f"{cfg['warmup']} warm-up steps; order rotated + shuffled per round; medians over rounds; "
        f"ratio = step time / uniform's step time in the same round (median, [min, max]).",
        "",
        "| sampler | images/s | step ms | ratio to uniform | forwards/step | selection ms/step "
        f"(share) | start_epoch ms | peak memory MiB ({res['memory']['peak']}) | own resident MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows.items():
        rr = r["ratio_rounds"]
        spread = f" [{min(rr):.3f}, {max(rr):.3f}]" if len(rr) > 1 else ""
        sel = ("-" if r["selection_ms"] is None
               else f"{r['selection_ms']:,.2f} ({100 * r['selection_share']:.1f}%)")
        lines.append(
            f"| {label} | {r['images_per_s']:,.1f} | {r['step_ms']:,.1f} | "
            f"{r['ratio_to_uniform']:.3f}{spread} | {r['forwards_per_step']:.1f} | {sel} | "
            f"{r['start_epoch_ms']:.2f} | {_fmt_mib(r['peak_memory_mib'])} | "
            f"{_fmt_mib(r['resident_mib'])} |")
    lines += ["", f"memory: {res['memory']['note']}",
              "step ms includes begin_epoch (start_epoch ms) spread over an epoch of "
              f"{res['steps_per_epoch']} steps; forwards/step counts examples forwarded "
              "(training + selection scoring); selection = the sampler's own next_batch + "
              "observe (+ begin_epoch spread over the epoch), timed inside the step "
              f"({'CUDA events' if res['cuda'] else 'host clock'}), share = of the step time."]
    conv = res.get("conventional")
    if conv is not None:
        lines.append(
            f"conventional pipeline (torchvision Dataset + DataLoader({conv['workers']} workers"
            f"{', pin_memory' if res['cuda'] else ''}) + PIL transforms, same model/batch/SGD/loss): "
            f"ours (uniform) / conventional images/s = {conv['ours_over_conventional']:.3f} "
            f"(median of per-round ratios; > 1: ours is faster)"
            + ("" if res["cuda"] else
               f" -- CPU target ours >= conventional: {'met' if conv['target_met'] else 'NOT met'}"))
    for label, t in res["targets"].items():
        lines.append(f"target {label} step <= {TARGET_RATIO:.2f}x uniform: "
                     f"{t['ratio']:.3f} -> {'met' if t['met'] else 'NOT met'} (its selection "
                     f"itself: {100 * t['selection_share']:.2f}% of a step, uniform's "
                     f"{100 * t['uniform_selection_share']:.2f}%)")
    sb = res.get("selective_backprop_extra")
    if sb is not None:
        lines.append(f"selective_backprop extra cost: step time {sb['extra_step_pct']:+.1f}% vs "
                     f"uniform, {sb['forwards_per_step']:.0f} examples forwarded per step "
                     f"({sb['forwards_per_trained']:.2f} per trained example)")
    est = res.get("estimates")
    if est:
        ep = ", ".join(f"{k} {estimate.format_seconds(v)}" for k, v in est["epoch_seconds"].items())
        m = est["matrix"]
        lines.append(f"estimated epoch time for CIFAR-10-sized data (50,000 images, + 10,000 "
                     f"evaluated), amp {cfg['amp']}: {ep}")
        lines.append(f"estimated {m['matrix']} matrix ({m['runs']} runs x "
                     f"{'/'.join(map(str, m['epochs']))} epochs) on this device with 1 job: "
                     f"{estimate.format_seconds(m['seconds'])}"
                     + (f" ({m['runs_estimated_from_uniform']} runs from uniform x sampler factor)"
                        if m["runs_estimated_from_uniform"] else "")
                     + ("" if cfg["width"] == 1.0 else f" (at width {cfg['width']}, as measured)"))
    if res.get("nonfinite"):
        lines.append(f"warning: non-finite training loss at the end for {', '.join(res['nonfinite'])} "
                     "(timing still valid, but check the configuration)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    dev = Device(device)
    with tempfile.TemporaryDirectory(prefix="perf-") as tmp:
        tmp_path = Path(tmp)
        subset: Optional[dict] = None
        if args.dataset is None:
            n_train = args.n_train or 50_000
            data_root = tmp_path / "data"
            write_synthetic(data_root, n_train, min(n_train, 1000), 10, args.seed)
            dataset = SYNTHETIC
            description = (f"synthetic ({n_train} random uint8 32x32 images, 10 classes, written "
                           f"to a temp dir; speed does not depend on pixel content)")
        else:
            data_root, dataset = Path(args.data_root), args.dataset
            if args.n_train is not None:
                subset = {"train": args.n_train}
            description = None

        entries: list[Entry] = []
        conv: Optional[ConventionalEntry] = None
        try:
            for label in args.sampler_list:
                t0 = time.perf_counter()
                before = dev.allocated()
                spec = make_spec(label, args, dataset, subset)
                trainer = Trainer(spec, tmp_path / "runs" / label, data_root=data_root,
                                  download=False, device=device)
                entry = SamplerEntry(label, trainer)
                entry.warm_up(dev, args.warmup, before)
                entries.append(entry)
                _log(f"built + warmed up {label} ({time.perf_counter() - t0:.1f} s)")
            first = entries[0].trainer  # type: ignore[attr-defined]
            info = first.info
            if description is None:
                description = (f"{info.name} from {data_root} ({info.n_train} train images"
                               f"{', subset' if subset else ''})")
            if args.conventional:
                t0 = time.perf_counter()
                before = dev.allocated()
                conv = ConventionalEntry(first.spec, data_root, device, args.workers)
                conv.warm_up(dev, max(args.warmup, 1), before)
                entries.append(conv)
                _log(f"built + warmed up conventional ({time.perf_counter() - t0:.1f} s)")

            order_rng = random.Random(args.seed)  # private: only shuffles the visiting order
            for r in range(args.rounds):
                t0 = time.perf_counter()
                for e in visiting_order(entries, r, order_rng):
                    # epoch r + 2: fresh streams each round, never warm-up's epoch 1
                    e.timed_block(dev, r + 2, args.steps)
                _log(f"round {r + 1}/{args.rounds} ({time.perf_counter() - t0:.1f} s)")
            nonfinite = [e.label for e in entries
                         if e.last_loss is not None and not math.isfinite(float(e.last_loss))]
        finally:
            if conv is not None:
                conv.close()

        rows = summarise(entries, dev)
        res: dict[str, Any] = {
            "device": dev.name(), "cuda": dev.cuda, "torch": torch.__version__,
            "config": {"width": args.width, "batch_size": args.batch_size, "steps": args.steps,
                       "rounds": args.rounds, "warmup": args.warmup,
                       "amp": args.amp if dev.cuda else "off",
                       "channels_last": bool(args.channels_last and dev.cuda),
                       "compile": bool(args.compile and dev.cuda),
                       "bank_size": args.bank_size, "seed": args.seed,
                       "threads": torch.get_num_threads()},
            "dataset": {"name": info.name, "n_train": info.n_train, "num_classes": info.num_classes,
                        "synthetic": args.dataset is None, "description": description},
            "steps_per_epoch": entries[0].steps_per_epoch,
            "memory": ({"peak": "CUDA max allocated", "note":
                        "CUDA peak = the entry's own resident tensors (data, model, optimiser, sampler)"
                        " + the largest transient of its timed blocks (max_memory_allocated above the"
                        " block start, reset before each block)."}
                       if dev.cuda else
                       {"peak": "process max RSS", "note":
                        "CPU peak = this process's max RSS (getrusage) after the entry's last block:"
                        " process-wide (every entry lives in this process; DataLoader workers excluded)."
                        " Own resident = RSS growth while the entry was built and warmed up (the first"
                        " entry's includes one-time process costs: libraries, thread pools)."}),
            "entries": rows,
            "samplers": {k: v for k, v in rows.items() if k != CONVENTIONAL},
            "targets": {k: {"ratio": rows[k]["ratio_to_uniform"],
                            "met": rows[k]["ratio_to_uniform"] <= TARGET_RATIO,
                            "selection_share": rows[k]["selection_share"],
                            "uniform_selection_share": rows["uniform"]["selection_share"]}
                        for k in TARGETED if k in rows},
            "nonfinite": nonfinite,
        }
        if CONVENTIONAL in rows:
            uniform, c = next(e for e in entries if e.label == "uniform"), conv
            assert c is not None
            ours = _median([cs / us for cs, us in zip(c.step_s, uniform.step_s)])
            res["conventional"] = {**rows[CONVENTIONAL], "workers": args.workers,
                                   "ours_over_conventional": ours, "target_met": ours >= 1.0,
                                   "batch_build_ms_in_process": c.batch_build_s * 1e3}
        if "selective_backprop" in rows:
            sb = rows["selective_backprop"]
            res["selective_backprop_extra"] = {
                "extra_step_pct": (sb["ratio_to_uniform"] - 1) * 100,
                "forwards_per_step": sb["forwards_per_step"],
                "forwards_per_trained": sb["forwards_per_step"] / args.batch_size}
        if dev.cuda:
            step_s = {k: v["step_ms"] / 1e3 for k, v in res["samplers"].items()}
            res["estimates"] = {"epoch_seconds": epoch_estimates(step_s, args.batch_size),
                                "matrix": matrix_estimate(step_s, args.batch_size)}
    return res


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Parse, measure, print the report (and write --json); returns the results dict."""
    args = _parse(argv)
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        res = run(args)
    finally:
        torch.set_num_threads(threads)  # callers (tests) keep their own setting
    print(render(res), flush=True)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=2) + "\n")
    return res


def cli(argv: Optional[Sequence[str]] = None) -> int:
    try:
        main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
