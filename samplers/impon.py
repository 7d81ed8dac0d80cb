"""IMPON: an online linear model predicts each example's loss; train on the bank's top-b.

Every iteration a bank of N distinct training examples is drawn uniformly at random, each
gets the context ``c_i = [x_i ; ||W||_F ; 1]`` (``x_i`` a cached per-example feature
vector, ``||W||_F`` the Frobenius norm of the deep model's weight matrices, 1 a bias), the
predicted loss is ``c_i . w``, and the batch is the b highest (``select: highest``) or b
lowest (``select: lowest``, the paper's IMPONwLowScores) predictions. After the training
step the b *observed* training losses (no extra forward) update ``w`` by one SGD step on
``0.5 * mean((c_i . w - loss_i)^2)``.

Note on ``||W||_F``: it is one number shared by the whole bank, so it adds the same amount
to every prediction and never changes the ranking (hence never the batch). It is there so
the regression can follow the *level* of the loss as the network trains: without it the
bias alone would have to track the drifting mean loss.

With N == b the batch is the whole bank, so IMPON reduces exactly to uniform sampling of b
distinct examples; with ``w = 0`` (the initial value) all predictions tie, and ties also
give a uniformly random batch (see ``samplers.bank.select_positions``).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from .bank import (BankTraits, check_bank_fits, check_bank_size, check_select, draw_bank,
                   precision_at_b, select_positions, spearman_rho)
from .base import FEATURE_KINDS, Batch, Cost, Sampler, StepContext
from .registry import register
from .traits import ArmStyle, DiagnosticColumn, DiagnosticFigure, PerfRow, PlotTraits

RESET_RULES = ("epoch", "never")
#: Only ``zeros`` is offered: it is the paper's choice, and it makes the first batch of
#: every epoch (with ``reset: epoch``) a uniformly random one.
INIT_RULES = ("zeros",)


def weight_frobenius_norm(module: nn.Module) -> Tensor:
    """``||W||_F`` over all parameters with >= 2 dims (conv kernels and linear matrices).

    Biases and BatchNorm scales (1-dim) are left out: the norm is meant to summarise the
    size of the learned weight matrices, which weight decay shrinks and training grows.
    Returns a 0-dim tensor on the parameters' device, without a device->host sync.
    """
    weights = [p.detach() for p in module.parameters() if p.dim() >= 2]
    if not weights:
        raise ValueError("module has no parameter with >= 2 dims to take ||W||_F of")
    with torch.no_grad():
        norms = torch._foreach_norm(weights)  # one fused launch per dtype/device on CUDA
        return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


@register("impon")
class Impon(BankTraits, Sampler):
    """IMPON (see module docstring). Parameters:

    ``bank_size`` N: examples scored per iteration (N >= batch size).
    ``lr``: learning rate of the linear loss model's SGD step.
    ``features``: ``pixels`` | ``pooled`` | ``label`` | ``pooled+label`` (``x_i``).
    ``reset``: ``epoch`` (w back to init at each epoch start) | ``never``.
    ``select``: ``highest`` | ``lowest`` predicted losses.
    ``init``: ``zeros`` (the initial w).
    ``diagnose_every`` K: every K-th iteration (counted over the whole run, 0 = off)
    score the whole bank with true losses
    (``ctx.score_diagnostic``: N forwards counted in ``diag_forwards``, not in the
    method's ``forwards``) and log the Spearman correlation of predicted vs
    true losses and precision@b of the batch vs the true top-b (bottom-b for ``lowest``),
    as per-epoch means in the columns ``impon_spearman`` and ``impon_precision_at_b``.
    Iterations where the predictions are all equal (e.g. right after a reset to zeros)
    have no defined rank correlation and are left out of the Spearman mean only. The
    true losses are those of freshly augmented views, like the training losses the model
    learns from. Diagnosing never changes training: it scores after selecting, and the
    suite's trainer draws the diagnostic views from a generator of their own (a test
    checks that iterations.csv is identical with diagnostics on and off).
    """

    test_variants = {"low-never-diag": {"select": "lowest", "reset": "never",
                                        "features": "pooled+label", "diagnose_every": 2}}
    # vermillion, the method under study; its ablation (lowest scores) pink, at the
    # baselines' lr dark red, both purple
    plot = PlotTraits(
        colour="#D55E00", report_rank=0,
        arms={"impon": ArmStyle("#D55E00", 150), "impon_low": ArmStyle("#CC78BC", 160),
              "impon_lr0.1": ArmStyle("#9E1B32", 170), "impon_low_lr0.1": ArmStyle("#7B3294", 180)},
        diagnostics=(DiagnosticFigure(
            "impon", "IMPON loss predictor vs the true bank losses", "IMPON loss predictor",
            "no run logged impon_spearman (set sampler.diagnose_every > 0)",
            (DiagnosticColumn("impon_spearman", "Spearman ρ(predicted, true loss)", "0",
                              "ρ = 0 (no rank information)", "ρ = 0"),
             DiagnosticColumn("impon_precision_at_b", "precision@b of the selected batch",
                              "batch_size / sampler.bank_size",
                              "chance b/N (random batch from the bank)", "b/N = {y:.3g}"))),))

    @classmethod
    def perf_rows(cls, n_train: Optional[int] = None,
                  batch_size: Optional[int] = None) -> dict[str, PerfRow]:
        # selection (dot products over the bank) must be cheap next to the step it saves
        return {"impon": PerfRow({"select": "highest"}, step_target=True, efficiency_target=True),
                "impon_low": PerfRow({"select": "lowest"}, step_target=True)}

    @classmethod
    def test_params(cls, n_train: int, batch_size: int) -> dict[str, Any]:
        return {**super().test_params(n_train, batch_size), "lr": 1e-2}

    def cost(self, *, n_train: int, batch_size: int, epochs: int) -> Cost:
        # the prediction is dot products (negligible); diagnostics score the bank
        diag = self.bank_size / self.diagnose_every if self.diagnose_every else 0.0
        return Cost(forwards_per_step=diag)

    def __init__(self, bank_size: int = 200, lr: float = 1e-6, features: str = "pixels",
                 reset: str = "epoch", select: str = "highest", init: str = "zeros",
                 diagnose_every: int = 0) -> None:
        check_bank_size(bank_size)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (0 <= lr < float("inf")):
            raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
        _check_choice("features", features, FEATURE_KINDS)
        _check_choice("reset", reset, RESET_RULES)
        check_select(select)
        _check_choice("init", init, INIT_RULES)
        if (isinstance(diagnose_every, bool) or not isinstance(diagnose_every, int)
                or diagnose_every < 0):
            raise ValueError(f"diagnose_every must be an integer >= 0 (0 = off), "
                             f"got {diagnose_every!r}")
        self.bank_size = bank_size
        self.lr = float(lr)
        self.features = features
        self.reset = reset
        self.select = select
        self.init = init
        self.diagnose_every = diagnose_every

        self.w: Optional[Tensor] = None          # (d + 2,) weights of [x ; ||W||_F ; 1]
        self._pending: Optional[Tensor] = None   # contexts of the batch awaiting observe
        self._iteration = 0                      # iterations so far (all epochs)
        self._zero_diagnostics()

    # -- the linear model -------------------------------------------------------------
    def _initial_w(self, dim: int, device: torch.device) -> Tensor:
        return torch.zeros(dim, dtype=torch.float32, device=device)

    def contexts(self, ctx: StepContext, idx: Tensor, wnorm: Tensor) -> Tensor:
        """``[x_i ; ||W||_F ; 1]`` rows for ``idx`` (len(idx), d + 2)."""
        x = ctx.features(self.features).index_select(0, idx)
        k = x.shape[0]
        extra = torch.stack([wnorm.to(x.dtype), torch.ones((), dtype=x.dtype, device=x.device)])
        return torch.cat([x, extra.expand(k, 2)], dim=1)

    def predict(self, ctx: StepContext, idx: Tensor, wnorm: Tensor) -> Tensor:
        """Predicted losses ``c_i . w`` for ``idx`` (only these rows are touched)."""
        assert self.w is not None
        x = ctx.features(self.features).index_select(0, idx)
        d = x.shape[1]
        return x @ self.w[:d] + (wnorm.to(x.dtype) * self.w[d] + self.w[d + 1])

    # -- Sampler interface --------------------------------------------------------------
    def start_epoch(self, epoch: int, ctx: StepContext) -> None:
        check_bank_fits(self.bank_size, ctx.batch_size, ctx.n_train)
        dim = ctx.features(self.features).shape[1] + 2
        if self.w is None or self.reset == "epoch":
            self.w = self._initial_w(dim, ctx.device)
        elif self.w.shape[0] != dim:
            raise ValueError(f"loaded w has {self.w.shape[0]} entries, features "
                             f"{self.features!r} need {dim}")
        self._pending = None
        self._zero_diagnostics(ctx.device)

    def next_batch(self, ctx: StepContext) -> Batch:
        if self.w is None:
            raise RuntimeError("start_epoch must be called before next_batch")
        b = ctx.batch_size
        check_bank_fits(self.bank_size, b, ctx.n_train)
        bank = draw_bank(ctx.n_train, self.bank_size, ctx.generator, ctx.device)
        wnorm = ctx.weight_norm().detach()   # read once, at selection time
        scores = self.predict(ctx, bank, wnorm)
        pos = select_positions(scores, b, self.select)
        idx = bank[pos]
        # The update in observe regresses on the contexts the selection saw.
        self._pending = self.contexts(ctx, idx, wnorm)
        self._iteration += 1
        if self.diagnose_every and self._iteration % self.diagnose_every == 0:
            self._diagnose(ctx, bank, scores, pos)
        return Batch(idx=idx)

    def observe(self, idx: Tensor, losses: Tensor, p_true: Tensor) -> None:
        if self._pending is None:
            raise RuntimeError("observe called without a preceding next_batch")
        c = self._pending
        if idx.shape[0] != c.shape[0]:
            raise ValueError(f"observe got {idx.shape[0]} losses for a batch of {c.shape[0]}")
        self.w = sgd_step(self.w, c, losses.to(c.dtype), self.lr)
        self._pending = None

    # -- diagnostics --------------------------------------------------------------------
    def _zero_diagnostics(self, device: torch.device | str = "cpu") -> None:
        z = torch.zeros((), dtype=torch.float64, device=device)
        self._rho_sum, self._rho_n, self._prec_sum = z.clone(), z.clone(), z.clone()
        self._prec_n = 0  # host int: how many iterations were diagnosed (known without sync)

    def _diagnose(self, ctx: StepContext, bank: Tensor, scores: Tensor, pos: Tensor) -> None:
        true = ctx.score_diagnostic(bank)
        rho = spearman_rho(scores, true)
        defined = torch.isfinite(rho)
        self._rho_sum = self._rho_sum + torch.where(defined, rho, torch.zeros_like(rho))
        self._rho_n = self._rho_n + defined.to(self._rho_n.dtype)
        self._prec_sum = self._prec_sum + precision_at_b(pos, true, ctx.batch_size, self.select)
        self._prec_n += 1

    def epoch_metrics(self) -> dict[str, float]:
        if not self.diagnose_every:
            return {}
        rho_n = float(self._rho_n)
        return {
            "impon_spearman": float(self._rho_sum) / rho_n if rho_n else float("nan"),
            "impon_precision_at_b": (float(self._prec_sum) / self._prec_n
                                     if self._prec_n else float("nan")),
        }

    # -- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        def clone(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.detach().clone()
        return {"w": clone(self.w), "pending": clone(self._pending),
                "iteration": self._iteration, "rho_sum": clone(self._rho_sum),
                "rho_n": clone(self._rho_n), "prec_sum": clone(self._prec_sum),
                "prec_n": self._prec_n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.w = state["w"]
        self._pending = state["pending"]
        self._iteration = int(state["iteration"])
        self._rho_sum, self._rho_n = state["rho_sum"], state["rho_n"]
        self._prec_sum, self._prec_n = state["prec_sum"], int(state["prec_n"])


def sgd_step(w: Tensor, contexts: Tensor, losses: Tensor, lr: float) -> Tensor:
    """One SGD step on ``0.5 * mean((contexts @ w - losses) ** 2)``; returns the new w.

    The gradient is ``contexts.T @ (contexts @ w - losses) / b``.
    """
    residual = contexts @ w - losses
    return w - lr * (contexts.t() @ residual) / contexts.shape[0]
