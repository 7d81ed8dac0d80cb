"""What to time: the sampler table (from the registry), the RunSpecs, synthetic data and
the command line with per-device defaults."""
from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch


from ..config import RunSpec
from ..data import write_npz_atomic
from ..errors import UserError

from .timing import Entry

import samplers

def perf_rows(n_train: Optional[int] = None, batch_size: Optional[int] = None
              ) -> dict[str, tuple[str, samplers.PerfRow]]:
    """label -> (sampler name, its row): uniform first, then every registered sampler's
    rows (:meth:`samplers.Sampler.perf_rows`: IMPON also with lowest scores, RHO-LOSS with a
    one-epoch IL model) in registry order. A sampler added to the registry appears here
    without an edit; one whose defaults cannot run on the perf data declares its rows."""
    rows: dict[str, tuple[str, samplers.PerfRow]] = {}
    for name in ["uniform", *samplers.available()]:
        for label, row in samplers.get(name).perf_rows(n_train, batch_size).items():
            rows.setdefault(label, (name, row))
    return rows


def sampler_table() -> dict[str, dict[str, Any]]:
    """label -> sampler section of the RunSpec (name and the row's parameters)."""
    return {label: {"name": name, **row.params} for label, (name, row) in perf_rows().items()}


def targeted(kind: str) -> tuple[str, ...]:
    """Labels whose rows declare ``kind`` (``step_target`` or ``efficiency_target``)."""
    return tuple(label for label, (_, row) in perf_rows().items() if getattr(row, kind))


SAMPLERS = sampler_table()
#: Rows whose sampler has a bank (they get ``--bank-size``).
BANKED = tuple(k for k, v in SAMPLERS.items() if samplers.get(v["name"]).has_bank)

#: Defaults per device. CPU: sized so that ``make perf`` with every sampler answers in a few
#: minutes on 2 cores (width 0.25 ResNet-18, 4,096 synthetic images); CUDA (and ``--full``
#: anywhere): the real thing, ResNet-18 width 1 on 50,000 images.
DEVICE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cpu": {"width": 0.25, "n_train": 4096, "steps": 6, "rounds": 3, "warmup": 2, "workers": 1},
    "cuda": {"width": 1.0, "n_train": 50_000, "steps": 20, "rounds": 3, "warmup": 3, "workers": 4},
}
SYNTHETIC = "synthetic"


# ----------------------------------------------------------------------------- set-up
def make_spec(label: str, args: argparse.Namespace, dataset: str,
              subset: Optional[dict]) -> RunSpec:
    """The RunSpec of sampler ``label``: identical for every sampler except ``sampler``."""
    name, row = perf_rows(getattr(args, "n_train", None), args.batch_size)[label]
    sampler = {"name": name, **row.params}
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
    ap.add_argument("--full", action="store_true",
                    help="the full-size defaults (width 1, 50,000 images, 20 steps) on any device")
    ap.add_argument("--width", type=float, default=None,
                    help="ResNet-18 width multiplier (default: 1; 0.25 on CPU)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--n-train", type=int, default=None,
                    help="training examples: size of the synthetic set (default 50000; 4096 on CPU), or a "
                         "stratified subset of --dataset (default: all of it)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per entry per round (default 20; 6 on CPU)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (median over rounds, default 3)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps per entry first (default 3, 2 on CPU; 10 with --compile)")
    ap.add_argument("--data-root", default=None, help="data root holding --dataset")
    ap.add_argument("--dataset", default=None,
                    help="a dataset under --data-root (prepared, or a built-in already present; "
                         "nothing is downloaded); default: synthetic random images")
    ap.add_argument("--amp", choices=("off", "bf16"), default="off", help="bf16 autocast (CPU autocast on CPU)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                    help="channels_last memory format (default: on, as the suite)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--samplers", default=",".join(SAMPLERS),
                    help=f"comma-separated subset of {', '.join(SAMPLERS)} (uniform is always timed)")
    ap.add_argument("--bank-size", type=int, default=200, help=f"bank of {', '.join(BANKED)}")
    ap.add_argument("--conventional", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the torchvision Dataset/DataLoader pipeline")
    ap.add_argument("--host-data", action=argparse.BooleanOptionalAction, default=True,
                    help="also time uniform with its images host-resident (--data-placement host: "
                         "pinned host memory read by the device in place), as a ratio to uniform")
    ap.add_argument("--workers", type=int, default=None,
                    help="DataLoader workers of the conventional pipeline (default min(4, CPUs); "
                         "1 on CPU)")
    ap.add_argument("--threads", type=int, default=None,
                    help="intra-op CPU threads for this run (torch.set_num_threads; default: "
                         "torch's). On cores shared with other jobs, fewer threads than cores "
                         "avoids OpenMP barrier stalls")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the numbers here")
    return ap


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    apply_device_defaults(args)
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
    if args.warmup < 0:
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


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def apply_device_defaults(args: argparse.Namespace) -> None:
    """Fill the options left unset from :data:`DEVICE_DEFAULTS` of the device (``--full``:
    the CUDA sizes everywhere). An unusable ``--device`` is reported by ``run`` later."""
    dev = args.device or "auto"
    cuda = dev.startswith("cuda") or (dev == "auto" and torch.cuda.is_available())
    d = dict(DEVICE_DEFAULTS["cuda" if (cuda or args.full) else "cpu"])
    d["workers"] = min(d["workers"], _cpus())
    if args.compile:
        d["warmup"] = 10
    if args.dataset is not None:
        del d["n_train"]  # a real dataset: all of it unless --n-train says otherwise
    for key, value in d.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)


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

