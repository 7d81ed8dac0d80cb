"""``train_one``: one run of a RunSpec, from data to ``results/<matrix>/<run_id>/``.

The loop (DESIGN §4) keeps the GPU busy: data, augmentation, losses and counters stay on
the device, and the host reads them back once per epoch (``.tolist()`` of the epoch's loss
buffer, the evaluation sums). Nothing inside the step synchronises.

Crash safety: at the end of each epoch the epoch's rows are appended to
``iterations.csv``, ``epochs.csv`` is rewritten atomically, and then a checkpoint (model,
optimiser, sampler state, counters, the byte length of ``iterations.csv``) replaces the
previous one atomically. Resume loads it and cuts ``iterations.csv`` back, so a run killed
at any instant and resumed writes the same rows as an uninterrupted one. Every random
stream is reseeded from (seed, epoch, stream name) at epoch start, so nothing else needs
saving for an exact replay.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

import models
import samplers
from samplers.impon import weight_frobenius_norm

from . import io, provenance
from .config import RunSpec
from .data import DeviceData, load_splits
from .errors import UserError
from .optim import build_optimizer, lr_at

ITER_COLUMNS = ["iteration", "epoch", "loss", "lr", "backprops", "forwards"]
EPOCH_COLUMNS = ["epoch", "iteration", "train_loss", "test_loss", "test_acc", "backprops",
                 "forwards", "train_seconds", "eval_seconds", "diag_forwards", "diag_seconds"]
CHECKPOINT = "checkpoint.pt"


def derive_seed(seed: int, epoch: int, stream: str) -> int:
    """Independent seed per (run seed, epoch, stream): order, augmentation and init never
    share a generator, and epoch e's streams do not depend on how epoch e-1 ended."""
    digest = hashlib.sha256(f"{seed}/{epoch}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def resolve_device(name: str) -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"--device {name!r}: expected cpu, cuda, cuda:N or auto")
    return torch.device(name)


@dataclass
class Counters:
    """Host-side counts (shapes are host-known, so counting never syncs)."""

    iteration: int = 0
    backprops: int = 0
    forwards: int = 0


@dataclass
class RunResult:
    status: str
    error: Optional[str] = None
    epochs_done: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Everything one run needs, built once; ``run()`` trains to the end (or resumes)."""

    def __init__(self, spec: RunSpec, run_dir: Path, *, data_root: Path, download: bool,
                 device: torch.device, progress: bool = False) -> None:
        self.spec, self.run_dir, self.device, self.progress = spec, Path(run_dir), device, progress
        train, test, self.info = load_splits(spec["dataset"], data_root, download, spec["subset"])
        b = spec["batch_size"]
        if b > self.info.n_train:
            raise UserError(f"batch_size: {b} is larger than the training set of "
                            f"{spec['dataset']} ({self.info.n_train} examples); lower batch_size")
        flip = spec["augment"]["flip"]
        self.cuda = device.type == "cuda"
        self.data = DeviceData(train, test, self.info, device,
                               crop_padding=spec["augment"]["crop_padding"],
                               flip=None if flip == "auto" else bool(flip),
                               channels_last=self.cuda and spec["channels_last"])
        self.steps_per_epoch = self.info.n_train // b
        self.total_steps = self.steps_per_epoch * spec["epochs"]

        with torch.random.fork_rng(devices=[]):  # init from our own seed, global RNG untouched
            torch.manual_seed(derive_seed(spec["seed"], 0, "init"))
            net = models.build(spec["model"]["name"], self.info.num_classes,
                               **{k: v for k, v in spec["model"].items() if k != "name"})
        net = net.to(device)
        if self.cuda and spec["channels_last"]:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.model = torch.compile(net) if (self.cuda and spec["compile"]) else net
        self.amp = self.cuda and spec["amp"] == "bf16"
        self.optimizer = build_optimizer(net.parameters(), spec["optimizer"])
        sampler_cfg = dict(spec["sampler"])
        self.sampler = samplers.build(sampler_cfg.pop("name"), **sampler_cfg)
        self.sampler_gen = torch.Generator(device=device)
        self.augment_gen = torch.Generator(device=device)
        # Diagnostics (IMPON's rho/precision) draw their views from their own stream and
        # are timed apart, so turning them on changes neither training nor its cost.
        self.diag_gen = torch.Generator(device=device)
        self._diag_timer = _SpanTimer(device)
        self._bn_buffers = [b for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                            for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
        self.ctx = samplers.StepContext(
            n_train=self.info.n_train, batch_size=b, device=device, generator=self.sampler_gen,
            labels=self.data.y_train, num_classes=self.info.num_classes,
            weight_norm_fn=lambda: weight_frobenius_norm(net), augment_fn=self._augment,
            score_fn=self._score, images_fn=self.data.train_images,
            diagnose_augment_fn=lambda idx: self.data.augment(idx, self.diag_gen),
            diagnose_score_fn=self._score_diagnostic, epochs=spec["epochs"],
            score_logits_fn=self._score_logits, train_aux_fn=self._train_aux_model)
        self.counters = Counters()
        self.epoch_rows: list[dict[str, Any]] = []
        self.iter_bytes = 0

    # --- what samplers may call -------------------------------------------------------
    def _augment(self, idx: torch.Tensor) -> torch.Tensor:
        return self.data.augment(idx, self.augment_gen)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _score(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """No-grad per-example losses in training mode (batch statistics, as the training
        forward would see them) with BatchNorm running statistics restored afterwards, so
        scoring (Selective Backprop, the oracle, IMPON diagnostics) never changes the model.
        Large banks are scored in chunks of ``eval_batch_size`` to bound memory."""
        return F.cross_entropy(self._score_logits(inputs), labels, reduction="none")

    def _score_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The logits behind :meth:`_score` (same train-mode forward, BN statistics restored)."""
        saved = [buf.clone() for buf in self._bn_buffers]
        chunk = self.spec["eval_batch_size"]
        with torch.no_grad(), self._autocast():
            logits = torch.cat([self.model(inputs[i:i + chunk]).float()
                                for i in range(0, inputs.shape[0], chunk)])
        for buf, old in zip(self._bn_buffers, saved):
            buf.copy_(old)
        return logits

    def _train_aux_model(self, train_idx: torch.Tensor, score_idx: torch.Tensor, *, epochs: int,
                         batch_size: int, lr: float, weight_decay: float,
                         generator: torch.Generator) -> torch.Tensor:
        """Backend of ``StepContext.train_aux_model`` (RHO-LOSS's irreducible-loss model).

        A fresh model of this run's architecture and width, initialised, shuffled and
        augmented from seeds drawn from ``generator`` (the sampler's stream, so the run
        stays deterministic and the training streams are untouched), trained with AdamW
        in train mode, then evaluated in eval mode on the un-augmented ``score_idx``.
        Reads two seeds back to the host: once per run, not per step.
        """
        seeds = torch.randint(0, 2**62, (2,), generator=generator, device=generator.device).tolist()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seeds[0])
            aux = models.build(self.spec["model"]["name"], self.info.num_classes,
                               **{k: v for k, v in self.spec["model"].items() if k != "name"})
        aux = aux.to(self.device)
        if self.cuda and self.spec["channels_last"]:
            aux = aux.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(aux.parameters(), lr=lr, weight_decay=weight_decay)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seeds[1])
        aux.train()
        n = int(train_idx.shape[0])
        for _ in range(epochs):
            order = train_idx[torch.randperm(n, generator=gen, device=self.device)]
            for s in range(0, n, batch_size):
                idx = order[s:s + batch_size]
                with self._autocast():
                    out = aux(self.data.augment(idx, gen))
                loss = F.cross_entropy(out.float(), self.data.y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        aux.eval()
        chunk = self.spec["eval_batch_size"]
        images = self.data.x_train
        out_losses = []
        with torch.no_grad(), self._autocast():
            for s in range(0, int(score_idx.shape[0]), chunk):
                idx = score_idx[s:s + chunk]
                x = self.data._finish(images[idx])
                out_losses.append(F.cross_entropy(aux(x).float(), self.data.y_train[idx],
                                                  reduction="none"))
        if not out_losses:
            return torch.zeros(0, device=self.device)
        return torch.cat(out_losses)

    def _score_diagnostic(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with self._diag_timer:
            return self._score(inputs, labels)

    # --- one epoch --------------------------------------------------------------------
    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def train_step(self, lr: float) -> torch.Tensor:
        """One optimisation step on the sampler's next batch; returns the batch's mean loss
        as a 0-dim device tensor. Never synchronises with the host (tested under
        ``torch.cuda.set_sync_debug_mode("error")`` when CUDA is present)."""
        c = self.counters
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.sampler.next_batch(self.ctx)
        inputs = batch.inputs if batch.inputs is not None else self._augment(batch.idx)
        labels = self.data.y_train[batch.idx]
        with self._autocast():
            logits = self.model(inputs)
        losses = F.cross_entropy(logits.float(), labels, reduction="none")
        if batch.weights is None:
            loss = losses.mean()
        elif batch.weight_mode == "mean":   # e.g. IS weights 1/(B p_i): divide by b, not sum(w)
            loss = (batch.weights * losses).mean()
        else:
            loss = (batch.weights * losses).sum() / batch.weights.sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        detached = losses.detach()
        # p(true class) = exp(-CE): exact, and costs no second softmax.
        self.sampler.observe(batch.idx, detached, torch.exp(-detached))
        if self.sampler.wants_logits:
            self.sampler.observe_logits(batch.idx, logits.detach().float())
        n = int(batch.idx.shape[0])  # a host-known shape: no sync
        c.iteration += 1
        c.backprops += n
        c.forwards += n
        return detached.mean()

    def begin_epoch(self, epoch: int) -> None:
        """Reseed every stream from (seed, epoch) and let the sampler prepare the epoch."""
        seed = self.spec["seed"]
        self.sampler_gen.manual_seed(derive_seed(seed, epoch, "sampler"))
        self.augment_gen.manual_seed(derive_seed(seed, epoch, "augment"))
        self.diag_gen.manual_seed(derive_seed(seed, epoch, "diagnostics"))
        self._diag_timer.reset()
        self.net.train()
        self.sampler.start_epoch(epoch, self.ctx)

    def train_epoch(self, epoch: int) -> tuple[list[str], dict[str, Any]]:
        spec, c = self.spec, self.counters
        t0 = time.perf_counter()   # start_epoch's work (e.g. RHO-LOSS's IL model) is a cost
        self.begin_epoch(epoch)
        steps = self.sampler.epoch_steps(epoch, self.ctx, self.steps_per_epoch)
        loss_buf = torch.zeros(steps, device=self.device)
        lrs, backprops, forwards = [], [], []
        base_lr = spec["optimizer"]["lr"]
        for i in range(steps):
            position = schedule_position(epoch, i, steps, self.steps_per_epoch)
            lr = lr_at(position, self.total_steps, self.steps_per_epoch, base_lr, spec["schedule"])
            loss_buf[i] = self.train_step(lr)
            lrs.append(lr)
            backprops.append(c.backprops + self.ctx.backprops)
            forwards.append(c.forwards + self.ctx.forwards)
        self._sync()
        diag_seconds = self._diag_timer.seconds()
        train_seconds = time.perf_counter() - t0 - diag_seconds
        losses_host = loss_buf.tolist()  # the one read-back of the epoch's losses
        rows = []
        bad = None
        first_it = c.iteration - steps + 1
        for i, value in enumerate(losses_host):
            rows.append(f"{first_it + i},{epoch},{value!r},{lrs[i]!r},{backprops[i]},{forwards[i]}\n")
            if bad is None and not math.isfinite(value):
                bad = i
                break
        stats = {"train_seconds": train_seconds, "diag_seconds": diag_seconds, "bad": bad,
                 "steps": steps,
                 "train_loss": math.fsum(losses_host) / len(losses_host) if bad is None else math.nan}
        return rows, stats

    def evaluate(self) -> tuple[float, float, float]:
        """(test_loss, test_acc, seconds) on the whole test split, eval mode, large batches."""
        self._sync()
        t0 = time.perf_counter()
        self.net.eval()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        with torch.no_grad(), self._autocast():
            for x, y in self.data.test_batches(self.spec["eval_batch_size"]):
                logits = self.model(x).float()
                loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
                correct += (logits.argmax(1) == y).sum()
        self.net.train()
        n = self.info.n_test
        test_loss, test_acc = loss_sum.item() / n, correct.item() / n
        return test_loss, test_acc, time.perf_counter() - t0

    # --- files --------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def _epoch_row(self, epoch: int, train_loss: float, test: tuple[float, float, float],
                   train_seconds: float, diag_seconds: float = 0.0) -> dict[str, Any]:
        c = self.counters
        row = {"epoch": epoch, "iteration": c.iteration, "train_loss": train_loss,
               "test_loss": test[0], "test_acc": test[1], "backprops": c.backprops + self.ctx.backprops,
               "forwards": c.forwards + self.ctx.forwards, "train_seconds": train_seconds,
               "eval_seconds": test[2], "diag_forwards": self.ctx.diag_forwards,
               "diag_seconds": diag_seconds}
        if epoch > 0:
            row.update(self.sampler.epoch_metrics())
        return row

    def _write_epochs_csv(self) -> None:
        cols = list(EPOCH_COLUMNS)
        for row in self.epoch_rows:
            cols += [k for k in row if k not in cols]

        def fmt(v: Any) -> str:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return ""
            return repr(v) if isinstance(v, float) else str(v)

        lines = [",".join(cols) + "\n"]
        lines += [",".join(fmt(row.get(k)) for k in cols) + "\n" for row in self.epoch_rows]
        io.write_text(self.run_dir / "epochs.csv", "".join(lines))

    def save_checkpoint(self, epoch: int) -> None:
        state = {
            "epoch": epoch,
            "counters": vars(self.counters).copy(),
            "ctx_forwards": self.ctx.forwards,
            "ctx_diag_forwards": self.ctx.diag_forwards,
            "ctx_backprops": self.ctx.backprops,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "epoch_rows": self.epoch_rows,
            "iter_bytes": self.iter_bytes,
            "run_id": self.spec.run_id,
        }
        io.atomic_write(self.ckpt_path, lambda f: torch.save(state, f), mode="wb")

    def load_checkpoint(self) -> int:
        state = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        if state.get("run_id") != self.spec.run_id:
            raise UserError(f"{self.ckpt_path}: checkpoint belongs to run {state.get('run_id')}, "
                            f"not {self.spec.run_id}; move it away to start this run afresh")
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.counters = Counters(**state["counters"])
        self.ctx.forwards = state["ctx_forwards"]
        self.ctx.diag_forwards = state.get("ctx_diag_forwards", 0)
        self.ctx.backprops = state.get("ctx_backprops", 0)
        self.epoch_rows = state["epoch_rows"]
        self.iter_bytes = state["iter_bytes"]
        io.truncate(self.run_dir / "iterations.csv", self.iter_bytes)
        self._write_epochs_csv()
        return state["epoch"]

    # --- the run ----------------------------------------------------------------------
    def run(self, on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> RunResult:
        spec = self.spec
        iter_path = self.run_dir / "iterations.csv"
        if self.ckpt_path.exists() and iter_path.exists():
            start = self.load_checkpoint()
        else:
            header = ",".join(ITER_COLUMNS) + "\n"
            io.write_text(iter_path, header)
            self.iter_bytes = len(header.encode())
            self.epoch_rows = [self._epoch_row(0, math.nan, self.evaluate(), 0.0)]
            self._write_epochs_csv()
            self.save_checkpoint(0)
            start = 0
        if on_epoch:
            on_epoch(start, self.epoch_rows[-1])
        for epoch in range(start + 1, spec["epochs"] + 1):
            rows, stats = self.train_epoch(epoch)
            if stats["bad"] is not None:
                io.append_lines(iter_path, rows)
                it = self.counters.iteration - stats["steps"] + stats["bad"] + 1
                return RunResult("diverged", f"non-finite training loss at iteration {it} "
                                 f"(epoch {epoch})", epoch - 1)
            test = self.evaluate()
            self.iter_bytes = io.append_lines(iter_path, rows)
            self.epoch_rows.append(self._epoch_row(epoch, stats["train_loss"], test,
                                                   stats["train_seconds"], stats["diag_seconds"]))
            self._write_epochs_csv()
            self.save_checkpoint(epoch)
            if on_epoch:
                on_epoch(epoch, self.epoch_rows[-1])
        return RunResult("done", None, spec["epochs"])


def schedule_position(epoch: int, step: int, steps: int, default: int) -> float | int:
    """Where step ``step`` of ``steps`` in ``epoch`` sits on a schedule of ``default`` steps
    per epoch: ``(epoch - 1) * default + step * default / steps``.

    Why by epoch fraction: a sampler that shortens epochs (InfoBatch) would otherwise end
    the run before the schedule ends. InfoBatch's reference (examples/cifar_example.py)
    rebuilds its OneCycleLR at every epoch start with that epoch's length and position
    ``epoch * len(loader)``, i.e. it too places each step by its fraction of the epoch,
    so the schedule spans the run's real steps and reaches its end at the last one. With
    ``steps == default`` this is the plain iteration count (unchanged for every sampler
    that keeps the default epoch length).
    """
    if steps == default:
        return (epoch - 1) * default + step
    return (epoch - 1) * default + step * default / steps


class _SpanTimer:
    """Sums the time spent inside ``with timer:`` blocks over an epoch without syncing.

    On CUDA each block records a pair of events and the host reads them once, at
    ``seconds()`` (after the epoch's one synchronisation); on CPU work is synchronous, so
    ``perf_counter`` is exact. Used to keep diagnostic forwards out of ``train_seconds``.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.reset()

    def reset(self) -> None:
        self._events: list[tuple[Any, Any]] = []
        self._host = 0.0
        self._t0 = 0.0

    def __enter__(self) -> "_SpanTimer":
        if self.cuda:
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            self._events.append((start, None))
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events[-1] = (self._events[-1][0], end)
        else:
            self._host += time.perf_counter() - self._t0

    def seconds(self) -> float:
        """Total seconds inside blocks since ``reset`` (call after a device sync)."""
        return self._host + sum(s.elapsed_time(e) for s, e in self._events) / 1000.0


def _run_json(spec: RunSpec, status: str, error: str | None, info: Any, device: torch.device,
              started: str, seconds: float | None) -> dict[str, Any]:
    return {
        "run_id": spec.run_id, "status": status, "error": error, "spec": spec.to_dict(),
        "dataset": info.to_dict() if info is not None else {"name": spec["dataset"]},
        "versions": provenance.versions(), "device": provenance.device_name(device),
        "git": provenance.git_state(), "host": provenance.host(), "started": started,
        "ended": None if status == "running" else dt.datetime.now(dt.timezone.utc).isoformat(),
        "seconds": seconds,
    }


def train_one(spec: RunSpec, run_dir: Path, *, data_root: Path, download: bool = True,
              device: str | torch.device = "auto", progress: bool = False,
              on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> RunResult:
    """Train ``spec`` into ``run_dir`` (resuming from its checkpoint if there is one).

    Raises UserError for bad input before anything in ``run_dir`` is touched. Any other
    exception marks the run ``failed`` in run.json (with the error) and is re-raised.
    """
    run_dir = Path(run_dir)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    problem = io.check_writable(run_dir)
    if problem:
        raise UserError(f"results folder {run_dir}: {problem}; choose another with --results DIR")
    trainer = Trainer(spec, run_dir, data_root=Path(data_root), download=download, device=dev,
                      progress=progress)
    run_dir.mkdir(parents=True, exist_ok=True)
    io.write_yaml(run_dir / "config.yaml", spec.to_dict())
    started = dt.datetime.now(dt.timezone.utc).isoformat()
    previous = run_dir / "run.json"
    if previous.exists():
        try:
            started = io.read_json(previous).get("started") or started
        except ValueError:
            pass
    t0 = time.perf_counter()
    io.write_json(previous, _run_json(spec, "running", None, trainer.info, dev, started, None))
    try:
        result = trainer.run(on_epoch)
    except BaseException as e:  # record, then let the caller decide (the matrix goes on)
        status = "failed"
        io.write_json(previous, _run_json(spec, status, f"{type(e).__name__}: {e}", trainer.info,
                                          dev, started, time.perf_counter() - t0))
        raise
    io.write_json(previous, _run_json(spec, result.status, result.error, trainer.info, dev,
                                      started, time.perf_counter() - t0))
    return result
