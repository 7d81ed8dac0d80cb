"""FLOPs of one training step (ResNet-18 CIFAR by default), and the floor they put on an epoch.

    python -m benchmarks.flops [--width 1.0] [--batch-size 128] [--classes 10]
        [--n-train 50000] [--peak-tflops 989.4]
        [--model resnet18|resnet50|wrn28_10|timm:NAME] [--stem cifar|imagenet] [--image-size 32]

Counted by ``torch.utils.flop_counter.FlopCounterMode`` over forward + backward of a
model of the suite (``models.build``, ResNet-18 by default) on a batch of square images
(32x32 by default; FLOPs grow with the pixels: 64x64 costs 4x with the CIFAR stem). Run on the
``meta`` device: shapes only, no arithmetic, so it answers instantly on any machine.
The counter counts matrix multiplies and convolutions (2 FLOPs per multiply-add), which
are all but a fraction of a percent of the work; element-wise ops (BatchNorm, ReLU, the
optimiser update) are not counted, so the floor below is a lower bound of a lower bound.

Why: the floor ``steps_per_epoch x FLOPs_per_step / peak`` says how far a measured epoch
time is from what the hardware could do at best. The default peak is the NVIDIA H100 SXM
datasheet's dense BF16 Tensor Core figure, 989.4 TFLOPS *without sparsity* (the 1,979
TFLOPS headline number assumes 2:4 structured sparsity, which dense training does not use).
A real ResNet-18 at batch 128 reaches a small fraction of that peak (small convolutions,
BatchNorm and memory traffic dominate), so a measured epoch (``make gpu-check``) will be
many times the floor.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import models

from .errors import UserError, cli_exit

#: NVIDIA H100 SXM5 datasheet: BF16 Tensor Core, dense (without sparsity), TFLOPS.
H100_SXM_BF16_DENSE_TFLOPS = 989.4


def training_step_flops(width: float | None = 1.0, batch_size: int = 128, num_classes: int = 10,
                        device: str = "meta", model: str = "resnet18", image_size: int = 32,
                        **model_kw: Any) -> dict[str, int]:
    """FLOPs of forward and backward of one training step (``FlopCounterMode`` totals).

    ``width`` None: a model that takes none (timm's); ``model_kw``: its other parameters
    (``stem``, ``depth``)."""
    dev = torch.device(device)
    kw = dict(model_kw) if width is None else {**model_kw, "width": width}
    with torch.random.fork_rng(devices=[]), dev:  # built on the device (meta: no init
        net = models.build(model, num_classes, **kw)  # arithmetic); RNG untouched
    net = net.train()
    x = torch.empty(batch_size, 3, image_size, image_size, device=dev)
    y = torch.zeros(batch_size, dtype=torch.long, device=dev)
    with FlopCounterMode(display=False) as fwd:
        loss = F.cross_entropy(net(x), y)
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    f, b = int(fwd.get_total_flops()), int(bwd.get_total_flops())
    return {"forward": f, "backward": b, "total": f + b}


def epoch_floor(step_flops: int, steps_per_epoch: int, peak_tflops: float) -> float:
    """Seconds per epoch if every FLOP ran at ``peak_tflops`` (no overhead at all)."""
    return steps_per_epoch * step_flops / (peak_tflops * 1e12)


def report(width: float = 1.0, batch_size: int = 128, num_classes: int = 10,
           n_train: int = 50_000, peak_tflops: float = H100_SXM_BF16_DENSE_TFLOPS,
           model: str = "resnet18", image_size: int = 32, **model_kw: Any) -> dict[str, Any]:
    fl = training_step_flops(None if models.is_timm(model) else width, batch_size, num_classes,
                             model=model, image_size=image_size, **model_kw)
    steps = n_train // batch_size
    return {"model": model, "model_kw": model_kw, "image_size": image_size,
            "width": width, "batch_size": batch_size, "num_classes": num_classes,
            "n_train": n_train, "steps_per_epoch": steps, "flops": fl,
            "epoch_flops": steps * fl["total"], "peak_tflops": peak_tflops,
            "floor_seconds_per_epoch": epoch_floor(fl["total"], steps, peak_tflops)}


def render(r: dict[str, Any]) -> str:
    fl = r["flops"]
    name, kw, size = r.get("model", "resnet18"), r.get("model_kw") or {}, r.get("image_size", 32)
    if name == "resnet18" and kw.get("stem", "cifar") == "cifar":
        what = f"ResNet-18 (CIFAR variant, width {r['width']}, {r['num_classes']} classes)"
    else:
        extra = "".join(f", {k} {v}" for k, v in sorted(kw.items()))
        width = "" if models.is_timm(name) else f", width {r['width']}"
        what = f"{name} ({r['num_classes']} classes{width}{extra})"
    return "\n".join([
        f"{what}, batch {r['batch_size']}, {size}x{size} inputs, counted by "
        f"torch.utils.flop_counter (meta device):",
        f"  one training step: {fl['total'] / 1e9:,.1f} GFLOP (forward {fl['forward'] / 1e9:,.1f},"
        f" backward {fl['backward'] / 1e9:,.1f})",
        f"  one epoch of {r['n_train']:,} images ({r['steps_per_epoch']} steps): "
        f"{r['epoch_flops'] / 1e12:,.1f} TFLOP",
        f"  floor at {r['peak_tflops']:,.1f} TFLOPS (H100 SXM dense BF16, without sparsity, by "
        f"default): {r['floor_seconds_per_epoch']:.3f} s per epoch (estimate: a lower bound, "
        f"not a measurement)",
    ])


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.flops", description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--peak-tflops", type=float, default=H100_SXM_BF16_DENSE_TFLOPS,
                    help="the device's dense peak (default: H100 SXM BF16, without sparsity)")
    ap.add_argument("--model", default="resnet18",
                    help=f"{', '.join(models.MODELS)} or timm:NAME (default resnet18)")
    ap.add_argument("--stem", default=None, choices=models.STEMS, help="ResNets' stem (default cifar)")
    ap.add_argument("--depth", type=int, default=None, help="wrn28_10's depth (default 28)")
    ap.add_argument("--image-size", type=int, default=32, help="side of the square inputs (default 32)")
    a = ap.parse_args(argv)
    problems = [f"--{k.replace('_', '-')}: must be > 0, got {getattr(a, k)}"
                for k in ("width", "batch_size", "classes", "n_train", "peak_tflops", "image_size")
                if getattr(a, k) <= 0]
    model_kw = {k: v for k, v in (("stem", a.stem), ("depth", a.depth)) if v is not None}
    for key, owners in (("stem", ("resnet18", "resnet50")), ("depth", ("wrn28_10",))):
        if key in model_kw and a.model not in owners:
            problems.append(f"--{key}: a parameter of {' and '.join(owners)} only, not of {a.model}")
    if a.model not in models.MODELS and not models.is_timm(a.model):
        problems.append(f"--model: unknown model {a.model!r}; choose {', '.join(models.MODELS)} or timm:NAME")
    else:
        problems += [f"--{why.replace('name:', 'model:', 1) if why.startswith('name:') else why}"
                     for why in models.problems(a.model, model_kw)]
    if a.n_train is not None and a.batch_size > a.n_train > 0:
        problems.append(f"--n-train: {a.n_train} is smaller than --batch-size {a.batch_size}")
    if problems:
        raise UserError(*problems)
    try:
        r = report(a.width, a.batch_size, a.classes, a.n_train, a.peak_tflops, a.model,
                   a.image_size, **model_kw)
    except (TypeError, ValueError) as e:  # e.g. --stem for a model that has none
        raise UserError(f"--model {a.model}: {e}") from e
    print(render(r), flush=True)
    return r


def cli(argv: Optional[Sequence[str]] = None) -> int:
    return cli_exit(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
