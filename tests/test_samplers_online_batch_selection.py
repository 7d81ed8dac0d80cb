"""Online batch selection: rank probabilities, annealed pressure, counted recomputation."""
from __future__ import annotations

import pytest
import torch
from scipy import stats

from samplers.online_batch_selection import annealed_pressure, rank_probabilities
from sampler_fixtures import build, make_toy, reseed, run

P_MIN = 1e-3


def test_rank_probabilities_by_hand():
    # s_e = 8, n = 3: p_r ∝ 8^(-r/3) = 2^-r -> [1/2, 1/4, 1/8] / (7/8)
    torch.testing.assert_close(rank_probabilities(3, 8.0), torch.tensor([4 / 7, 2 / 7, 1 / 7]))
    p = rank_probabilities(100, 1e4)
    assert (p[0] / p[-1]).item() == pytest.approx(1e4 ** (99 / 100), rel=1e-4)
    torch.testing.assert_close(rank_probabilities(5, 1.0), torch.full((5,), 0.2))


def test_pressure_is_annealed_geometrically_from_first_to_last_epoch():
    assert [annealed_pressure(100, 1, e, 3) for e in (1, 2, 3)] == pytest.approx([100, 10, 1])
    assert annealed_pressure(100, 1, 1, 1) == 100


def test_recompute_every_k_epochs_is_a_counted_forward_over_the_training_set():
    toy = make_toy(n=40, b=4, epochs=4)
    s = build("online_batch_selection", recompute_epochs=2)
    seen = []
    for epoch in range(1, 5):
        reseed(toy.ctx, 0, epoch)
        before = toy.ctx.forwards
        s.start_epoch(epoch, toy.ctx)
        seen.append((toy.ctx.forwards - before, s.epoch_metrics()["obs_recomputed"]))
    assert seen == [(40, 1.0), (0, 0.0), (40, 1.0), (0, 0.0)]
    torch.testing.assert_close(s.latest_losses(), toy.losses)   # score = true loss of a view
    assert s.epoch_metrics()["obs_s_e"] == pytest.approx(1.0)      # last epoch: s_e_end


def test_draws_follow_the_rank_probabilities():
    n, b = 10, 5
    toy = make_toy(n=n, b=b, epochs=1)
    s = build("online_batch_selection", s_e0=50.0)
    run(s, toy, seed=0, epochs=1, steps=0)
    p = rank_probabilities(n, 50.0)
    rank_of = torch.argsort(torch.argsort(toy.losses, descending=True))
    counts = torch.zeros(n)
    for _ in range(3000):
        counts += torch.bincount(s.next_batch(toy.ctx).idx, minlength=n)
    assert stats.chisquare(counts.numpy(), (p[rank_of] * counts.sum()).numpy()).pvalue > P_MIN
    assert counts[torch.argmax(toy.losses)] > counts[torch.argmin(toy.losses)]


def test_observe_replaces_the_latest_loss_and_reranks():
    toy = make_toy(n=6, b=1, epochs=1)
    s = build("online_batch_selection", s_e0=1e6)
    run(s, toy, seed=0, epochs=1, steps=0)
    easiest = int(torch.argmin(toy.losses))
    s.observe(torch.tensor([easiest]), torch.tensor([100.0]), torch.tensor([0.0]))
    assert s.latest_losses()[easiest] == 100.0
    picks = torch.cat([s.next_batch(toy.ctx).idx for _ in range(200)])
    assert (picks == easiest).float().mean() > 0.8     # now rank 1 under high pressure


@pytest.mark.parametrize("bad,msg", [({"s_e0": 0.5}, "s_e0"), ({"s_e_end": float("inf")}, "s_e_end"),
                                     ({"recompute_epochs": -1}, "recompute_epochs"),
                                     ({"recompute_epochs": 1.5}, "recompute_epochs")])
def test_bad_parameters_are_one_line_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        build("online_batch_selection", **bad)
