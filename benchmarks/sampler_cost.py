"""What each sampler itself costs per iteration, next to a real ResNet-18 training step.

    python -m benchmarks.sampler_cost [--device cpu|cuda] [--repeats R] [--warmup W]

Why: importance sampling only pays off if choosing the batch is cheap next to training on
it. For every registered sampler (each row it declares for ``make perf``,
:meth:`samplers.Sampler.perf_rows`, and bank size N for the bank-based ones) this times
``next_batch + observe`` (plus ``start_epoch`` amortised over an epoch's
``n_train // b`` steps) against one SGD step of the CIFAR ResNet-18 (augment, forward,
per-example cross-entropy, backward, optimiser step) at b = 128 on a 50,000-example
training set, and prints a Markdown table. Selection forwards (the oracle's bank,
Selective Backprop's candidates) are part of the sampler's cost: that is what they cost.
Once-per-run work (RHO-LOSS's irreducible-loss model, trained at the first ``start_epoch``)
is not: the first ``start_epoch`` is untimed; its cost model says what it costs.

Measurement: all configurations share one process, model and data; the measurements are
interleaved (every repeat visits every configuration once, in a freshly shuffled order)
after warm-up rounds, so drift and noise from other processes spread over all rows
alike; medians are reported. On CUDA the device is synchronised around every timed
block. Images are random uint8 (cost does not depend on content); the augmentation is
the suite's kind (random 32x32 crop of the 4-pixel zero-padded image + horizontal flip,
vectorised, own generator), written here so the script needs only ``samplers`` and
``models``. Plain fp32, no ``channels_last``/AMP/compile: the ratio is conservative for a
tuned GPU step, which is faster and makes every sampler's share larger - read the CUDA
numbers with that in mind.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import Tensor, nn

import models
import samplers
from samplers.impon import weight_frobenius_norm

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class Config:
    label: str
    name: str
    params: dict
    bank: Optional[int] = None
    sampler: Optional[samplers.Sampler] = None
    sampler_ms: list = field(default_factory=list)
    step_ms: list = field(default_factory=list)
    start_ms: float = 0.0


def configs(bank_sizes: list[int], which: Optional[list[str]], n_train: Optional[int] = None,
            batch_size: Optional[int] = None) -> list[Config]:
    """Uniform first, then every row every registered sampler declares (once per bank size
    for samplers with a bank); ``which``: only these sampler names or row labels."""
    out = []
    for name in ["uniform", *samplers.available()]:
        cls = samplers.get(name)
        for label, row in cls.perf_rows(n_train, batch_size).items():
            if any(c.label == label for c in out):
                continue
            if cls.has_bank:
                out += [Config(label, name, {**row.params, "bank_size": n}, bank=n) for n in bank_sizes]
            else:
                out.append(Config(label, name, dict(row.params)))
    return [c for c in out if which is None or c.name in which or c.label in which]


def make_augment(x_uint8: Tensor, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
    """Random crop (4-pixel zero padding) + flip + normalise, one draw per example."""
    device = x_uint8.device
    mean = torch.tensor(CIFAR_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=device).view(1, 3, 1, 1)
    ar = torch.arange(32, device=device)

    def augment(idx: Tensor) -> Tensor:
        k = idx.shape[0]
        x = x_uint8.index_select(0, idx).permute(0, 3, 1, 2).float().div_(255)
        x = nn.functional.pad((x - mean) / std, (4, 4, 4, 4))  # zero = the mean pixel
        oy = torch.randint(0, 9, (k, 1), generator=generator, device=device)
        ox = torch.randint(0, 9, (k, 1), generator=generator, device=device)
        flip = torch.rand(k, 1, generator=generator, device=device) < 0.5
        rows = oy + ar
        cols = ox + torch.where(flip, 31 - ar, ar)
        b = torch.arange(k, device=device).view(k, 1, 1, 1)
        c = torch.arange(3, device=device).view(1, 3, 1, 1)
        return x[b, c, rows.view(k, 1, 32, 1), cols.view(k, 1, 1, 32)].contiguous()

    return augment


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"],
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=20, help="timed iterations per configuration")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--bank-sizes", default="200,1000,5000")
    ap.add_argument("--samplers", default=None, help="comma-separated subset (default: all)")
    ap.add_argument("--score-chunk", type=int, default=1024,
                    help="largest no-grad forward of a selection score (memory bound)")
    ap.add_argument("--epochs", type=int, default=10,
                    help="epochs of the run the samplers are told of (InfoBatch prunes by it)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    n, b = args.n_train, args.batch_size
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    data_gen = torch.Generator().manual_seed(args.seed)
    x = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=data_gen).to(device)
    y = torch.randint(0, 10, (n,), generator=data_gen).to(device)
    torch.manual_seed(args.seed)   # model initialisation only
    model = models.build("resnet18", 10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    aug_gen = torch.Generator(device=device).manual_seed(args.seed + 1)
    augment = make_augment(x, aug_gen)
    mean = torch.tensor(CIFAR_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=device).view(1, 3, 1, 1)

    def images() -> Tensor:
        return (x.permute(0, 3, 1, 2).float() / 255 - mean) / std

    def logits(inputs: Tensor, net: nn.Module = model) -> Tensor:
        """No-grad logits in eval mode, in chunks (the selection forward's memory bound)."""
        was_training = net.training
        net.eval()
        with torch.no_grad():
            out = torch.cat([net(inputs[i:i + args.score_chunk])
                             for i in range(0, inputs.shape[0], args.score_chunk)])
        net.train(was_training)
        return out

    def score(inputs: Tensor, labels: Tensor) -> Tensor:
        return nn.functional.cross_entropy(logits(inputs), labels, reduction="none")

    def plain(idx: Tensor) -> Tensor:
        return (x.index_select(0, idx).permute(0, 3, 1, 2).float() / 255 - mean) / std

    def train_aux(train_idx: Tensor, score_idx: Tensor, *, epochs: int, batch_size: int, lr: float,
                  weight_decay: float, generator: torch.Generator) -> Tensor:
        """A fresh model of the same architecture trained with AdamW (RHO-LOSS's IL model)."""
        aux = models.build("resnet18", 10).to(device)
        aux_opt = torch.optim.AdamW(aux.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(epochs):
            order = train_idx[torch.randperm(train_idx.shape[0], generator=generator, device=device)]
            for s in range(0, order.shape[0], batch_size):
                idx = order[s:s + batch_size]
                loss = nn.functional.cross_entropy(aux(augment(idx)), y[idx])
                aux_opt.zero_grad(set_to_none=True)
                loss.backward()
                aux_opt.step()
        return nn.functional.cross_entropy(logits(plain(score_idx), aux), y[score_idx],
                                           reduction="none")

    gen = torch.Generator(device=device).manual_seed(args.seed + 2)
    ctx = samplers.StepContext(
        n_train=n, batch_size=b, device=device, generator=gen, labels=y, num_classes=10,
        weight_norm_fn=lambda: weight_frobenius_norm(model), augment_fn=augment,
        score_fn=score, score_eval_fn=score, score_update_fn=score, images_fn=images,
        score_logits_fn=logits, score_logits_eval_fn=logits, plain_fn=plain,
        train_aux_fn=train_aux, epochs=args.epochs)

    which = args.samplers.split(",") if args.samplers else None
    cfgs = configs([int(s) for s in args.bank_sizes.split(",")], which, n, b)
    if not cfgs:
        raise SystemExit(f"--samplers {args.samplers}: none of them is registered; "
                         f"registered: {', '.join(samplers.available())}")
    for cfg in cfgs:
        cfg.sampler = samplers.build(cfg.name, **cfg.params)
        cfg.sampler.start_epoch(1, ctx)   # first call builds lazy caches (features): untimed
        sync()
        t0 = time.perf_counter()
        cfg.sampler.start_epoch(1, ctx)
        sync()
        cfg.start_ms = (time.perf_counter() - t0) * 1e3

    def one_iteration(cfg: Config, record: bool) -> None:
        assert cfg.sampler is not None
        sync()
        t0 = time.perf_counter()
        batch = cfg.sampler.next_batch(ctx)
        sync()
        t1 = time.perf_counter()
        inputs = batch.inputs if batch.inputs is not None else ctx.augment(batch.idx)
        out = model(inputs)
        losses = nn.functional.cross_entropy(out, y[batch.idx], reduction="none")
        if batch.weights is None:
            loss = losses.mean()
        elif batch.weight_mode == "mean":
            loss = (batch.weights * losses).mean()
        else:
            loss = (batch.weights * losses).sum() / batch.weights.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        p_true = torch.softmax(out.detach(), 1).gather(1, y[batch.idx][:, None])[:, 0]
        sync()
        t2 = time.perf_counter()
        cfg.sampler.observe(batch.idx, losses.detach(), p_true)
        if cfg.sampler.wants_logits:
            cfg.sampler.observe_logits(batch.idx, out.detach().float())
        sync()
        t3 = time.perf_counter()
        if record:
            cfg.sampler_ms.append(((t1 - t0) + (t3 - t2)) * 1e3)
            cfg.step_ms.append((t2 - t1) * 1e3)

    order = random.Random(args.seed)  # a private RNG: only shuffles the visiting order
    for r in range(args.warmup + args.repeats):
        visit = list(cfgs)
        order.shuffle(visit)
        for cfg in visit:
            one_iteration(cfg, record=r >= args.warmup)

    steps_per_epoch = n // b
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"Sampler cost per iteration vs a ResNet-18 SGD step: {name}, torch "
          f"{torch.__version__}, n_train={n}, b={b}, median of {args.repeats} interleaved "
          f"iterations after {args.warmup} warm-up rounds; sampler = next_batch + observe "
          f"+ start_epoch/{steps_per_epoch}.\n")
    print("| sampler | N | sampler ms/iter | train-step ms/iter | ratio |")
    print("|---|---:|---:|---:|---:|")
    for cfg in cfgs:
        s = statistics.median(cfg.sampler_ms) + cfg.start_ms / steps_per_epoch
        t = statistics.median(cfg.step_ms)
        bank = "" if cfg.bank is None else str(cfg.bank)
        print(f"| {cfg.label} | {bank} | {s:.2f} | {t:.1f} | {s / t:.4f} |")


if __name__ == "__main__":
    main()
