"""Selective Backprop: percentiles over the FIFO, keep probability, exact scored views."""
from __future__ import annotations

import pytest
import torch
from scipy import stats

from samplers.selective_backprop import fraction_below, keep_probability
from sampler_fixtures import build, make_toy, reseed, run, train_step

P_MIN = 1e-3


def _view_ids(toy):
    """Map every scored view (its exact bytes) to (chunk number, position, loss)."""
    ids = {}
    for c, (inputs, losses) in enumerate(toy.scored):
        for j in range(len(inputs)):
            ids[inputs[j].numpy().tobytes()] = (c, j, losses[j].item())
    return ids


def test_percentage_strictly_below_and_keep_probability_by_hand():
    history = torch.tensor([1.0, 2.0, 3.0, 4.0])
    losses = torch.tensor([0.5, 2.0, 2.5, 5.0])
    assert fraction_below(losses, history).tolist() == [0.0, 0.25, 0.5, 1.0]  # 2.0: ties don't count
    assert keep_probability(losses, history, 3.0).tolist() == [0.0, 1 / 64, 1 / 8, 1.0]
    assert keep_probability(losses, history, 0.0).tolist() == [1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("history", [6, 3])
def test_fifo_holds_the_last_history_scored_losses(history):
    toy = make_toy(n=40, b=4)
    # beta 0 keeps every candidate (1 chunk per step) and, unlike priming, fills the FIFO
    sb = build("selective_backprop", beta=0, history=history, prime_epochs=0)
    reseed(toy.ctx, 0, 1)
    sb.start_epoch(1, toy.ctx)
    for step in range(1, 4):
        train_step(sb, toy)
        scored = torch.cat([losses for _, losses in toy.scored])
        assert len(scored) == 4 * step
        assert torch.equal(sb.history_losses(), scored[-history:])


def test_keep_probability_follows_percentile_in_fifo_statistically():
    # history == b: after the push the FIFO is exactly the current chunk, so the candidate
    # of rank r (0 = lowest of 4 distinct losses) is kept with probability (r / 4) ** beta.
    toy = make_toy(n=40, b=4)
    beta = 1.5
    sb = build("selective_backprop", beta=beta, history=4, prime_epochs=0)
    batches = run(sb, toy, seed=0, epochs=1, steps=400)
    ids = _view_ids(toy)
    queued = sb.state_dict()["queue_inputs"]
    kept_views = [row.numpy().tobytes() for batch in batches for row in batch.inputs]
    kept_views += [row.numpy().tobytes() for row in queued]
    kept = {ids[v][:2] for v in kept_views}
    assert len(kept) == len(kept_views)             # every kept view served/queued once
    trials, hits = [0] * 4, [0] * 4
    for c, (_, losses) in enumerate(toy.scored):
        ranks = torch.argsort(torch.argsort(losses))
        for j, r in enumerate(ranks.tolist()):
            trials[r] += 1
            hits[r] += (c, j) in kept
    assert hits[0] == 0                              # lowest of the FIFO: probability 0
    for r in range(1, 4):
        p = (r / 4) ** beta
        assert stats.binomtest(hits[r], trials[r], p).pvalue > P_MIN, (r, hits[r], trials[r])


def test_batches_are_b_of_the_exact_scored_views_in_queue_order():
    toy = make_toy(n=40, b=4)
    sb = build("selective_backprop", beta=1.0, history=16, prime_epochs=0)
    batches = run(sb, toy, seed=0, epochs=2)
    ids = _view_ids(toy)
    order = []
    for batch in batches:
        assert batch.idx.shape == (4,) and batch.inputs.shape == (4, 3, 4, 4)
        for i, row in zip(batch.idx.tolist(), batch.inputs):
            c, j, loss = ids[row.numpy().tobytes()]      # a view that was scored...
            assert loss == toy.losses[i].item()           # ...of this very example
            order.append((c, j))
    assert order == sorted(order) and len(set(order)) == len(order)  # FIFO queue, no reuse


def test_forwards_count_every_scored_candidate():
    toy = make_toy(n=40, b=4)
    sb = build("selective_backprop", prime_epochs=0)
    run(sb, toy, seed=0, epochs=1)
    scored = sum(len(inputs) for inputs, _ in toy.scored)
    assert toy.ctx.forwards == scored > 10 * 4   # beta = 3 keeps ~1/4: needs more candidates
    m = sb.epoch_metrics()
    assert m["sb_scored"] == scored
    assert m["sb_keep_rate"] == pytest.approx(
        (10 * 4 + len(sb.state_dict()["queue_idx"])) / scored)


def test_prime_epochs_keep_every_candidate_then_select():
    toy = make_toy(n=40, b=4)
    sb = build("selective_backprop", prime_epochs=1)
    run(sb, toy, seed=0, epochs=1)
    assert toy.ctx.forwards == 40 and sb.epoch_metrics()["sb_keep_rate"] == 1.0
    run(sb, toy, seed=0, epochs=1, first_epoch=2)
    assert sb.epoch_metrics()["sb_keep_rate"] < 0.6


def test_priming_keeps_every_candidate_and_leaves_the_history_empty():
    """Reference (lib/selectors.py PrimedSelector -> BaselineSelector): while priming,
    every candidate is kept in scoring order and no loss enters the history; the first
    chunk after priming is ranked among itself (appended before ranking)."""
    toy = make_toy(n=40, b=4)
    sb = build("selective_backprop", prime_epochs=2, history=16)
    batches = run(sb, toy, seed=0, epochs=2)
    assert len(sb.history_losses()) == 0                     # nothing pushed in 2 epochs
    scored = [inputs for inputs, _ in toy.scored]
    assert len(scored) == len(batches) == 20                 # one chunk per step: all kept
    for batch, inputs in zip(batches, scored):
        assert torch.equal(batch.inputs, inputs)             # kept exactly as scored
    assert sb.epoch_metrics()["sb_keep_rate"] == 1.0 and toy.ctx.forwards == 80
    reseed(toy.ctx, 0, 3)
    sb.start_epoch(3, toy.ctx)
    train_step(sb, toy)
    first = toy.scored[20][1]
    assert torch.equal(sb.history_losses()[:len(first)], first)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_score_mode_picks_the_context_scorer(mode):
    toy = make_toy(n=40, b=4)
    sb = build("selective_backprop", score_mode=mode, prime_epochs=0)
    run(sb, toy, seed=0, epochs=1)
    assert toy.modes and set(toy.modes) == {mode}
    assert build("selective_backprop").score_mode == "eval"   # the reference's default


def test_leftovers_carry_over_to_the_next_epoch():
    toy = make_toy(n=40, b=4)
    sb = build("selective_backprop", beta=0.5, history=8, prime_epochs=0)
    for seed in range(20):  # find a seed that leaves something queued at the epoch end
        run(sb, toy, seed=seed, epochs=1)
        left = sb.state_dict()["queue_idx"]
        if left is not None and len(left) > 0:
            break
    assert left is not None and len(left) > 0
    reseed(toy.ctx, 0, 2)
    sb.start_epoch(2, toy.ctx)
    batch = sb.next_batch(toy.ctx)
    assert torch.equal(batch.idx[:len(left)], left[:4])


def test_candidates_are_successive_permutations_with_a_short_last_chunk():
    toy = make_toy(n=10, b=4)
    sb = build("selective_backprop", prime_epochs=1)
    run(sb, toy, seed=0, epochs=1, steps=2)   # keeps all: chunks of 4, 4, 2 per pass
    sizes = [len(inputs) for inputs, _ in toy.scored]
    assert sizes[:2] == [4, 4]
    train_step(sb, toy)   # needs 4 queued: the 2-chunk ends the pass, a new one begins
    sizes = [len(inputs) for inputs, _ in toy.scored]
    assert sizes == [4, 4, 2, 4]
    first_pass = torch.cat([losses for _, losses in toy.scored[:3]])
    assert sorted(first_pass.tolist()) == sorted(toy.losses.tolist())


@pytest.mark.parametrize("params,message", [
    ({"beta": -1}, "beta must be a finite number >= 0"),
    ({"history": 0}, "history must be an integer >= 1"),
    ({"prime_epochs": -2}, "prime_epochs must be an integer >= 0"),
    ({"score_mode": "test"}, "score_mode must be 'train' or 'eval'"),
])
def test_invalid_parameters_are_rejected_clearly(params, message):
    with pytest.raises(ValueError, match=message):
        build("selective_backprop", **params)
