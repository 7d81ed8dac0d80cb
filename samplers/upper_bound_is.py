"""Upper-bound importance sampling (Katharopoulos & Fleuret, ICML 2018, "Not All Samples
Are Created Equal"), as in their reference code idiap/importance-sampling.

Rules (file references are to that repository):

- Score of an example = the norm of the loss gradient with respect to the last layer's
  output, the paper's upper bound (up to a constant that cancels in the normalisation) of
  the full gradient norm. ``importance_sampling/model_wrappers.py`` computes ``gnorm`` as
  the gradient of the per-sample loss w.r.t. the last layer's pre-softmax output; for
  softmax cross-entropy that is ``||softmax(z) - onehot(y)||_2``, computed here in closed
  form from the logits of a no-grad forward (``ctx.score_logits``, counted).
- ``score_mode``: the presample is scored in **inference mode** by default (``eval``:
  BatchNorm uses its running statistics and updates nothing), as the reference does:
  ``OracleWrapper.score_batch`` in ``importance_sampling/model_wrappers.py`` feeds Keras
  learning phase 0. So the tau updates of importance-sampling steps come from inference-
  mode scores too. ``train`` is ours (the suite's earlier rule): a train-mode forward
  with BatchNorm running statistics restored. Uniform steps update tau from the training
  forward (learning phase 1 in the reference's ``train_batch``) in both modes.
- Importance sampling step (``ModelSampler`` + ``BaseSampler.sample`` in
  ``importance_sampling/samplers.py``): presample ``B = int(presample * b)`` indices
  uniformly **with replacement**, score them, draw b positions with probability
  ``p_i = s_i / sum(s)`` with replacement, and weight each by ``w_i = 1 / (B p_i)``
  (``BiasedReweightingPolicy(k=1)`` in ``reweighting.py``: ``sum(s) / B / s_i``). The
  reference multiplies each loss by its weight and averages over the batch, so batches
  carry ``weight_mode="mean"``; then ``E[mean_b(w_i g_i)] = mean_B(g_i)``, the uniform
  gradient (tested). The trained views are the scored ones (``Batch.inputs``), as the
  reference trains on the presampled data it scored.
- When to sample by importance (``ConditionalStartSampler`` + ``VarianceReductionCondition``):
  ``tau`` is an exponential moving average (momentum 0.9, start 0) of
  ``1 / sqrt(1 - sum((g - u)^2) / sum(g^2))`` with ``g = s / sum(s)``, ``u = 1 / len(s)``.
  While ``tau <= tau_th`` the batch is b indices drawn uniformly with replacement, weight 1,
  no presampling, and ``tau`` is updated from the scores of that batch computed from the
  *training* forward's logits (``observe_logits``: no extra forward); once ``tau > tau_th``
  the step presamples and ``tau`` is updated from the B presample scores.
  ``tau_th = (B + 3b) / (3b)`` (eq. 29 of arXiv:1803.00942, computed so in
  ``training.py::ImportanceTraining.sampler``).

Defaults: ``presample`` 3.0 and ``tau_th`` None (= the formula) are those of
``ImportanceTraining.__init__``; momentum 0.9 that of ``VarianceReductionCondition``.

Synchronisation: the uniform-or-IS decision must be known on the host (it decides whether
B examples are forwarded at all), so every ``next_batch`` reads one boolean (``tau >
tau_th``) back: one tiny sync per step, documented here and counted in the epoch metric
``ubis_syncs``, like Selective Backprop's per-chunk sync. Scoring B every step to avoid it
would charge the uniform phase B forwards the reference never spends.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from .base import Batch, Cost, HostSyncs, Sampler, StepContext
from .registry import register
from .traits import ArmStyle, PlotTraits


def gradient_norm_bound(logits: Tensor, labels: Tensor) -> Tensor:
    """``||softmax(z) - onehot(y)||_2`` per row: the last-layer gradient norm of softmax CE."""
    p = torch.softmax(logits.float(), dim=1)
    # subtract 1 at the true class with scatter (F.one_hot validates labels with a host read)
    col = labels.unsqueeze(1)
    p = p.scatter(1, col, p.gather(1, col) - 1.0)
    return torch.linalg.vector_norm(p, dim=1)


def variance_reduction(scores: Tensor) -> Tensor:
    """The reference's per-batch variance-reduction estimate (0-dim tensor, no sync).

    ``1 / sqrt(1 - sum((g - u)^2) / sum(g^2))``, ``g = s / sum(s)``, ``u = 1 / len(s)``;
    all-zero scores give g = u, i.e. 1 (no reduction), as in the reference.
    """
    s = scores.float()
    u = 1.0 / s.shape[0]
    total = s.sum()
    g = torch.where(total > 0, s / torch.where(total > 0, total, torch.ones_like(total)),
                    torch.full_like(s, u))
    return 1.0 / torch.sqrt(1.0 - ((g - u) ** 2).sum() / (g ** 2).sum())


@register("upper_bound_is")
class UpperBoundIS(Sampler):
    """``presample``: B / b (> 1); ``tau_th``: threshold on the smoothed variance
    reduction (None = (B + 3b) / (3b)); ``momentum``: of tau's moving average;
    ``score_mode``: BatchNorm in the presample's scoring forward (``eval`` = the reference).
    Epoch metrics: ``ubis_is_frac`` (fraction of steps that sampled by importance),
    ``ubis_tau`` (tau at epoch end) and ``ubis_syncs`` (host syncs, one per step)."""

    wants_logits = True

    revision = 2   # 2: presample scored in inference mode (the reference); 1: train mode

    # the uniform-or-IS decision reads tau back once per step (module docstring)
    host_syncs = HostSyncs(per_step={"_local_scalar_dense": 1})
    test_variants = {"always": {"tau_th": 0.0}, "always-train": {"tau_th": 0.0, "score_mode": "train"}}
    plot = PlotTraits(colour="#17BECF", arms={"upper_bound_is": ArmStyle("#17BECF", 130)})  # cyan

    def check_sizes(self, *, n_train: int, batch_size: int, epochs: int) -> list[str]:
        try:
            self.sizes(batch_size)
        except ValueError as exc:
            return [f"upper_bound_is: {exc}; raise presample"]
        return []

    def cost(self, *, n_train: int, batch_size: int, epochs: int) -> Cost:
        # an upper bound: importance sampling on at every step (B = presample * b scored)
        return Cost(forwards_per_step=self.sizes(batch_size)[0])

    def __init__(self, presample: float = 3.0, tau_th: Optional[float] = None,
                 momentum: float = 0.9, score_mode: str = "eval") -> None:
        if score_mode not in ("eval", "train"):
            raise ValueError(f"score_mode must be 'eval' (the reference) or 'train', got {score_mode!r}")
        self.score_mode = score_mode
        if isinstance(presample, bool) or not isinstance(presample, (int, float)) or not (
                1 < presample < float("inf")):
            raise ValueError(f"presample must be a finite number > 1 (B = presample * b), got {presample!r}")
        if tau_th is not None and (isinstance(tau_th, bool) or not isinstance(tau_th, (int, float))
                                   or not tau_th >= 0):
            raise ValueError(f"tau_th must be null (use (B + 3b) / (3b)) or a number >= 0, got {tau_th!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
        self.presample = float(presample)
        self.tau_th = None if tau_th is None else float(tau_th)
        self.momentum = float(momentum)
        self._tau: Optional[Tensor] = None
        self._labels: Optional[Tensor] = None
        self._is_steps = 0     # host counts (known after the per-step sync)
        self._steps = 0
        self._last_is = False

    def sizes(self, b: int) -> tuple[int, float]:
        """(B, tau_th) for batch size b."""
        big = int(self.presample * b)
        if big <= b:
            raise ValueError(f"presample {self.presample} x batch {b} = {big} is not more than the batch")
        th = (big + 3 * b) / (3 * b) if self.tau_th is None else self.tau_th
        return big, th

    def _update_tau(self, scores: Tensor) -> None:
        assert self._tau is not None
        self._tau = self.momentum * self._tau + (1 - self.momentum) * variance_reduction(scores)

    def start_epoch(self, epoch: int, ctx: StepContext) -> None:
        self.sizes(ctx.batch_size)
        if self._tau is None:
            self._tau = torch.zeros((), dtype=torch.float32, device=ctx.device)
        self._labels = ctx.labels
        self._is_steps = self._steps = 0

    def next_batch(self, ctx: StepContext) -> Batch:
        if self._tau is None:
            raise RuntimeError("start_epoch must be called before next_batch")
        b = ctx.batch_size
        big, th = self.sizes(b)
        self._labels = ctx.labels
        self._steps += 1
        self._last_is = bool(self._tau > th)     # the one documented sync per step
        if not self._last_is:
            idx = torch.randint(0, ctx.n_train, (b,), generator=ctx.generator, device=ctx.device)
            return Batch(idx=idx)
        self._is_steps += 1
        pre = torch.randint(0, ctx.n_train, (big,), generator=ctx.generator, device=ctx.device)
        inputs = ctx.augment(pre)
        scores = gradient_norm_bound(ctx.score_logits(pre, inputs, mode=self.score_mode),
                                     ctx.labels[pre])
        self._update_tau(scores)
        pos, weights = self.draw(scores, b, ctx.generator)
        return Batch(idx=pre[pos], inputs=inputs[pos], weights=weights, weight_mode="mean")

    @staticmethod
    def draw(scores: Tensor, b: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """b positions drawn with replacement with p ∝ scores, and weights 1 / (B p)."""
        big = scores.shape[0]
        total = scores.sum()
        p = torch.where(total > 0, scores / torch.where(total > 0, total, torch.ones_like(total)),
                        torch.full_like(scores, 1.0 / big))
        pos = torch.multinomial(p, b, replacement=True, generator=generator)
        return pos, 1.0 / (big * p[pos])

    def observe_logits(self, idx: Tensor, logits: Tensor) -> None:
        """Uniform steps update tau from the training forward's scores (as the reference)."""
        if self._tau is None or self._labels is None:
            raise RuntimeError("start_epoch must be called before observe_logits")
        if not self._last_is:
            self._update_tau(gradient_norm_bound(logits, self._labels[idx]))

    def epoch_metrics(self) -> dict[str, float]:
        if self._tau is None or not self._steps:
            return {}
        return {"ubis_is_frac": self._is_steps / self._steps, "ubis_tau": float(self._tau),
                "ubis_syncs": float(self._steps)}

    def state_dict(self) -> dict[str, Any]:
        return {"tau": None if self._tau is None else self._tau.detach().clone(),
                "is_steps": self._is_steps, "steps": self._steps, "last_is": self._last_is}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._tau = state["tau"]
        self._is_steps, self._steps = int(state["is_steps"]), int(state["steps"])
        self._last_is = bool(state["last_is"])
