"""Upper-bound IS: the gradient-norm bound, tau and its threshold, unbiased IS weights."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from samplers.upper_bound_is import UpperBoundIS, gradient_norm_bound, variance_reduction
from sampler_fixtures import build, make_toy, reseed, run, train_step

P_MIN = 1e-3


def test_bound_is_the_last_layer_gradient_norm_of_softmax_ce():
    assert gradient_norm_bound(torch.zeros(1, 2), torch.tensor([0])).item() == pytest.approx(math.sqrt(0.5))
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), logits)
    torch.testing.assert_close(gradient_norm_bound(logits.detach(), y), grad.norm(dim=1))


def test_variance_reduction_by_hand():
    assert variance_reduction(torch.ones(5)).item() == pytest.approx(1.0)
    assert variance_reduction(torch.zeros(5)).item() == pytest.approx(1.0)   # reference: g = u
    # g = [1,0,0,0], u = 1/4: sum (g-u)^2 = .75, sum g^2 = 1 -> 1/sqrt(.25) = 2
    assert variance_reduction(torch.tensor([3.0, 0, 0, 0])).item() == pytest.approx(2.0)


def test_threshold_is_the_papers_formula():
    assert UpperBoundIS().sizes(4) == (12, 2.0)              # (B + 3b) / 3b, B = 3b
    assert UpperBoundIS(presample=5).sizes(10) == (50, (50 + 30) / 30)
    assert UpperBoundIS(tau_th=1.5).sizes(4) == (12, 1.5)


def test_is_weights_make_the_expected_weighted_gradient_uniform():
    """E[mean_b(w_i g_i)] over the draw = mean over the B presampled g_i (unbiased)."""
    gen = torch.Generator().manual_seed(0)
    big, b = 12, 4
    scores = torch.rand(big, generator=gen) + 0.05
    grads = torch.randn(big, 3, generator=gen)
    target = grads.mean(0)
    est = []
    for _ in range(20000):
        pos, w = UpperBoundIS.draw(scores, b, gen)
        est.append((w[:, None] * grads[pos]).mean(0))
    est = torch.stack(est)
    for k in range(3):
        assert stats.ttest_1samp(est[:, k].numpy(), float(target[k])).pvalue > P_MIN
    # the weighted-mean (sum w) normalisation would be biased here: the check can fail
    biased = []
    for _ in range(3000):
        pos, w = UpperBoundIS.draw(scores, b, gen)
        biased.append(((w[:, None] * grads[pos]).sum(0) / w.sum()))
    biased = torch.stack(biased).mean(0)
    assert (biased - target).abs().max() > 0.02


def test_positions_are_drawn_with_probability_proportional_to_score():
    gen = torch.Generator().manual_seed(1)
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0, 10.0])
    counts = torch.zeros(6)
    for _ in range(4000):
        pos, w = UpperBoundIS.draw(scores, 4, gen)
        counts += torch.bincount(pos, minlength=6)
        torch.testing.assert_close(w, scores.sum() / (6 * scores[pos]))
    assert counts[4] == 0
    keep = scores > 0
    p = scores[keep] / scores.sum()
    assert stats.chisquare(counts[keep].numpy(), (p * counts.sum()).numpy()).pvalue > P_MIN


def test_uniform_until_tau_exceeds_threshold_no_presample_forwards():
    toy = make_toy(n=40, b=4)
    s = build("upper_bound_is", tau_th=1e9)
    batches = run(s, toy, seed=0, epochs=1)
    assert toy.ctx.forwards == 0 and all(b.weights is None and b.inputs is None for b in batches)
    m = s.epoch_metrics()
    assert m["ubis_is_frac"] == 0.0 and m["ubis_syncs"] == 10 and m["ubis_tau"] > 0


def test_tau_updates_from_training_logits_in_the_uniform_phase():
    toy = make_toy(n=40, b=4)
    ctx = toy.ctx
    s = build("upper_bound_is", tau_th=1e9, momentum=0.9)
    reseed(ctx, 0, 1)
    s.start_epoch(1, ctx)
    expected = torch.zeros(())
    for _ in range(3):
        batch = s.next_batch(ctx)
        logits = ctx.score_logits_fn(ctx.augment(batch.idx))       # the "training forward"
        s.observe_logits(batch.idx, logits)
        vr = variance_reduction(gradient_norm_bound(logits, ctx.labels[batch.idx]))
        expected = 0.9 * expected + 0.1 * vr
    torch.testing.assert_close(s.state_dict()["tau"], expected)
    assert ctx.forwards == 0


def test_importance_phase_presamples_scores_and_reweights():
    toy = make_toy(n=40, b=4)
    s = build("upper_bound_is", tau_th=0.0)          # first step uniform (tau = 0), then IS
    reseed(toy.ctx, 0, 1)
    s.start_epoch(1, toy.ctx)
    first = train_step(s, toy)
    assert first.weights is None and toy.ctx.forwards == 0
    second = s.next_batch(toy.ctx)
    assert toy.ctx.forwards == 12                      # B = 3b counted forwards
    assert second.weight_mode == "mean" and second.inputs is not None
    # the trained views are presampled, scored views; weights = 1 / (B p_i)
    scored_logits = toy.ctx.score_logits_fn(second.inputs)
    assert torch.all(second.weights > 0)
    assert torch.equal(scored_logits, toy.ctx.score_logits_fn(second.inputs))
    assert s.epoch_metrics()["ubis_is_frac"] == 0.5
    assert toy.logit_modes[0] == "eval"                # the reference: Keras learning phase 0


def test_train_mode_presample_scoring_is_our_named_option():
    toy = make_toy(n=40, b=4)
    s = build("upper_bound_is", tau_th=0.0, score_mode="train")
    reseed(toy.ctx, 0, 1)
    s.start_epoch(1, toy.ctx)
    train_step(s, toy)
    s.next_batch(toy.ctx)
    assert toy.logit_modes == ["train"]


@pytest.mark.parametrize("bad,msg", [({"score_mode": "train_update"}, "score_mode"),
                                     ({"presample": 1.0}, "presample"), ({"tau_th": -1}, "tau_th"),
                                     ({"momentum": 1.0}, "momentum")])
def test_bad_parameters_are_one_line_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        build("upper_bound_is", **bad)
