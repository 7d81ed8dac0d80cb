"""Loss oracle: the top-b (bottom-b) true losses of IMPON's bank, N counted forwards/step."""
from __future__ import annotations

import pytest
import torch

from samplers.bank import draw_bank
from sampler_fixtures import build, make_toy, reseed, train_step


@pytest.mark.parametrize("select", ["highest", "lowest"])
def test_batch_is_top_b_of_the_bank_by_true_loss(select):
    toy = make_toy(n=40, b=4)
    oracle = build("loss_oracle", bank_size=10, select=select)
    reseed(toy.ctx, 0, 1)
    oracle.start_epoch(1, toy.ctx)
    for _ in range(5):
        g = torch.Generator().set_state(toy.ctx.generator.get_state())
        bank = draw_bank(40, 10, g, "cpu")     # the bank IMPON would draw too
        order = torch.argsort(toy.losses[bank], descending=(select == "highest"))
        batch = train_step(oracle, toy)
        assert set(batch.idx.tolist()) == set(bank[order[:4]].tolist())
        assert batch.inputs is None            # the trainer augments the chosen examples


def test_scores_the_whole_bank_every_step():
    toy = make_toy(n=40, b=4)
    oracle = build("loss_oracle", bank_size=10)
    reseed(toy.ctx, 0, 1)
    oracle.start_epoch(1, toy.ctx)
    for step in range(1, 4):
        train_step(oracle, toy)
        assert toy.ctx.forwards == 10 * step
    assert [len(inputs) for inputs, _ in toy.scored] == [10, 10, 10]


def test_bank_equal_to_batch_scores_but_keeps_the_whole_bank():
    toy = make_toy(n=40, b=4)
    oracle = build("loss_oracle", bank_size=4)
    reseed(toy.ctx, 0, 1)
    oracle.start_epoch(1, toy.ctx)
    g = torch.Generator().set_state(toy.ctx.generator.get_state())
    assert set(train_step(oracle, toy).idx.tolist()) == set(draw_bank(40, 4, g, "cpu").tolist())


def test_invalid_parameters_and_small_bank():
    with pytest.raises(ValueError, match="bank_size must be an integer >= 1"):
        build("loss_oracle", bank_size=0)
    with pytest.raises(ValueError, match="unknown select 'top'"):
        build("loss_oracle", select="top")
    toy = make_toy(n=40, b=4)
    with pytest.raises(ValueError, match="bank_size 2 < batch_size 4: "):
        build("loss_oracle", bank_size=2).start_epoch(1, toy.ctx)
