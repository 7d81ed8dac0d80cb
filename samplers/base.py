"""The one interface every selection method implements, and what the trainer gives it.

Why a tiny interface: a sampler only decides *which* training indices form the next batch
and learns from the losses the trainer observed. Everything else (data, augmentation,
model, optimiser) stays in the training loop, so a researcher can drop any sampler into
their own loop by building a :class:`StepContext` (a few lines, see docs/own-loop.md).

Rules every sampler follows:
- ``next_batch`` and ``observe`` never force a device->host synchronisation (no
  ``.item()``, ``.cpu()``, ``bool(tensor)``, data-dependent shapes), so the GPU never waits
  on Python. A method that cannot avoid one declares it in its ``host_syncs`` trait
  (Selective Backprop: how many candidates it must score depends on its keep decisions;
  upper-bound IS: whether to presample depends on tau), and the sync tests hold it to it.
- All randomness comes from ``ctx.generator`` (never the global RNG); the trainer reseeds
  it from (seed, epoch) at every epoch start, so a run resumed from an epoch checkpoint
  replays exactly.
- Batches carry *global* training indices (int64, on ``ctx.device``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import torch
from torch import Tensor

from .traits import PerfRow, PlotTraits


@dataclass
class Batch:
    """What a sampler hands the trainer for one optimisation step.

    ``idx``: b global training indices (int64, on the device).
    ``inputs``: already-augmented inputs for ``idx`` (only samplers that scored views
    themselves, e.g. Selective Backprop, set it; otherwise the trainer augments ``idx``).
    ``weights``: optional per-example weights. ``weight_mode`` says how the trainer uses
    them: ``"normalized"`` (the default) minimises ``(weights * losses).sum() /
    weights.sum()``, a weighted mean; ``"mean"`` minimises ``(weights * losses).mean()``,
    the plain batch mean of the rescaled losses. Why both: importance-sampling weights
    (upper-bound IS) and InfoBatch's rescaling are only unbiased when the batch is divided
    by its size b, not by the sum of its weights (that is what their reference code does).
    """

    idx: Tensor
    inputs: Optional[Tensor] = None
    weights: Optional[Tensor] = None
    weight_mode: str = "normalized"


FEATURE_KINDS = ("pixels", "pooled", "label", "pooled+label")
#: How a scoring forward treats BatchNorm (see :meth:`StepContext.score`).
SCORE_MODES = ("train", "train_update", "eval")


@dataclass
class StepContext:
    """Everything a sampler may use, and nothing more.

    The trainer builds one per run. Outside the suite, build it from your own tensors:
    ``images`` is the *un-augmented, normalised* training set as float (N, C, H, W) on the
    device (only needed for IMPON's image features), ``augment`` maps indices to training
    inputs and ``score_fn`` returns per-example losses of given inputs without grad.
    """

    n_train: int
    batch_size: int
    device: torch.device
    generator: torch.Generator
    labels: Tensor
    num_classes: int
    weight_norm_fn: Callable[[], Tensor]
    augment_fn: Callable[[Tensor], Tensor]
    score_fn: Callable[[Tensor, Tensor], Tensor]  # (inputs, labels) -> per-example losses
    images_fn: Optional[Callable[[], Tensor]] = None
    #: ``score_fn`` with the model in eval mode (BatchNorm uses, and does not update, its
    #: running statistics): what Selective Backprop's reference scores with. ``None``:
    #: ``score(..., mode="eval")`` is an error rather than a silent train-mode score.
    score_eval_fn: Optional[Callable[[Tensor, Tensor], Tensor]] = None
    #: fraction f in (0, 1] of each epoch's examples/steps that may be trained (Arazo et
    #: al. 2021's budget; the trainer runs floor(f * n_train / batch_size) steps per epoch).
    #: Samplers that draw a whole epoch at its start size the draw by it.
    budget: float = 1.0
    #: ``score_fn`` for diagnostics only (defaults to ``score_fn``). The suite's trainer
    #: passes one that augments from its own generator and times itself, so measuring a
    #: sampler never changes the training stream or its cost figures.
    diagnose_augment_fn: Optional[Callable[[Tensor], Tensor]] = None
    diagnose_score_fn: Optional[Callable[[Tensor, Tensor], Tensor]] = None
    #: examples forwarded by ``score`` (selection cost), read and reset by the trainer.
    forwards: int = 0
    #: examples forwarded by ``score_diagnostic`` (measurement, not a cost of the method).
    diag_forwards: int = 0
    #: epochs of the whole run (InfoBatch needs it to know when to stop pruning); None if
    #: the loop does not say.
    epochs: Optional[int] = None
    #: ``score_logits`` backend: inputs -> (b, classes) logits, no grad (upper-bound IS).
    score_logits_fn: Optional[Callable[[Tensor], Tensor]] = None
    #: ``score_fn`` in training mode *keeping* the BatchNorm running-statistics update of
    #: the scoring forward (what RHO-LOSS's reference does). ``None``: ``score(...,
    #: mode="train_update")`` is an error rather than a silently different forward.
    score_update_fn: Optional[Callable[[Tensor, Tensor], Tensor]] = None
    #: ``score_logits_fn`` with the model in eval mode (upper-bound IS's reference scores in
    #: Keras learning phase 0). ``None``: ``score_logits(..., mode="eval")`` is an error.
    score_logits_eval_fn: Optional[Callable[[Tensor], Tensor]] = None
    #: indices -> their *un-augmented*, normalised training inputs (a full-data loss
    #: recomputation, e.g. online batch selection's). ``None``: ``images_fn()[idx]``.
    plain_fn: Optional[Callable[[Tensor], Tensor]] = None
    #: the training set as :meth:`features` reads it, chunk by chunk: an iterator of
    #: ``(start, images)`` with ``images`` normalised, un-augmented float (n, C, H, W) on the
    #: device, in order. Builds features without a full float copy of the set (4x its uint8
    #: images), which data too large for the device cannot afford. ``None``: ``images_fn()``.
    image_chunks_fn: Optional[Callable[[], Iterable[tuple[int, Tensor]]]] = None
    #: trains a fresh auxiliary model (RHO-LOSS's irreducible-loss model); see
    #: :meth:`train_aux_model` for the contract.
    train_aux_fn: Optional[Callable[..., Tensor]] = None
    #: examples back-propagated by the sampler itself (e.g. training an auxiliary model),
    #: added by the trainer to its ``backprops`` column like ``forwards``.
    backprops: int = 0
    _features: dict = field(default_factory=dict, repr=False)

    def weight_norm(self) -> Tensor:
        """‖W‖_F of the deep model (a 0-dim device tensor; no sync)."""
        return self.weight_norm_fn()

    def augment(self, idx: Tensor) -> Tensor:
        """Training inputs (augmented, normalised) for ``idx``."""
        return self.augment_fn(idx)

    def score(self, idx: Tensor, inputs: Optional[Tensor] = None, mode: str = "train") -> Tensor:
        """Per-example loss of ``idx`` under the current model, no grad, counted.

        ``inputs`` defaults to ``augment(idx)``; pass them to score exact views.
        ``mode`` (see :data:`SCORE_MODES`): ``"train"`` uses ``score_fn`` (batch
        statistics, BatchNorm running statistics restored afterwards: the suite's own
        choice); ``"train_update"`` uses ``score_update_fn`` (batch statistics, running
        statistics updated by the forward, as a plain train-mode forward does);
        ``"eval"`` uses ``score_eval_fn`` (running statistics, nothing updated).
        ``len(idx)`` is a host-known shape, so counting costs no sync.
        """
        fn = self._backend(mode, {"train": self.score_fn, "train_update": self.score_update_fn,
                                  "eval": self.score_eval_fn}, "score")
        if inputs is None:
            inputs = self.augment(idx)
        self.forwards += int(idx.shape[0])
        with torch.no_grad():
            return fn(inputs, self.labels[idx]).float()

    def score_logits(self, idx: Tensor, inputs: Optional[Tensor] = None, mode: str = "train") -> Tensor:
        """Logits (float, (len(idx), classes)) of ``idx`` under the current model, no grad,
        counted in ``forwards`` like :meth:`score`; ``mode`` ``"train"`` (BatchNorm
        statistics restored) or ``"eval"``."""
        fn = self._backend(mode, {"train": self.score_logits_fn, "eval": self.score_logits_eval_fn},
                           "score_logits")
        if inputs is None:
            inputs = self.augment(idx)
        self.forwards += int(idx.shape[0])
        with torch.no_grad():
            return fn(inputs).float()

    @staticmethod
    def _backend(mode: str, backends: dict[str, Optional[Callable]], what: str) -> Callable:
        if mode not in backends:
            raise ValueError(f"{what} mode must be one of {', '.join(backends)}, got {mode!r}")
        fn = backends[mode]
        if fn is None:
            field_name = {("score", "train"): "score_fn", ("score", "train_update"): "score_update_fn",
                          ("score", "eval"): "score_eval_fn", ("score_logits", "train"): "score_logits_fn",
                          ("score_logits", "eval"): "score_logits_eval_fn"}[(what, mode)]
            raise ValueError(f"{what}(mode={mode!r}) needs a StepContext with {field_name}")
        return fn

    def plain(self, idx: Tensor) -> Tensor:
        """The un-augmented, normalised training inputs of ``idx`` (no crop, no flip)."""
        if self.plain_fn is not None:
            return self.plain_fn(idx)
        if self.images_fn is None:
            raise ValueError("un-augmented inputs need a StepContext with plain_fn or images_fn")
        return self.images_fn()[idx]

    def train_aux_model(self, train_idx: Tensor, score_idx: Tensor, *, epochs: int,
                        batch_size: int, lr: float, weight_decay: float) -> Tensor:
        """Train a fresh model of the run's architecture on ``train_idx`` and return the
        per-example losses of ``score_idx`` under it (un-augmented inputs, eval mode).

        The backend (``train_aux_fn``) trains with AdamW for ``epochs`` passes over
        ``train_idx`` in shuffled batches of ``batch_size`` (augmented like the training
        data; last partial batch kept), drawing its initialisation, order and augmentation
        from ``generator``. Its cost is the method's: ``epochs * len(train_idx)`` examples
        forwarded and back-propagated plus ``len(score_idx)`` forwarded, counted here.
        """
        if self.train_aux_fn is None:
            raise ValueError("this sampler trains an auxiliary model: give StepContext a train_aux_fn")
        losses = self.train_aux_fn(train_idx, score_idx, epochs=epochs, batch_size=batch_size,
                                   lr=lr, weight_decay=weight_decay, generator=self.generator)
        n_train = int(train_idx.shape[0])
        self.forwards += epochs * n_train + int(score_idx.shape[0])
        self.backprops += epochs * n_train
        return losses

    def score_diagnostic(self, idx: Tensor) -> Tensor:
        """Per-example loss of freshly augmented views of ``idx``, for diagnostics only.

        Why separate from :meth:`score`: a diagnostic (IMPON's rank correlation, say) must
        not change what it measures. Its augmentation comes from ``diagnose_augment_fn``
        (the trainer's own diagnostics generator), so the training augmentation stream is
        the same with diagnostics on or off, and its forwards go to ``diag_forwards``, not
        to the method's selection cost ``forwards``.
        """
        augment = self.diagnose_augment_fn or self.augment_fn
        score = self.diagnose_score_fn or self.score_fn
        inputs = augment(idx)
        self.diag_forwards += int(idx.shape[0])
        with torch.no_grad():
            return score(inputs, self.labels[idx]).float()

    def features(self, kind: str = "pixels") -> Tensor:
        """Per-example feature matrix (n_train, d), built once and cached on the device.

        ``pixels``: the normalised, un-augmented image flattened; ``pooled``: 4x4 average
        pooled image flattened; ``label``: one-hot class; ``pooled+label``: both.
        """
        if kind not in FEATURE_KINDS:
            raise ValueError(f"unknown features {kind!r}; choose one of {', '.join(FEATURE_KINDS)}")
        if kind not in self._features:
            self._features[kind] = self._build_features(kind)
        return self._features[kind]

    def _build_features(self, kind: str) -> Tensor:
        parts = []
        if kind in ("pixels", "pooled", "pooled+label"):
            if self.image_chunks_fn is None and self.images_fn is None:
                raise ValueError(f"features={kind!r} needs images: give StepContext an "
                                 "images_fn or an image_chunks_fn")
            chunks = (self.image_chunks_fn() if self.image_chunks_fn is not None
                      else [(0, self.images_fn())])
            out: Optional[Tensor] = None
            for start, images in chunks:   # per example, so chunking changes no value
                images = images.float()
                if kind != "pixels":
                    images = torch.nn.functional.avg_pool2d(images, kernel_size=4)
                rows = images.reshape(images.shape[0], -1)
                if out is None:
                    out = torch.empty((self.n_train, rows.shape[1]), dtype=rows.dtype,
                                      device=self.device)
                out[start:start + rows.shape[0]] = rows
            assert out is not None
            parts.append(out)
        if kind in ("label", "pooled+label"):
            parts.append(torch.nn.functional.one_hot(self.labels, self.num_classes).float().to(self.device))
        return parts[0].contiguous() if len(parts) == 1 else torch.cat(parts, dim=1).contiguous()


@dataclass(frozen=True)
class Cost:
    """What a method costs beyond plain training, in examples: the unit every estimate of
    the suite (``--dry-run``, ``make perf``) converts to time with a measured step.

    ``forwards_per_step``: forward-only examples per optimiser step beyond the b trained
    (selection forwards: a scored bank, candidates, a presample). ``step_fraction``: the
    fraction of the default ``n // b`` steps per epoch the method trains, averaged over
    the run (InfoBatch's pruned epochs). ``forwards_per_run`` / ``backprops_per_run``:
    extra forward-only / trained examples once per run (an auxiliary model's training,
    full-data recomputations), outside the steps.
    """

    forwards_per_step: float = 0.0
    step_fraction: float = 1.0
    forwards_per_run: float = 0.0
    backprops_per_run: float = 0.0


@dataclass(frozen=True)
class HostSyncs:
    """The device->host synchronisations a method documents (see its module docstring),
    which the sync harness (``tests/sync_harness.py``) allows and no more.

    Op names are those the harness records (``nonzero``, ``_local_scalar_dense``, ...).
    ``per_step``: exact ops per ``next_batch``+``observe``; ``per_score_call``: exact ops
    per scoring forward the step made (a method whose number of forwards depends on its
    draws); ``per_epoch``: exact ops per ``start_epoch``; ``once_per_run_setup``: the
    first ``start_epoch`` may sync freely (e.g. training an auxiliary model once).
    ``test_params``: parameters the sync test needs so the syncing path runs at all.
    """

    per_step: dict[str, int] = field(default_factory=dict)
    per_score_call: dict[str, int] = field(default_factory=dict)
    per_epoch: dict[str, int] = field(default_factory=dict)
    once_per_run_setup: bool = False
    test_params: dict[str, Any] = field(default_factory=dict)


class Sampler:
    """Base class: override ``next_batch`` (and ``observe`` if the method learns).

    Subclasses keep all their state in tensors/ints listed by ``state_dict`` so that a
    checkpoint taken at any step resumes identically.

    One method, one file: besides its rule, a sampler class declares what the rest of the
    suite needs to know about it, and nothing outside ``samplers/`` keeps a per-method
    table: :meth:`cost` (read by ``--dry-run``; a sampler without one is refused there,
    never estimated as free), :meth:`test_params` and :attr:`test_variants` (every
    registered sampler runs through the common determinism, resume and sync tests with
    them; none is skipped), :attr:`host_syncs` (what the sync harness allows),
    :attr:`plot` (colours, diagnostic figures and report note: what the runner records in
    run.json for the plots) and :meth:`perf_rows` (what ``make perf`` times and holds to
    its targets). See :mod:`samplers.traits`.
    """

    #: Named extra configurations for the common tests (label -> parameters), e.g. a
    #: non-default mode worth testing for determinism and resume.
    test_variants: dict[str, dict[str, Any]] = {}
    #: The documented host syncs of this method (none by default).
    host_syncs: HostSyncs = HostSyncs()
    #: How figures and the report show this method (neutral by default: a colour from a
    #: hash of the arm name, no diagnostic figure, no note).
    plot: PlotTraits = PlotTraits()

    #: name in the registry (set by ``@register``)
    name: str = ""
    #: True for samplers whose ``bank_size`` may be swept by a matrix bank axis.
    has_bank: bool = False
    #: True if the sampler wants the training forward's logits (``observe_logits``).
    wants_logits: bool = False
    #: The version of the method's rule. Bump it when a change makes the same parameters
    #: train differently: it enters the run-id hash (when not 1), so runs made under the
    #: old rule are never mistaken for done runs of the new one.
    revision: int = 1

    def cost(self, *, n_train: int, batch_size: int, epochs: int) -> Optional[Cost]:
        """This configuration's cost model for a run of ``epochs`` epochs on ``n_train``
        examples in batches of ``batch_size`` (a pure function of the parameters).

        ``None`` (the default) means "not declared": ``--dry-run`` then refuses the
        matrix instead of estimating the method as free. Declare ``Cost()`` for a method
        that truly costs nothing beyond training."""
        return None

    def check_sizes(self, *, n_train: int, batch_size: int, epochs: int) -> list[str]:
        """What cannot work with this configuration on ``n_train`` training examples in
        batches of ``batch_size`` (one sentence each, saying how to fix it). The runner
        asks before anything is trained, so a run never fails an epoch in for a size that
        was known at the start. Default: nothing."""
        return []

    @classmethod
    def test_params(cls, n_train: int, batch_size: int) -> dict[str, Any]:
        """Parameters that make this sampler run on a tiny test set of ``n_train``
        examples in batches of ``batch_size`` (the common tests use 40/4 and 96/16).
        Default: the registry defaults (no parameters)."""
        return {}

    @classmethod
    def perf_rows(cls, n_train: Optional[int] = None,
                  batch_size: Optional[int] = None) -> dict[str, PerfRow]:
        """The rows ``make perf`` and ``benchmarks.sampler_cost`` time for this method
        (label -> parameters and targets), for data of ``n_train`` examples in batches of
        ``batch_size`` when known. Default: one row, the registry defaults, no target."""
        return {cls.name: PerfRow()}

    def start_epoch(self, epoch: int, ctx: StepContext) -> None:
        """Called before the first ``next_batch`` of every epoch (epochs count from 1)."""

    def epoch_steps(self, epoch: int, ctx: StepContext, default: int) -> int:
        """Optimizer steps in `epoch` (called after start_epoch); default = the
        trainer's budget-capped count."""
        return default

    def next_batch(self, ctx: StepContext) -> Batch:  # pragma: no cover - interface
        raise NotImplementedError

    def observe(self, idx: Tensor, losses: Tensor, p_true: Tensor) -> None:
        """Training losses and true-class probabilities of the batch just trained on."""

    def observe_logits(self, idx: Tensor, logits: Tensor) -> None:
        """The training forward's logits (detached, float) of the batch just trained on;
        called after ``observe``, only for samplers with ``wants_logits = True``."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def epoch_metrics(self) -> dict[str, float]:
        """Extra ``epochs.csv`` columns for the epoch that just ended (may sync: once/epoch)."""
        return {}
