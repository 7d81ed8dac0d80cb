"""InfoBatch: initial score, below-mean pruning with exact counts, rescaling, full epochs."""
from __future__ import annotations

import pytest
import torch
from scipy import stats

from samplers.infobatch import INITIAL_SCORE
from sampler_fixtures import build, make_toy, reseed, run, train_step

P_MIN = 1e-3


def _started(toy, scores=None, epoch=2, **params):
    s = build("infobatch", **params)
    reseed(toy.ctx, 0, 1)
    s.start_epoch(1, toy.ctx)
    if scores is not None:
        s.observe(torch.arange(len(scores)), torch.tensor(scores, dtype=torch.float32),
                  torch.zeros(len(scores)))
        reseed(toy.ctx, 0, epoch)
        s.start_epoch(epoch, toy.ctx)
    return s


def test_first_epoch_keeps_everything_unscaled_because_unseen_score_is_three():
    toy = make_toy(n=10, b=3)
    s = _started(toy)
    assert torch.all(s.scores() == INITIAL_SCORE) and INITIAL_SCORE == 3.0
    assert s.epoch_steps(1, toy.ctx, 3) == 3
    batches = [s.next_batch(toy.ctx) for _ in range(3)]
    idx = torch.cat([b.idx for b in batches])
    assert len(set(idx.tolist())) == 9                       # a permutation, last partial dropped
    assert all(torch.all(b.weights == 1) and b.weight_mode == "mean" for b in batches)


def test_prune_by_hand_below_mean_exact_count_and_weights():
    toy = make_toy(n=10, b=2)
    s = _started(toy, scores=[float(i) for i in range(10)], ratio=0.5)   # mean 4.5
    order, weights = s.state_dict()["order"], s.state_dict()["weights"]
    kept = dict(zip(order.tolist(), weights.tolist()))
    assert set(range(5, 10)) <= set(kept)                     # at/above the mean: all kept
    low = [i for i in kept if i < 5]
    assert len(low) == int(0.5 * 5) == 2                      # exactly int(keep_ratio * |W|)
    assert all(kept[i] == 2.0 for i in low) and all(kept[i] == 1.0 for i in range(5, 10))
    assert s.epoch_steps(2, toy.ctx, 5) == 7 // 2
    assert s.epoch_metrics()["infobatch_kept_frac"] == pytest.approx(0.7)


def test_ratio_point_eight_keeps_int_of_float_product_like_the_reference():
    toy = make_toy(n=20, b=2)
    s = _started(toy, scores=[float(i) for i in range(20)], ratio=0.8)   # W = 0..9
    w = s.state_dict()["weights"]
    # The reference computes int((1.0 - 0.8) * 10) in floats: 1.9999... -> 1 kept, weight 5.
    assert int((1.0 - 0.8) * 10) == 1
    assert int((w == 5.0).sum()) == 1 and int((w == 1.0).sum()) == 10


def test_expected_rescaled_loss_equals_full_data_mean():
    """Over the prune draw, E[sum_kept w_i l_i] / n = mean(l): InfoBatch's unbiasedness."""
    gen = torch.Generator().manual_seed(0)
    losses = torch.rand(40, generator=gen) * 3          # |W| even here: keep_ratio*|W| exact
    while int((losses < losses.mean()).sum()) % 2:
        losses = torch.rand(40, generator=gen) * 3
    toy = make_toy(n=40, b=4)
    s = _started(toy, scores=losses.tolist())
    draws = []
    for k in range(3000):
        toy.ctx.generator.manual_seed(k)
        idx, w = s.prune(losses, toy.ctx.generator)
        draws.append(float((w * losses[idx]).sum()) / 40)
    assert stats.ttest_1samp(draws, float(losses.mean())).pvalue > P_MIN
    assert torch.tensor(draws).std() > 0                  # the draw really is random
    # Without the 1/keep_ratio rescaling the estimate is biased low (the check can fail).
    unscaled = [float(losses[s.prune(losses, toy.ctx.generator)[0]].sum()) / 40 for _ in range(50)]
    assert max(unscaled) < float(losses.mean())


def reference_pruning_epochs(num_epochs: int, delta: float) -> list[bool]:
    """Which epochs the reference prunes, from its counter (NUS-HPC-AI-Lab/InfoBatch,
    ``infobatch/infobatch.py``, ``IBSampler``): ``__init__`` calls ``reset()`` once, every
    epoch's ``__iter__`` calls it again; ``reset`` prunes iff ``iterations <= stop_prune``
    (``num_epochs * delta``) and then increments ``iterations``."""
    iterations, pruned = 0, []
    stop_prune = num_epochs * delta

    def reset() -> bool:
        nonlocal iterations
        prunes = not iterations > stop_prune
        iterations += 1
        return prunes

    reset()                                        # the constructor's call
    for _ in range(num_epochs):                    # one __iter__ per epoch
        pruned.append(reset())
    return pruned


@pytest.mark.parametrize("epochs,delta", [(6, 0.875), (10, 0.875), (8, 0.875), (2, 0.5),
                                          (3, 0.3), (200, 0.875), (5, 1.0), (4, 0.0)])
def test_pruning_epochs_are_the_references_counter(epochs, delta):
    s = build("infobatch", delta=delta)
    ours = [s.is_pruning_epoch(e, epochs) for e in range(1, epochs + 1)]
    assert ours == reference_pruning_epochs(epochs, delta)
    assert sum(ours) == int(epochs * delta)        # floor(E * delta) pruned epochs


def test_pruning_epochs_follow_the_reference_rule_then_full_data_unscaled():
    s = build("infobatch", delta=0.875)
    # 6 epochs at 0.875 (cpu_methods): epochs 1-5 prune, the last one trains on full data
    assert [s.is_pruning_epoch(e, 6) for e in range(1, 7)] == [True] * 5 + [False]
    assert [s.is_pruning_epoch(e, 10) for e in range(1, 11)] == [True] * 8 + [False] * 2
    assert [s.is_pruning_epoch(e, 8) for e in range(1, 9)] == [True] * 7 + [False]
    toy = make_toy(n=10, b=2, epochs=2)
    s = build("infobatch", delta=1.0)                     # prune iff epoch <= 2: both
    run(s, toy, seed=0, epochs=1)
    toy3 = make_toy(n=10, b=2, epochs=3)
    s3 = build("infobatch", delta=0.5)                    # prune iff epoch <= 1.5: epoch 1
    run(s3, toy3, seed=0, epochs=1)
    reseed(toy3.ctx, 0, 2)
    s3.start_epoch(2, toy3.ctx)
    assert s3.epoch_metrics() == {"infobatch_kept_frac": 1.0, "infobatch_pruning": 0.0}
    assert s3.epoch_steps(2, toy3.ctx, 5) == 5
    b = s3.next_batch(toy3.ctx)
    assert torch.all(b.weights == 1)


def test_observe_records_latest_loss_and_pruned_keep_stale_scores():
    toy = make_toy(n=12, b=3)
    s = build("infobatch")
    run(s, toy, seed=0, epochs=2)
    sc = s.scores()
    trained = sc != INITIAL_SCORE
    assert torch.equal(sc[trained], toy.losses[trained])


@pytest.mark.parametrize("bad", [{"ratio": 0.95}, {"ratio": -0.1}, {"delta": 1.5}, {"ratio": "x"}])
def test_bad_parameters_are_one_line_errors(bad):
    with pytest.raises(ValueError, match="must be a number in"):
        build("infobatch", **bad)


def test_needs_the_number_of_epochs():
    toy = make_toy(n=10, b=2, epochs=None)
    with pytest.raises(ValueError, match="number of epochs"):
        build("infobatch").start_epoch(1, toy.ctx)


def test_a_loop_ignoring_epoch_steps_gets_another_pass_not_an_error():
    toy = make_toy(n=10, b=2)
    s = _started(toy, scores=[float(i) for i in range(10)])
    for _ in range(10):
        train_step(s, toy)
