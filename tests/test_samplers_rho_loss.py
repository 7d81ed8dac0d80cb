"""RHO-LOSS: holdout split, IL model trained once (counted), top-b reducible loss."""
from __future__ import annotations

import pytest
import torch

from samplers.rho_loss import holdout_mask
from sampler_fixtures import AUX_FACTOR, build, make_toy, reseed, run, train_step


def _started(toy, **params):
    s = build("rho_loss", **{"n_big": 8, "il_epochs": 3, **params})
    reseed(toy.ctx, 0, 1)
    s.start_epoch(1, toy.ctx)
    return s


def test_il_model_trained_once_on_the_odd_holdout_and_scores_the_even_half():
    toy = make_toy(n=40, b=4)
    s = _started(toy, il_batch_size=7, il_lr=0.01, il_weight_decay=0.0)
    assert len(toy.aux_calls) == 1
    train_idx, score_idx, kw = toy.aux_calls[0]
    assert torch.equal(train_idx, torch.arange(1, 40, 2)) and torch.equal(score_idx, torch.arange(0, 40, 2))
    assert (kw["epochs"], kw["batch_size"], kw["lr"], kw["weight_decay"]) == (3, 7, 0.01, 0.0)
    assert kw["generator"] is toy.ctx.generator
    il = s.irreducible_losses()
    torch.testing.assert_close(il[0::2], AUX_FACTOR * toy.losses[0::2])
    assert torch.isnan(il[1::2]).all()
    # cost: 3 epochs x 20 holdout examples forwarded + back-propagated, 20 IL scorings
    assert toy.ctx.forwards == 3 * 20 + 20 and toy.ctx.backprops == 3 * 20
    reseed(toy.ctx, 0, 2)
    s.start_epoch(2, toy.ctx)
    assert len(toy.aux_calls) == 1                    # computed once per run


def test_holdout_examples_are_never_trained_on():
    toy = make_toy(n=40, b=4)
    s = build("rho_loss", n_big=12, il_epochs=1)
    batches = run(s, toy, seed=0, epochs=3)
    idx = torch.cat([b.idx for b in batches])
    assert not holdout_mask(40)[idx].any() and len(idx) == 3 * 10 * 4


def test_batch_is_the_top_b_reducible_loss_of_the_scored_big_batch():
    toy = make_toy(n=40, b=4)
    s = _started(toy)
    # Make IL = 2 x loss: reducible = -loss, so RHO-LOSS must pick the LOWEST losses --
    # the opposite of loss ranking (shows the IL term is used).
    state = s.state_dict()
    state["il"][0::2] = 2 * toy.losses[0::2]
    s.load_state_dict(state)
    before = toy.ctx.forwards
    batch = s.next_batch(toy.ctx)
    assert toy.ctx.forwards - before == 8              # n_big counted forwards
    inputs, losses = toy.scored[-1]
    assert len(losses) == 8
    expected = set(torch.topk(-losses, 4).indices.tolist())
    got_views = {row.numpy().tobytes() for row in batch.inputs}
    assert got_views == {inputs[j].numpy().tobytes() for j in expected}   # trains on scored views
    assert not holdout_mask(40)[batch.idx].any()


@pytest.mark.parametrize("params,mode", [({}, "train_update"), ({"score_mode": "train"}, "train"),
                                         ({"score_mode": "eval"}, "eval")])
def test_candidates_are_scored_keeping_the_batchnorm_update_by_default(params, mode):
    """The reference scores in train mode and keeps the forward's BatchNorm update
    (OATML/RHO-Loss ``MultiModels.training_step``); restoring it is our named variant."""
    toy = make_toy(n=40, b=4)
    s = _started(toy, **params)
    s.next_batch(toy.ctx)
    assert toy.modes == [mode]


def test_default_big_batch_is_ten_batches_and_candidates_stream_without_repeats():
    toy = make_toy(n=200, b=4)
    s = build("rho_loss", il_epochs=1)
    reseed(toy.ctx, 0, 1)
    s.start_epoch(1, toy.ctx)
    assert s.big_size(4) == 40
    for _ in range(2):
        s.next_batch(toy.ctx)
    scored = [t for t in toy.scored]
    assert [len(l) for _, l in scored] == [40, 40]
    # 2 x 40 candidates of a permutation of the 100 even indices: all distinct
    first = torch.cat([l for _, l in scored])
    assert len(set(first.tolist())) == 80


def test_resume_does_not_retrain_the_il_model():
    toy = make_toy(n=40, b=4)
    s = _started(toy)
    fresh = build("rho_loss", n_big=8, il_epochs=3)
    fresh.load_state_dict(s.state_dict())
    toy2 = make_toy(n=40, b=4)
    reseed(toy2.ctx, 0, 2)
    fresh.start_epoch(2, toy2.ctx)
    assert toy2.aux_calls == [] and toy2.ctx.backprops == 0


@pytest.mark.parametrize("params,msg", [({"n_big": 4}, "larger than the batch"),
                                        ({"n_big": 30}, "non-holdout")])
def test_big_batch_must_fit(params, msg):
    toy = make_toy(n=40, b=4)
    with pytest.raises(ValueError, match=msg):
        build("rho_loss", **params).start_epoch(1, toy.ctx)


@pytest.mark.parametrize("bad,msg", [({"n_big": 1}, "n_big"), ({"il_epochs": -1}, "il_epochs"),
                                     ({"il_epochs": 0}, "untrained"),
                                     ({"il_lr": 0}, "il_lr"), ({"il_batch_size": 0}, "il_batch_size")])
def test_bad_parameters_are_one_line_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        build("rho_loss", **bad)
