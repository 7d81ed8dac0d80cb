"""p-SGD / c-SGD: running means, unseen = max, smoothing, draws that follow P."""
from __future__ import annotations

import pytest
import torch
from scipy import stats

from sampler_fixtures import build, make_toy, reseed, run

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
    s = _sampler_with_means(name, toy, means)
    p = s.probabilities()
    counts = torch.zeros(n)
    for epoch in range(1, epochs + 1):   # start_epoch redraws from the (unchanged) means
        reseed(toy.ctx, 0, epoch)
        s.start_epoch(epoch, toy.ctx)
        for _ in range(n // b):
            counts += torch.bincount(s.next_batch(toy.ctx).idx, minlength=n)
    assert counts.sum() == epochs * n
    assert stats.chisquare(counts.numpy(), (p * counts.sum()).numpy()).pvalue > P_MIN


def test_draws_without_replacement_are_distinct_and_successive_in_p():
    n, b, epochs = 10, 4, 3000
    toy = make_toy(n=n, b=b)
    means = [0.9, 0.1, 0.5, 0.3, None, 0.7, 0.2, 0.95, 0.05, 0.6]
    s = _sampler_with_means("p_sgd", toy, means, replacement=False)
    p = s.probabilities()
    first = torch.zeros(n)
    for epoch in range(1, epochs + 1):
        reseed(toy.ctx, 0, epoch)
        s.start_epoch(epoch, toy.ctx)
        epoch_idx = torch.cat([s.next_batch(toy.ctx).idx for _ in range(n // b)])
        assert len(set(epoch_idx.tolist())) == 8          # n // b * b distinct examples
        first[epoch_idx[0]] += 1                            # first draw ~ P
    assert stats.chisquare(first.numpy(), (p * epochs).numpy()).pvalue > P_MIN


def test_epoch_is_one_draw_served_in_consecutive_chunks_without_forwards():
    toy = make_toy(n=10, b=4)
    s = build("p_sgd")
    reseed(toy.ctx, 0, 1)
    s.start_epoch(1, toy.ctx)
    order = s.state_dict()["order"]
    assert order.shape == (8,)
    batches = [s.next_batch(toy.ctx).idx for _ in range(2)]
    assert torch.equal(torch.cat(batches), order)
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
