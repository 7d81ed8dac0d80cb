"""p-SGD / c-SGD: running means, unseen = max, smoothing, draws that follow P."""
from __future__ import annotations

import pytest
import torch
from scipy import stats

from sampler_fixtures import build, make_toy, reseed, run, train_step

P_MIN = 1e-3


def _observe(sampler, pairs):
    """Feed (index, p_true) pairs through observe, as the trainer would."""
    idx = torch.tensor([i for i, _ in pairs])
    p = torch.tensor([q for _, q in pairs])
    sampler.observe(idx, torch.zeros(len(pairs)), p)


def _sampler_with_means(name, toy, means, **params):
    """A started sampler whose running means are ``means`` (None = unseen)."""
    s = build(name, **params)
    reseed(toy.ctx, 0, 1)
    s.start_epoch(1, toy.ctx)
    _observe(s, [(i, 1.0 - m) for i, m in enumerate(means) if m is not None])
    return s


def test_running_means_over_every_observation_and_unseen_get_max():
    toy = make_toy(n=6, b=2)
    s = build("p_sgd")
    reseed(toy.ctx, 0, 1)
    s.start_epoch(1, toy.ctx)
    _observe(s, [(0, 0.2), (1, 0.6)])
    _observe(s, [(0, 1.0), (0, 0.5)])              # a duplicate in one batch counts twice
    s0 = (0.8 + 0.0 + 0.5) / 3
    torch.testing.assert_close(s.running_means(), torch.tensor([s0, 0.4, s0, s0, s0, s0]))
    fresh = build("c_sgd")
    fresh.start_epoch(1, toy.ctx)
    assert torch.all(fresh.running_means() == 1.0)   # nothing seen: 1


def test_probabilities_smoothed_by_hand():
    toy = make_toy(n=4, b=2)
    means = [1.0, 0.5, 0.0, None]                     # unseen -> max = 1
    # p_sgd: q = [1, .5, 0, 1], + mean .625 -> [1.625, 1.125, .625, 1.625] / 5
    p = _sampler_with_means("p_sgd", toy, means).probabilities()
    torch.testing.assert_close(p, torch.tensor([0.325, 0.225, 0.125, 0.325]))
    # c_sgd: q = s(1-s) = [0, .25, 0, 0], + mean .0625 -> [.0625, .3125, .0625, .0625] / .5
    p = _sampler_with_means("c_sgd", toy, means).probabilities()
    torch.testing.assert_close(p, torch.tensor([0.125, 0.625, 0.125, 0.125]))
    # all q = 0 (c_sgd, every s = 1): uniform instead of 0/0
    p = _sampler_with_means("c_sgd", toy, [1.0] * 4).probabilities()
    torch.testing.assert_close(p, torch.full((4,), 0.25))


@pytest.mark.parametrize("name", ["p_sgd", "c_sgd"])
def test_draws_with_replacement_follow_p(name):
    n, b, epochs = 10, 5, 1500
    toy = make_toy(n=n, b=b)
    means = [0.9, 0.1, 0.5, 0.3, None, 0.7, 0.2, 0.95, 0.05, 0.6]
    s = _sampler_with_means(name, toy, means, replacement=True)
    p = s.probabilities()
    counts = torch.zeros(n)
    for epoch in range(1, epochs + 1):   # start_epoch redraws from the (unchanged) means
        reseed(toy.ctx, 0, epoch)
        s.start_epoch(epoch, toy.ctx)
        for _ in range(n // b):
            counts += torch.bincount(s.next_batch(toy.ctx).idx, minlength=n)
    assert counts.sum() == epochs * n
    assert stats.chisquare(counts.numpy(), (p * counts.sum()).numpy()).pvalue > P_MIN


@pytest.mark.parametrize("name", ["p_sgd", "c_sgd"])
def test_without_replacement_at_budget_1_is_a_permutation_every_epoch(name):
    """Reference rule (select_samples, utils_train.py): int(budget * n) distinct examples,
    so at budget 1 each example is trained exactly once per epoch, whatever P is: the
    first epoch (nothing seen) and later ones (P far from uniform) alike."""
    n, b = 12, 4
    toy = make_toy(n=n, b=b)
    s = build(name)                                          # default: the reference draw
    orders = []
    for epoch in (1, 2, 3):
        reseed(toy.ctx, 0, epoch)
        s.start_epoch(epoch, toy.ctx)
        if epoch == 1:
            assert torch.all(s.probabilities() == 1.0 / n)   # nothing seen: uniform
        epoch_idx = torch.cat([train_step(s, toy).idx for _ in range(n // b)])
        assert sorted(epoch_idx.tolist()) == list(range(n))  # each example exactly once
        orders.append(epoch_idx.tolist())
        p = s.probabilities()
        assert p.max() > 1.2 * p.min()                        # P is far from uniform now
    assert orders[0] != orders[1] != orders[2]               # a fresh order each epoch


@pytest.mark.parametrize("budget,expect", [(0.5, 10), (0.3, 6), (0.25, 5)])
def test_without_replacement_draws_int_budget_n_distinct(budget, expect):
    n, b = 20, 2
    toy = make_toy(n=n, b=b)
    toy.ctx.budget = budget
    s = _sampler_with_means("c_sgd", toy, [0.5] * 10 + [None] * 10)
    order = s.state_dict()["order"]
    assert order.shape == (expect,) and len(set(order.tolist())) == expect  # int(f * n)


def test_without_replacement_chosen_examples_follow_p():
    # budget 1/n: the epoch's one example is a single draw from P (its order is then moot)
    n, epochs = 10, 3000
    toy = make_toy(n=n, b=1)
    toy.ctx.budget = 0.1
    means = [0.9, 0.1, 0.5, 0.3, None, 0.7, 0.2, 0.95, 0.05, 0.6]
    s = _sampler_with_means("p_sgd", toy, means)
    p = s.probabilities()
    first = torch.zeros(n)
    for epoch in range(1, epochs + 1):
        reseed(toy.ctx, 0, epoch)
        s.start_epoch(epoch, toy.ctx)
        first[s.next_batch(toy.ctx).idx[0]] += 1
    assert stats.chisquare(first.numpy(), (p * epochs).numpy()).pvalue > P_MIN


def test_with_replacement_draws_as_many_as_the_budgeted_steps_train():
    toy = make_toy(n=20, b=4)
    toy.ctx.budget = 0.5                       # int(20 * 0.5 / 4) = 2 steps -> 8 draws
    s = _sampler_with_means("p_sgd", toy, [0.5] * 20, replacement=True)
    assert s.state_dict()["order"].shape == (8,)


def test_epoch_is_one_draw_served_in_consecutive_chunks_without_forwards():
    toy = make_toy(n=10, b=4)
    s = build("p_sgd")
    reseed(toy.ctx, 0, 1)
    s.start_epoch(1, toy.ctx)
    order = s.state_dict()["order"]
    assert order.shape == (10,)                # int(budget * n); the trainer uses 8 of them
    batches = [s.next_batch(toy.ctx).idx for _ in range(2)]
    assert torch.equal(torch.cat(batches), order[:8])
    run(s, toy, seed=0, epochs=2)
    assert toy.ctx.forwards == 0 and 0 < s.epoch_metrics()["psgd_ess_frac"] <= 1


def test_training_shifts_probability_towards_hard_examples():
    toy = make_toy(n=40, b=4)        # p_true = exp(-loss): high loss -> high s
    s = build("p_sgd")
    run(s, toy, seed=0, epochs=3)
    p = s.probabilities()
    order = torch.argsort(toy.losses)
    assert p[order[-10:]].mean() > p[order[:10]].mean()   # hardest quarter vs easiest


def test_replacement_must_be_a_bool():
    with pytest.raises(ValueError, match="replacement must be true or false"):
        build("p_sgd", replacement="no")


def test_epoch_metrics_report_the_effective_sample_size_of_p():
    # running means set by hand; P as the docstring says: q = s, q + mean(q), normalised
    toy = make_toy(n=4, b=2)
    s = _sampler_with_means("p_sgd", toy, [0.1, 0.1, 0.1, 0.7])
    s.start_epoch(2, toy.ctx)                       # the epoch's P is drawn from these means
    q = torch.tensor([0.1, 0.1, 0.1, 0.7])
    q = q + q.mean()
    p = q / q.sum()
    ess = float(1.0 / (p * p).sum())
    m = s.epoch_metrics()
    assert m["psgd_ess"] == pytest.approx(ess, rel=1e-5)
    assert m["psgd_ess_frac"] == pytest.approx(ess / 4, rel=1e-5)
    assert 1.0 < m["psgd_ess"] < 4.0                # not uniform, not a single example
    fresh = build("c_sgd")                           # nothing seen: P uniform, ESS = n
    fresh.start_epoch(1, toy.ctx)
    assert fresh.epoch_metrics()["psgd_ess"] == pytest.approx(4.0)
