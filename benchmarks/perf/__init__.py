"""``make perf``: images/s of the suite's training step with every sampler, as ratios.

    python -m benchmarks.perf [--device auto|cpu|cuda] [--full] [--width W] [--batch-size 128]
        [--n-train N] [--steps S] [--rounds 3] [--warmup W]
        [--data-root DIR --dataset NAME] [--amp off|bf16]
        [--channels-last/--no-channels-last] [--compile] [--samplers uniform,impon,...]
        [--bank-size 200] [--conventional/--no-conventional] [--host-data/--no-host-data]
        [--workers N] [--seed 0] [--json PATH]

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

*Host-resident data* (``--host-data``, on by default): uniform once more, its images in
page-locked host memory that the device reads in place (``--data-placement host``,
:mod:`benchmarks.placement`); its step time over uniform's, per round, is what keeping data
that does not fit the device in host memory costs. On a CPU both placements are host
memory, so there the ratio checks the code path, not a bus.

Defaults per device (``setup.DEVICE_DEFAULTS``): on CUDA the real sizes (width 1, 50,000
synthetic images, 20 steps); on CPU a width-0.25 model on 4,096 images and 6 steps, so that
every sampler is timed in a few minutes on 2 cores (``--full`` or explicit flags give the
full sizes anywhere). The *pure model step* (forward, backward, optimiser on one pre-made
device batch) is timed as one more entry; its time over a sampler's step is the *loop
efficiency* line (target >= 0.95 for uniform, IMPON, p-SGD, c-SGD).

Layout: ``setup`` (sampler table from the registry, RunSpecs, synthetic data, options),
``timing`` (entries and timed blocks), ``pipeline`` (the conventional DataLoader pipeline),
``report`` (medians, ratios, efficiency, estimates, the printed report), here: ``run``.

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
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch


from ..errors import UserError, cli_exit
from ..train import Trainer, resolve_device

from .pipeline import CONVENTIONAL, PREFETCH_FACTOR, ConventionalEntry
from .report import (EFFICIENCY_TARGET, TARGET_RATIO, TARGETED, arm_label, epoch_estimates,
                     _median, loop_efficiency, matrix_estimate, render, summarise)
from .setup import (BANKED, SAMPLERS, SYNTHETIC, _log, _parse, build_parser, make_spec,
                    visiting_order, write_synthetic)
from .timing import HOST, MIB, MODEL, Device, Entry, ModelEntry, SamplerEntry


# ----------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    dev = Device(device)
    with tempfile.TemporaryDirectory(prefix="perf-") as tmp:
        tmp_path = Path(tmp)
        subset: Optional[dict] = None
        if args.dataset is None:
            n_train = args.n_train
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
            # (label, perf row, data placement): every sampler, then uniform once more with
            # its images host-resident (--host-data)
            timed = [(label, label, "auto") for label in args.sampler_list]
            if args.host_data:
                timed.append((HOST, "uniform", "host"))
            for i, (label, row, placement) in enumerate(timed):
                t0 = time.perf_counter()
                before = dev.allocated()
                spec = make_spec(row, args, dataset, subset)
                trainer = Trainer(spec, tmp_path / "runs" / str(i), data_root=data_root,
                                  download=False, device=device, data_placement=placement)
                entry = SamplerEntry(label, trainer)
                entry.warm_up(dev, args.warmup, before)
                entries.append(entry)
                _log(f"built + warmed up {label} ({time.perf_counter() - t0:.1f} s)")
            first = entries[0].trainer  # type: ignore[attr-defined]
            info = first.info
            if description is None:
                description = (f"{info.name} from {data_root} ({info.n_train} train images"
                               f"{', subset' if subset else ''})")
            t0 = time.perf_counter()
            model_entry = ModelEntry(first)
            model_entry.warm_up(dev, args.warmup, dev.allocated())
            entries.append(model_entry)
            _log(f"built + warmed up the pure model step ({time.perf_counter() - t0:.1f} s)")
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
                       "amp": args.amp,
                       "channels_last": bool(args.channels_last),
                       "compile": bool(args.compile), "full": bool(args.full),
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
            "samplers": {k: v for k, v in rows.items() if k not in (CONVENTIONAL, MODEL, HOST)},
            "loop_efficiency": loop_efficiency(entries),
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
        if HOST in rows:
            h = rows[HOST]
            res["host_data"] = {"ratio_to_device": h["ratio_to_uniform"],
                                "ratio_rounds": h["ratio_rounds"], "step_ms": h["step_ms"],
                                "resident_mib": h["resident_mib"]}
        # Every sampler that forwards more examples than it trains (scoring candidates, a
        # bank, a presample): what that costs next to uniform. From the rows, no names.
        extra = {k: {"extra_step_pct": (v["ratio_to_uniform"] - 1) * 100,
                     "forwards_per_step": v["forwards_per_step"],
                     "forwards_per_trained": v["forwards_per_step"] / args.batch_size}
                 for k, v in res["samplers"].items() if v["forwards_per_step"] > args.batch_size}
        if extra:
            res["selection_forwards"] = extra
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
    return cli_exit(main, argv)
