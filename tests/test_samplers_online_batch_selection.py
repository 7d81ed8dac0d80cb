"""Online batch selection: the reference's schedule (idiap/importance-sampling
``OnlineBatchSelectionSampler.update``): uniform first epoch, eval-mode un-augmented
recomputation before every ``recompute_epochs``-th epoch, one ranking per epoch, pressure
``s_e0 * (s_e_end / s_e0) ** (e / E)``."""
from __future__ import annotations

import pytest
import torch
from scipy import stats

from samplers.online_batch_selection import annealed_pressure, rank_probabilities
from sampler_fixtures import build, make_toy, reseed, run

P_MIN = 1e-3


def reference_schedule(epochs: int, recompute: int, s_e0: float, s_eend: float):
    """(recomputed before epoch e?, pressure of epoch e) for e = 1..epochs, from the
    reference's counters: ``update`` increments ``_batch`` each step, sets ``_epoch = 1 +
    _batch // steps_per_epoch``, and at each epoch end recomputes iff ``recompute > 0 and
    _epoch % recompute == 0``, then ranks with ``s = s_e0 * exp(log(s_eend / s_e0) /
    n_epochs) ** _epoch``. Before the first epoch end every score is 1 (uniform)."""
    import math
    steps_per_epoch, batch = 3, 0
    out = [(False, 1.0)]
    for _ in range(epochs - 1):
        for _ in range(steps_per_epoch):
            batch += 1
            epoch = 1 + batch // steps_per_epoch
        recomputed = recompute > 0 and epoch % recompute == 0
        s = s_e0 * math.exp(math.log(s_eend / s_e0) / epochs) ** epoch
        out.append((recomputed, s))
    return out


@pytest.mark.parametrize("epochs,k", [(6, 2), (7, 3), (5, 1), (4, 0), (10, 4)])
def test_schedule_is_the_references_counter(epochs, k):
    s = build("online_batch_selection", s_e0=100.0, s_e_end=1.0, recompute_epochs=k)
    ours = [(s.recompute_due(e), annealed_pressure(100.0, 1.0, e, epochs)) for e in range(1, epochs + 1)]
    ref = reference_schedule(epochs, k, 100.0, 1.0)
    assert [r for r, _ in ours] == [r for r, _ in ref]
    assert [p for _, p in ours] == pytest.approx([p for _, p in ref])
    assert s.recomputations(epochs) == sum(r for r, _ in ref)


def test_first_epoch_is_uniform_with_no_recompute():
    toy = make_toy(n=10, b=5, epochs=3)
    s = build("online_batch_selection", s_e0=1e4)
    reseed(toy.ctx, 0, 1)
    s.start_epoch(1, toy.ctx)
    assert toy.ctx.forwards == 0 and toy.modes == []
    assert s.epoch_metrics() == {"obs_s_e": 1.0, "obs_recomputed": 0.0}
    counts = torch.zeros(10)
    for _ in range(2000):
        counts += torch.bincount(s.next_batch(toy.ctx).idx, minlength=10)
    assert stats.chisquare(counts.numpy()).pvalue > P_MIN


def test_recompute_is_eval_mode_on_unaugmented_inputs_and_counted():
    toy = make_toy(n=40, b=4, epochs=4)
    s = build("online_batch_selection", recompute_epochs=2)
    seen = []
    for epoch in range(1, 5):
        reseed(toy.ctx, 0, epoch)
        before = toy.ctx.forwards
        s.start_epoch(epoch, toy.ctx)
        seen.append((toy.ctx.forwards - before, s.epoch_metrics()["obs_recomputed"]))
    assert seen == [(0, 0.0), (40, 1.0), (0, 0.0), (40, 1.0)]
    assert set(toy.modes) == {"eval"}
    assert len(toy.scored) == 2                         # one chunk per recompute here
    torch.testing.assert_close(toy.scored[0][0], toy.images)   # exactly the un-augmented images
    torch.testing.assert_close(toy.scored[1][0], toy.images)
    torch.testing.assert_close(s.latest_losses(), toy.losses)
    assert s.epoch_metrics()["obs_s_e"] == pytest.approx(1.0)      # last epoch: s_e_end


def test_draws_follow_the_rank_probabilities():
    n, b = 10, 5
    toy = make_toy(n=n, b=b, epochs=2)
    s = build("online_batch_selection", s_e0=50.0, s_e_end=50.0, recompute_epochs=1)
    run(s, toy, seed=0, epochs=1, steps=0)
    reseed(toy.ctx, 0, 2)
    s.start_epoch(2, toy.ctx)                        # recomputed: latest loss = true loss
    p = rank_probabilities(n, 50.0)
    rank_of = torch.argsort(torch.argsort(toy.losses, descending=True))
    counts = torch.zeros(n)
    for _ in range(3000):
        counts += torch.bincount(s.next_batch(toy.ctx).idx, minlength=n)
    assert stats.chisquare(counts.numpy(), (p[rank_of] * counts.sum()).numpy()).pvalue > P_MIN
    assert counts[torch.argmax(toy.losses)] > counts[torch.argmin(toy.losses)]


def test_ranking_is_fixed_within_an_epoch_and_observed_losses_count_at_the_next():
    toy = make_toy(n=6, b=1, epochs=3)
    s = build("online_batch_selection", s_e0=1e6, s_e_end=1e6, recompute_epochs=1)
    run(s, toy, seed=0, epochs=1, steps=0)
    reseed(toy.ctx, 0, 2)
    s.start_epoch(2, toy.ctx)
    easiest = int(torch.argmin(toy.losses))
    s.observe(torch.tensor([easiest]), torch.tensor([100.0]), torch.tensor([0.0]))
    assert s.latest_losses()[easiest] == 100.0
    picks = torch.cat([s.next_batch(toy.ctx).idx for _ in range(200)])
    assert (picks == easiest).float().mean() < 0.05    # not re-ranked mid-epoch
    s.recompute_epochs = 0                              # keep the observed loss
    reseed(toy.ctx, 0, 3)
    s.start_epoch(3, toy.ctx)
    picks = torch.cat([s.next_batch(toy.ctx).idx for _ in range(200)])
    assert (picks == easiest).float().mean() > 0.8     # rank 1 from the next epoch on


def test_needs_the_number_of_epochs():
    toy = make_toy(n=10, b=2, epochs=None)
    s = build("online_batch_selection")
    with pytest.raises(ValueError, match="StepContext.epochs"):
        s.start_epoch(1, toy.ctx)


@pytest.mark.parametrize("bad,msg", [({"s_e0": 0.5}, "s_e0"), ({"s_e_end": float("inf")}, "s_e_end"),
                                     ({"recompute_epochs": -1}, "recompute_epochs"),
                                     ({"recompute_epochs": 1.5}, "recompute_epochs")])
def test_bad_parameters_are_one_line_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        build("online_batch_selection", **bad)
