"""p-SGD and c-SGD (Chang et al. 2017, "Active Bias", as implemented by Arazo et al. 2021).

Both keep, for every training example, the running mean ``s_i`` of ``1 - p_i[y_i]`` over
every time it was trained on (``p`` from the training forward itself, so no extra pass;
reference: ``update_sampling_metrics`` in ``utils_train/utils_train.py`` of the public
EricArazo/ImportanceSampling code). At each epoch start they turn ``s`` into sampling
probabilities (``select_samples`` in the same file):

- unseen examples get ``max(s)`` over the seen ones (1 if nothing was seen yet), so a new
  example is treated as at least as useful as the most uncertain one;
- ``q = s`` (p-SGD: prefer badly-predicted examples) or ``q = s (1 - s)`` (c-SGD: prefer
  uncertain ones; here ``s(1-s)`` is the variance proxy of a Bernoulli with mean ``s``);
- ``q <- q + mean(q)`` smooths, so no example's probability is ever far below average;
- ``P = q / sum(q)`` (uniform if ``q`` is all zero).

The epoch's draw, two variants (parameter ``replacement``):

- ``replacement: false`` (default, the reference rule): ``int(budget * n)`` *distinct*
  examples drawn from ``P`` without replacement (``select_samples``:
  ``np.random.choice(..., samples_to_keep, p=curr_prob, replace=False)`` with
  ``samples_to_keep = int(len(curr_prob) * args.budget)``), then visited in a uniformly
  random order (``prepare_loader`` serves them through a ``SubsetRandomSampler`` with
  ``drop_last=True``). The first epoch, where nothing is seen yet, is therefore a plain
  random permutation (of an ``int(budget * n)`` subset), and at budget 1 *every* epoch
  visits each example exactly once: uniform sampling in another order, which is Arazo et
  al.'s point (importance sampling only matters under a budget).
- ``replacement: true``: our variant, not the reference: ``steps * b`` indices drawn from
  ``P`` with replacement (``steps = floor(budget * n / b)``), so hard examples can repeat
  within an epoch and easy ones may not appear at all. The suite's matrices before the
  budget axis existed used it (their run ids keep meaning it: it is written in them).

Either way the trainer asks for ``floor(budget * n / b)`` batches (Arazo's ``max_it``);
they are served in consecutive chunks of b of the epoch's order. If more are asked for
than the order holds, a fresh draw follows.

Running sums use ``index_add_``, so an example drawn twice in a batch counts twice. On
CUDA that is an atomic float add whose summation order may vary between runs (enable
``torch.use_deterministic_algorithms`` for bit-identical GPU runs); on CPU it is exact.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from .base import Batch, Cost, Sampler, StepContext
from .registry import register
from .traits import ArmStyle, DiagnosticColumn, DiagnosticFigure, PerfRow, PlotTraits


class RunningMeanSampler(Sampler):
    """Shared machinery; subclasses only say how running means become weights ``q``."""

    test_variants = {"replacement": {"replacement": True}}
    #: the figure both p-SGD and c-SGD log into (``psgd_ess_frac``)
    ESS_FIGURE = DiagnosticFigure(
        "psgd", "p-SGD / c-SGD effective sample size of P", "p/c-SGD effective sample size",
        "no p_sgd / c_sgd run",
        (DiagnosticColumn("psgd_ess_frac", "effective sample size 1/ΣP² ÷ n", "1",
                          "1 = uniform sampling", "uniform"),))

    @classmethod
    def perf_rows(cls, n_train: int | None = None, batch_size: int | None = None) -> dict[str, PerfRow]:
        # drawing by running means must be cheap next to the step
        return {cls.name: PerfRow(step_target=True, efficiency_target=True)}

    def cost(self, *, n_train: int, batch_size: int, epochs: int) -> Cost:
        return Cost()          # scores come from the training forward: no extra pass

    def __init__(self, replacement: bool = False) -> None:
        if not isinstance(replacement, bool):
            raise ValueError(f"replacement must be true or false, got {replacement!r}")
        self.replacement = replacement
        self._sums: Optional[Tensor] = None     # sum of (1 - p_true) per example
        self._counts: Optional[Tensor] = None   # times trained on
        self._order: Optional[Tensor] = None    # this epoch's drawn indices
        self._pos = 0
        self._ess: Optional[Tensor] = None      # effective sample size of P / n

    def weights(self, s: Tensor) -> Tensor:  # pragma: no cover - interface
        """Unnormalised sampling weights ``q`` from running means ``s`` (all filled in)."""
        raise NotImplementedError

    def running_means(self) -> Tensor:
        """``s`` with unseen examples set to max over seen (1 if none seen)."""
        assert self._sums is not None and self._counts is not None
        seen = self._counts > 0
        s = self._sums / self._counts.clamp(min=1)
        fill = torch.where(seen, s, torch.full_like(s, -float("inf"))).max()
        fill = torch.where(torch.isfinite(fill), fill, torch.ones_like(fill))
        return torch.where(seen, s, fill)

    def probabilities(self) -> Tensor:
        """``P`` of the next epoch's draw (no sync)."""
        q = self.weights(self.running_means())
        q = q + q.mean()
        total = q.sum()
        return torch.where(total > 0, q / total, torch.full_like(q, 1.0 / q.shape[0]))

    def start_epoch(self, epoch: int, ctx: StepContext) -> None:
        if self._sums is None:
            self._sums = torch.zeros(ctx.n_train, dtype=torch.float32, device=ctx.device)
            self._counts = torch.zeros(ctx.n_train, dtype=torch.float32, device=ctx.device)
        self._draw(ctx)

    def _draw(self, ctx: StepContext) -> None:
        p = self.probabilities()
        self._ess = 1.0 / (p * p).sum() / p.shape[0]
        if self.replacement:  # our variant: as many draws as the epoch trains
            n_draw = int(ctx.n_train * ctx.budget / ctx.batch_size) * ctx.batch_size
            self._order = torch.multinomial(p, max(n_draw, ctx.batch_size), replacement=True,
                                            generator=ctx.generator)
        else:  # reference: int(budget * n) distinct examples, visited in random order
            k = max(int(ctx.n_train * ctx.budget), 1)
            # Gumbel-top-k (Efraimidis & Spirakis 2006; Kool et al. 2019): the k largest
            # log p_i + Gumbel_i are distributed exactly as k sequential draws without
            # replacement from P, with no host sync (torch.multinomial without
            # replacement validates its input with an .item() on CUDA).
            u = torch.rand(p.shape, generator=ctx.generator, device=p.device,
                           dtype=torch.float64).clamp_min_(1e-300)
            keys = torch.log(p.double()) - torch.log(-torch.log(u))
            chosen = torch.topk(keys, k, sorted=False).indices
            shuffle = torch.randperm(k, generator=ctx.generator, device=chosen.device)
            self._order = chosen[shuffle]
        self._pos = 0

    def next_batch(self, ctx: StepContext) -> Batch:
        if self._order is None:
            raise RuntimeError("start_epoch must be called before next_batch")
        b = ctx.batch_size
        if self._pos + b > self._order.shape[0]:  # more steps than one epoch: draw again
            self._draw(ctx)
        idx = self._order[self._pos:self._pos + b]
        self._pos += b
        return Batch(idx=idx)

    def observe(self, idx: Tensor, losses: Tensor, p_true: Tensor) -> None:
        if self._sums is None or self._counts is None:
            raise RuntimeError("start_epoch must be called before observe")
        self._sums.index_add_(0, idx, (1.0 - p_true).to(self._sums.dtype))
        self._counts.index_add_(0, idx, torch.ones_like(self._counts[:1]).expand(idx.shape[0]))

    def epoch_metrics(self) -> dict[str, float]:
        """``psgd_ess``: effective sample size 1/sum(P^2) of this epoch's P (n = uniform,
        1 = all mass on one example); ``psgd_ess_frac``: the same over n, comparable across
        datasets. One host read per epoch, at the epoch's end."""
        if self._ess is None or self._sums is None:
            return {}
        frac = float(self._ess)
        return {"psgd_ess": frac * self._sums.shape[0], "psgd_ess_frac": frac}

    def state_dict(self) -> dict[str, Any]:
        def clone(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.detach().clone()
        return {"sums": clone(self._sums), "counts": clone(self._counts),
                "order": clone(self._order), "pos": self._pos, "ess": clone(self._ess)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._sums, self._counts = state["sums"], state["counts"]
        self._order, self._pos, self._ess = state["order"], int(state["pos"]), state["ess"]


@register("p_sgd")
class PSGD(RunningMeanSampler):
    """Prefer examples the model gets wrong: ``q = s``. Param ``replacement`` (false =
    the reference draw without replacement; true = our with-replacement variant)."""

    plot = PlotTraits(colour="#DE8F05", arms={"p_sgd": ArmStyle("#DE8F05", 90)},  # orange
                      diagnostics=(RunningMeanSampler.ESS_FIGURE,), report_rank=2)

    def weights(self, s: Tensor) -> Tensor:
        return s


@register("c_sgd")
class CSGD(RunningMeanSampler):
    """Prefer uncertain examples: ``q = s (1 - s)``. Param ``replacement`` (false =
    the reference draw without replacement; true = our with-replacement variant)."""

    plot = PlotTraits(colour="#8C5A2B", arms={"c_sgd": ArmStyle("#8C5A2B", 100)},  # brown
                      diagnostics=(RunningMeanSampler.ESS_FIGURE,), report_rank=2)

    def weights(self, s: Tensor) -> Tensor:
        return s * (1.0 - s)
