"""Choosing b examples out of a small random "data bank" by score, and judging that choice.

IMPON and the loss oracle share this: both draw a bank of N distinct training indices
uniformly at random every iteration, score it (predicted vs true losses) and train on the
top-b (or bottom-b) of it. Keeping the draw and the selection in one place guarantees the
oracle is a bound on *the same* selection rule IMPON uses, not on a slightly different one.

Everything here runs on the device without a device->host synchronisation.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

SELECT_RULES = ("highest", "lowest")


def check_select(select: str) -> None:
    """Raise a clear ``ValueError`` for a selection rule that does not exist."""
    if select not in SELECT_RULES:
        raise ValueError(f"unknown select {select!r}; choose one of {', '.join(SELECT_RULES)}")


def check_bank_size(bank_size: object) -> None:
    """``bank_size`` must be a positive int (bool is rejected: ``True`` is no bank size)."""
    if isinstance(bank_size, bool) or not isinstance(bank_size, int) or bank_size < 1:
        raise ValueError(f"bank_size must be an integer >= 1, got {bank_size!r}")


def check_bank_fits(bank_size: int, batch_size: int, n_train: int) -> None:
    """The bank must hold at least one batch and at most the whole training set."""
    if bank_size < batch_size:
        raise ValueError(
            f"bank_size {bank_size} < batch_size {batch_size}: the batch is chosen from the "
            f"bank, so the bank must hold at least one batch (bank_size == batch_size is "
            f"uniform sampling)")
    if bank_size > n_train:
        raise ValueError(
            f"bank_size {bank_size} > n_train {n_train}: the bank holds distinct training "
            f"examples, so it cannot be larger than the training set")


def draw_bank(n: int, bank_size: int, generator: torch.Generator,
              device: torch.device | str) -> Tensor:
    """``bank_size`` distinct indices of ``range(n)``, uniformly at random (int64, on device).

    Why a permutation prefix: it is exact (every N-subset equally likely, no duplicates)
    and a single device kernel without data-dependent shapes. Its O(n) cost (50k keys for
    CIFAR) is microseconds on a GPU and ~1 ms on a CPU core, far below a training step;
    exact O(N) methods (Floyd's algorithm, partial Fisher-Yates) are sequential loops that
    would cost more in Python than the whole permutation.
    """
    return torch.randperm(n, generator=generator, device=device)[:bank_size]


def select_positions(scores: Tensor, b: int, select: str) -> Tensor:
    """Positions (into ``scores``) of the b highest or lowest scores.

    Ties are broken by ``topk``'s fixed rule, which does not look at which example sits at
    a position; since the bank is in uniformly random order, a tie therefore still picks a
    uniformly random subset (this is why an all-zero predictor samples uniformly).
    """
    return torch.topk(scores, b, largest=(select == "highest"), sorted=False).indices


def average_ranks(x: Tensor) -> Tensor:
    """1-based ranks of ``x`` with ties sharing their average rank (as scipy's ``rankdata``)."""
    sorted_x = torch.sort(x).values
    lo = torch.searchsorted(sorted_x, x, right=False)  # how many are strictly smaller
    hi = torch.searchsorted(sorted_x, x, right=True)   # how many are smaller or equal
    return (lo + hi + 1).to(torch.float64) / 2


def spearman_rho(pred: Tensor, true: Tensor) -> Tensor:
    """Spearman rank correlation of two 1-D tensors (0-dim device tensor, no sync).

    NaN when either side is constant (rank correlation is undefined then), as in scipy;
    callers average only the defined values.
    """
    rp = average_ranks(pred)
    rt = average_ranks(true)
    rp = rp - rp.mean()
    rt = rt - rt.mean()
    return (rp * rt).sum() / torch.sqrt((rp * rp).sum() * (rt * rt).sum())


def precision_at_b(selected: Tensor, true_scores: Tensor, b: int, select: str) -> Tensor:
    """Fraction of the selected bank positions that are among the true top-b (bottom-b).

    ``selected``: b positions into the bank; ``true_scores``: true losses of the bank.
    """
    truth = select_positions(true_scores, b, select)
    hit = (selected[:, None] == truth[None, :]).any(dim=1)  # b x b compare: tiny, no sync
    return hit.to(torch.float64).mean()


class BankTraits:
    """The traits every bank-based sampler shares (mix in before ``Sampler``): its
    ``bank_size`` may be swept by a matrix bank axis, the tests run it with a bank of two
    batches, and a bank that cannot hold a batch or exceeds the data is refused early."""

    has_bank = True
    bank_size: int

    @classmethod
    def test_params(cls, n_train: int, batch_size: int) -> dict[str, Any]:
        return {"bank_size": 2 * batch_size}

    def check_sizes(self, *, n_train: int, batch_size: int, epochs: int) -> list[str]:
        try:
            check_bank_fits(self.bank_size, batch_size, n_train)
        except ValueError as exc:
            return [f"{exc}; change bank_size or batch_size"]
        return []
