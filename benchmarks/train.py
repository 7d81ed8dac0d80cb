"""``train_one``: one run of a RunSpec, from data to ``results/<matrix>/<run_id>/``.

The loop keeps the GPU busy: data, augmentation, losses and counters stay on
the device, and the host reads them back once per epoch (``.tolist()`` of the epoch's loss
buffer, the evaluation sums). Nothing inside the step synchronises.

Crash safety: the run folder's files (CSV rows, the checkpoint of model, optimiser,
sampler state and counters) are written by :mod:`benchmarks.run_files`, which also puts
the folder back to the checkpoint on resume. Every random stream is reseeded from (seed,
epoch, stream name) at epoch start, so nothing else needs saving for an exact replay.
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

import samplers
from samplers.impon import weight_frobenius_norm

from . import faults, io, network, placement
from .aux_model import train_aux_model
from .config import RunSpec
from .data import DeviceData, load_run_data
from .errors import UserError
from .optim import build_optimizer, lr_at
from .run_files import CHECKPOINT, EPOCH_COLUMNS, ITER_COLUMNS, RunFiles  # noqa: F401 (re-exported)
from .run_files import RunFolderError, restart_hint
from .run_record import record_setup_failure, run_record
from .sinks import Sinks


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
                 device: torch.device, progress: bool = False,
                 data_placement: str = "auto") -> None:
        self.spec, self.run_dir, self.device, self.progress = spec, Path(run_dir), device, progress
        placement.check_requested(data_placement)
        train, test, val, self.info = load_run_data(spec["dataset"], data_root, download,
                                                    spec["subset"], spec["validation"],
                                                    spec["label_noise"])
        b = spec["batch_size"]
        if b > self.info.n_train:
            raise UserError(f"batch_size: {b} is larger than the training set of "
                            f"{spec['dataset']} ({self.info.n_train} examples); lower batch_size")
        bank = spec["sampler"].get("bank_size")
        if isinstance(bank, int) and bank > self.info.n_train:
            raise UserError(f"sampler.bank_size: {bank} is larger than the training set of "
                            f"{spec['dataset']} ({self.info.n_train} examples); lower bank_size")
        flip = spec["augment"]["flip"]
        self.cuda = device.type == "cuda"
        # Images on the device, or page-locked on the host and read in place when they
        # would crowd the device (benchmarks/placement.py); the same bytes either way.
        data_bytes = sum(int(s.x.nbytes) for s in (train, test, val) if s is not None)
        self.placement = placement.decide(data_placement, data_bytes, device)
        self.data = DeviceData(train, test, self.info, device,
                               crop_padding=spec["augment"]["crop_padding"],
                               flip=None if flip == "auto" else bool(flip),
                               channels_last=spec["channels_last"], val=val,
                               placement=self.placement.where)
        self.val_row: dict[str, float] = {}  # val_loss/val_acc of the last evaluate()
        # Label noise (benchmarks/noise.py): a device mask of the training examples whose
        # label is wrong. The trainer counts how many of the examples each epoch trained
        # on were noisy (epochs.csv ``noisy_frac``), so no sampler needs to know of noise;
        # counted on the device, read once per epoch with the epoch's losses.
        self._noisy = (None if train.clean_y is None else
                       torch.as_tensor(train.y != train.clean_y, device=device))
        self._noisy_seen = torch.zeros((), dtype=torch.int64, device=device)
        self._seen = 0
        self.steps_per_epoch, self.total_steps = planned_steps(self.info.n_train, b, spec)

        # init from our own seed (global RNG untouched); speed knobs: benchmarks/network.py
        self.net, self.model = network.build(spec, self.info.num_classes, device,
                                             derive_seed(spec["seed"], 0, "init"))
        net = self.net
        self.amp = spec["amp"] == "bf16"
        self.optimizer = build_optimizer(net.parameters(), spec["optimizer"])
        sampler_cfg = dict(spec["sampler"])
        self.sampler = samplers.build(sampler_cfg.pop("name"), **sampler_cfg)
        self._scorers()
        self.sampler_gen = torch.Generator(device=device)
        self.augment_gen = torch.Generator(device=device)
        # Diagnostics (IMPON's rho/precision) draw their views from their own stream and
        # are timed apart, so turning them on changes neither training nor its cost.
        self.diag_gen = torch.Generator(device=device)
        self._diag_timer = _SpanTimer(device)
        self.ctx = samplers.StepContext(
            n_train=self.info.n_train, batch_size=b, device=device, generator=self.sampler_gen,
            labels=self.data.y_train, num_classes=self.info.num_classes,
            weight_norm_fn=lambda: weight_frobenius_norm(net), augment_fn=self._augment,
            score_fn=self._score, images_fn=self.data.train_images,
            image_chunks_fn=self.data.train_image_chunks,
            score_eval_fn=self._score_eval, budget=spec["budget"],
            diagnose_augment_fn=lambda idx: self.data.augment(idx, self.diag_gen),
            diagnose_score_fn=self._score_diagnostic, epochs=spec["epochs"],
            score_logits_fn=self._score_logits, train_aux_fn=self._train_aux_model,
            score_update_fn=self._score_update, score_logits_eval_fn=self._score_logits_eval,
            plain_fn=self.data.plain)
        self.counters = Counters()
        self.files = RunFiles(self.run_dir, spec.run_id, self.info.fingerprint)
        faults.install(self)  # test-only stop points (IMPON_TEST_KILL_AT); a no-op otherwise

    # --- what samplers may call -------------------------------------------------------
    def _augment(self, idx: torch.Tensor) -> torch.Tensor:
        return self.data.augment(idx, self.augment_gen)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _scorers(self) -> None:
        """The scoring backends samplers call (``StepContext.score_fn`` and kin): no-grad
        forwards through ``samplers.score_fn``/``logits_fn`` -- the one implementation of
        the score modes, the same a user's own loop gets -- in the run's precision
        (autocast) and in chunks of ``eval_batch_size``.

        ``train`` (Selective Backprop's train variant, the oracle, IMPON diagnostics):
        batch statistics as the training forward would see them, BatchNorm running
        statistics restored afterwards, so scoring never changes the model.
        ``train_update``: the same forward keeping its BatchNorm update (RHO-LOSS's
        reference selection). ``eval``: running statistics, no update (Selective
        Backprop's reference scoring, ``net.eval()`` in ``lib/forwardproppers.py`` of the
        authors' code; upper-bound IS's presample).
        """
        chunk, amp = self.spec["eval_batch_size"], self._autocast
        self._score = samplers.score_fn(self.model, "train", chunk, autocast=amp)
        self._score_update = samplers.score_fn(self.model, "train_update", chunk, autocast=amp)
        self._score_eval = samplers.score_fn(self.model, "eval", chunk, autocast=amp)
        self._score_logits = samplers.logits_fn(self.model, "train", chunk, autocast=amp)
        self._score_logits_eval = samplers.logits_fn(self.model, "eval", chunk, autocast=amp)

    def _train_aux_model(self, train_idx: torch.Tensor, score_idx: torch.Tensor, **kw: Any) -> torch.Tensor:
        """Backend of ``StepContext.train_aux_model`` (benchmarks/aux_model.py)."""
        return train_aux_model(self.spec, self.data, self.info.num_classes, self.device,
                               self._autocast, train_idx, score_idx, **kw)

    def _score_diagnostic(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with self._diag_timer:
            return self._score(inputs, labels)

    # --- one epoch --------------------------------------------------------------------
    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def train_step(self, lr: float) -> torch.Tensor:
        """One optimisation step on the sampler's next batch; returns the batch's mean loss
        as a 0-dim device tensor. Never synchronises with the host, except a sampler's
        documented, counted syncs (Selective Backprop per scored chunk, upper-bound IS per
        step): checked on CPU by the op recorder of tests/test_sync.py for every sampler,
        and under ``torch.cuda.set_sync_debug_mode("error")`` when CUDA is present."""
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
        if self._noisy is not None:
            self._noisy_seen += self._noisy[batch.idx].sum()
        self._seen += n
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
        self._noisy_seen.zero_()
        self._seen = 0
        self.net.train()
        self.sampler.start_epoch(epoch, self.ctx)

    def epoch_steps(self, epoch: int) -> int:
        """Steps of ``epoch``: the sampler's ``epoch_steps`` hook (called after
        ``start_epoch``), given the budget-capped count as its default. A pure function of
        the sampler's state at the epoch start, so a resumed run replays the same counts."""
        steps = self.sampler.epoch_steps(epoch, self.ctx, self.steps_per_epoch)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"sampler {self.sampler.name!r}: epoch_steps returned {steps!r} "
                             f"for epoch {epoch}; expected an integer >= 1")
        return steps

    def train_epoch(self, epoch: int) -> tuple[list[str], dict[str, Any]]:
        spec, c = self.spec, self.counters
        t0 = time.perf_counter()   # start_epoch's work (e.g. RHO-LOSS's IL model) is a cost
        self.begin_epoch(epoch)
        steps = self.epoch_steps(epoch)
        loss_buf = torch.zeros(steps, device=self.device)
        lrs, backprops, forwards = [], [], []
        base_lr = spec["optimizer"]["lr"]
        for i in range(steps):
            position = schedule_position(epoch, i, steps, self.steps_per_epoch)
            lr = lr_at(position, self.total_steps, self.steps_per_epoch, base_lr,
                       spec["schedule"], epoch=epoch - 1)
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
        extra = {}
        if self._noisy is not None:  # examples trained on (with repeats) whose label is wrong
            extra["noisy_frac"] = int(self._noisy_seen.item()) / max(1, self._seen)
        stats = {"train_seconds": train_seconds, "diag_seconds": diag_seconds, "bad": bad,
                 "steps": steps, "extra": extra,
                 "train_loss": math.fsum(losses_host) / len(losses_host) if bad is None else math.nan}
        return rows, stats

    def evaluate(self) -> tuple[float, float, float]:
        """(test_loss, test_acc, seconds) on the whole test split, eval mode, large batches.

        With a validation split (``validation: N``) the same pass also scores it and leaves
        ``{"val_loss", "val_acc"}`` in ``self.val_row`` (epochs.csv columns); ``seconds``
        then covers both. Tuning reads only the val columns, never the test ones."""
        self._sync()
        t0 = time.perf_counter()
        self.net.eval()
        sums = {}
        bs = self.spec["eval_batch_size"]
        with torch.no_grad(), self._autocast():
            for split, batches in (("test", self.data.test_batches(bs)), ("val", self.data.val_batches(bs))):
                loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
                correct = torch.zeros((), device=self.device, dtype=torch.int64)
                for x, y in batches:
                    logits = self.model(x).float()
                    loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
                    correct += (logits.argmax(1) == y).sum()
                sums[split] = (loss_sum, correct)
        self.net.train()
        n = self.info.n_test
        test_loss, test_acc = sums["test"][0].item() / n, sums["test"][1].item() / n
        if self.data.n_val:
            nv = self.data.n_val
            self.val_row = {"val_loss": sums["val"][0].item() / nv, "val_acc": sums["val"][1].item() / nv}
        return test_loss, test_acc, time.perf_counter() - t0

    # --- files --------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.files.ckpt_path

    @property
    def epoch_rows(self) -> list[dict[str, Any]]:
        return self.files.epoch_rows

    def _epoch_row(self, epoch: int, train_loss: float, test: tuple[float, float, float],
                   train_seconds: float, diag_seconds: float = 0.0,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
        c = self.counters
        row = {"epoch": epoch, "iteration": c.iteration, "train_loss": train_loss,
               "test_loss": test[0], "test_acc": test[1], "backprops": c.backprops + self.ctx.backprops,
               "forwards": c.forwards + self.ctx.forwards, "train_seconds": train_seconds,
               "eval_seconds": test[2], "diag_forwards": self.ctx.diag_forwards,
               "diag_seconds": diag_seconds, **self.val_row, **(extra or {})}
        if epoch > 0:
            row.update(self.sampler.epoch_metrics())
        return row

    def training_state(self) -> dict[str, Any]:
        """What the checkpoint must hold of the training itself (the files add theirs)."""
        return {
            "counters": vars(self.counters).copy(),
            "ctx_forwards": self.ctx.forwards,
            "ctx_diag_forwards": self.ctx.diag_forwards,
            "ctx_backprops": self.ctx.backprops,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.counters = Counters(**state["counters"])
        self.ctx.forwards = state["ctx_forwards"]
        self.ctx.diag_forwards = state.get("ctx_diag_forwards", 0)
        self.ctx.backprops = state.get("ctx_backprops", 0)

    def save_checkpoint(self, epoch: int) -> None:
        self.files.save_checkpoint(epoch, self.training_state())

    def resume(self, state: dict[str, Any]) -> int:
        """Restore the checkpoint ``state`` (checked by ``files.resume_state``); its epoch."""
        try:
            self.load_training_state(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise RunFolderError(f"{self.run_dir}: {CHECKPOINT} does not fit this run's model, "
                                 f"optimizer or sampler ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}), "
                                 f"so it cannot resume exactly; {restart_hint(self.run_dir)}") from None
        self.files.resume(state)
        return state["epoch"]

    # --- the run ----------------------------------------------------------------------
    def run(self, on_epoch: Callable[[int, dict[str, Any]], None] | None = None) -> RunResult:
        spec = self.spec
        files = self.files
        state = files.resume_state(self.device)
        if state is not None:
            start = self.resume(state)
        else:
            files.start()
            files.add_epoch(self._epoch_row(0, math.nan, self.evaluate(), 0.0))
            self.save_checkpoint(0)
            start = 0
        if on_epoch:
            on_epoch(start, self.epoch_rows[-1])
        for epoch in range(start + 1, spec["epochs"] + 1):
            rows, stats = self.train_epoch(epoch)
            if stats["bad"] is not None:
                files.append_unfinished(rows)
                it = self.counters.iteration - stats["steps"] + stats["bad"] + 1
                return RunResult("diverged", f"non-finite training loss at iteration {it} "
                                 f"(epoch {epoch})", epoch - 1)
            test = self.evaluate()
            files.append_iterations(rows)
            files.add_epoch(self._epoch_row(epoch, stats["train_loss"], test,
                                            stats["train_seconds"], stats["diag_seconds"],
                                            stats["extra"]))
            self.save_checkpoint(epoch)
            if on_epoch:
                on_epoch(epoch, self.epoch_rows[-1])
        files.check_complete(spec["epochs"])  # rows that do not add up are never "done"
        return RunResult("done", None, spec["epochs"])


def planned_steps(n_train: int, batch_size: int, spec: RunSpec) -> tuple[int, int]:
    """(steps per epoch, total steps the schedule spans) under ``spec["budget"]``.

    Steps per epoch = ``int(n_train * budget / batch_size)``, the reference's expression
    (``max_it`` in ``train_CrossEntropy``, ``utils_train/utils_train.py`` of
    EricArazo/ImportanceSampling; ``int`` truncates, i.e. floor), which at budget 1 is the
    suite's ``n_train // batch_size``. The per-iteration schedule spans ``epochs`` times
    that (the reference's ``linearLR_per_it`` spaces ``args.epoch * max_it`` values).

    Why the plan and not the steps actually run: a sampler's ``epoch_steps`` is asked only
    at each epoch's start, so counts that differ from the default (InfoBatch's pruned
    epochs) are not known in advance; ``schedule_position`` places each step of such an
    epoch by its fraction of the epoch, so the schedule still ends at the run's last step.
    """
    steps = int(n_train * spec["budget"] / batch_size)
    if steps < 1:
        raise UserError(f"budget: {spec['budget']} of {n_train} examples at batch_size "
                        f"{batch_size} leaves no full batch per epoch; raise budget to at "
                        f"least {batch_size / n_train:.4g}")
    return steps, steps * spec["epochs"]


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


def train_one(spec: RunSpec, run_dir: Path, *, data_root: Path, download: bool = True,
              device: str | torch.device = "auto", progress: bool = False,
              on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
              log: tuple[str, ...] = (), data_placement: str = "auto") -> RunResult:
    """Train ``spec`` into ``run_dir`` (resuming from its checkpoint if there is one).

    Raises UserError for an unwritable ``run_dir`` before touching it. A failure while
    setting the run up (data, model, sampler; UserError or not) and any exception while
    training mark the run ``failed`` in run.json (with the error) and are re-raised;
    :class:`RunFolderError` (a folder that cannot resume exactly, or different data) does
    so before the run.json of the interrupted run loses its data provenance.
    """
    run_dir = Path(run_dir)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    problem = io.check_writable(run_dir)
    if problem:
        raise UserError(f"results folder {run_dir}: {problem}; choose another with --results DIR")
    try:
        trainer = Trainer(spec, run_dir, data_root=Path(data_root), download=download, device=dev,
                          progress=progress, data_placement=data_placement)
    except Exception as e:
        record_setup_failure(spec, run_dir, dev, e)
        raise
    run_dir.mkdir(parents=True, exist_ok=True)
    io.write_yaml(run_dir / "config.yaml", spec.to_dict())
    placed = trainer.placement.to_dict()
    started = dt.datetime.now(dt.timezone.utc).isoformat()
    previous = run_dir / "run.json"
    before: dict[str, Any] = {}
    if previous.exists():
        try:
            loaded = io.read_json(previous)
            before = loaded if isinstance(loaded, dict) else {}
            started = before.get("started") or started
        except ValueError:
            pass
    t0 = time.perf_counter()
    recorded = before.get("dataset") if isinstance(before.get("dataset"), dict) else {}
    try:  # before run.json is rewritten, so the provenance of the rows so far survives
        trainer.files.resume_state(dev, recorded.get("fingerprint"))
    except RunFolderError as e:
        failed = run_record(spec, "failed", str(e), trainer.info, dev, started, 0.0, placed)
        io.write_json(previous, {**failed, "dataset": recorded or failed["dataset"]})
        raise
    io.write_json(previous, run_record(spec, "running", None, trainer.info, dev, started, None, placed))
    # --log sinks (benchmarks/sinks.py): fed from the checkpointed rows after each epoch
    sinks = Sinks(log, spec, run_dir, lambda: trainer.epoch_rows, trainer.files.iter_path, started)
    try:
        result = trainer.run(sinks.hook(on_epoch))
        sinks.close(result.status)
    except BaseException as e:  # record, then let the caller decide (the matrix goes on)
        sinks.abort()
        status = "failed"
        io.write_json(previous, run_record(spec, status, f"{type(e).__name__}: {e}", trainer.info,
                                          dev, started, time.perf_counter() - t0, placed))
        raise
    io.write_json(previous, run_record(spec, result.status, result.error, trainer.info, dev,
                                      started, time.perf_counter() - t0, placed))
    return result
