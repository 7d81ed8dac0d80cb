"""Loss oracle: IMPON's selection rule with a *perfect* loss predictor (a control arm).

Same bank as IMPON (N distinct examples drawn uniformly every iteration), but the scores
are the true per-example losses from a no-grad forward of the whole bank (``ctx.score``,
N forwards counted per step). It bounds what any loss predictor could gain with this
bank size, and shows what that costs in forwards. As with IMPON, the trainer augments the
chosen indices afresh for the training step: the oracle ranks *examples* (the thing IMPON
predicts), not the particular augmented views it happened to score.
"""
from __future__ import annotations

from typing import Any

from .bank import (BankTraits, check_bank_fits, check_bank_size, check_select, draw_bank,
                   select_positions)
from .base import Batch, Cost, Sampler, StepContext
from .registry import register
from .traits import ArmStyle, PlotTraits


@register("loss_oracle")
class LossOracle(BankTraits, Sampler):
    """``bank_size`` N (>= batch size), ``select``: ``highest`` | ``lowest`` true losses."""

    # black: the bound of a perfect loss predictor, not a method; last in legends
    plot = PlotTraits(colour="#000000", arms={"loss_oracle": ArmStyle("#000000", 190)})

    def cost(self, *, n_train: int, batch_size: int, epochs: int) -> Cost:
        return Cost(forwards_per_step=self.bank_size)   # the whole bank is scored

    def __init__(self, bank_size: int = 200, select: str = "highest") -> None:
        check_bank_size(bank_size)
        check_select(select)
        self.bank_size = bank_size
        self.select = select

    def start_epoch(self, epoch: int, ctx: StepContext) -> None:
        check_bank_fits(self.bank_size, ctx.batch_size, ctx.n_train)

    def next_batch(self, ctx: StepContext) -> Batch:
        check_bank_fits(self.bank_size, ctx.batch_size, ctx.n_train)
        bank = draw_bank(ctx.n_train, self.bank_size, ctx.generator, ctx.device)
        true = ctx.score(bank)
        return Batch(idx=bank[select_positions(true, ctx.batch_size, self.select)])

    def state_dict(self) -> dict[str, Any]:
        return {}  # stateless: every iteration's bank comes from ctx.generator
