"""IMPON: every rule in the README's "Methods" and samplers/impon.py on small inputs whose answer is known."""
from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn

from samplers.bank import average_ranks, draw_bank, precision_at_b, spearman_rho
from samplers.impon import sgd_step, weight_frobenius_norm
from sampler_fixtures import build, make_toy, reseed, run, train_step

P_MIN = 1e-3  # statistical tests: fixed seeds, reject only at p < 1e-3


def test_bank_is_distinct_and_uniform():
    g = torch.Generator().manual_seed(0)
    n, N, draws = 30, 7, 3000
    banks = torch.stack([draw_bank(n, N, g, "cpu") for _ in range(draws)])
    assert banks.dtype == torch.int64
    assert all(len(set(row.tolist())) == N for row in banks)
    counts = torch.bincount(banks.flatten(), minlength=n).numpy()
    assert stats.chisquare(counts).pvalue > P_MIN
    assert sorted(draw_bank(n, n, g, "cpu").tolist()) == list(range(n))  # N = n: everything


@pytest.mark.parametrize("features", ["pixels", "pooled", "label", "pooled+label"])
def test_context_is_features_weight_norm_and_one(features):
    toy = make_toy(n=12, b=4, hw=8, num_classes=3)
    imp = build("impon", bank_size=4, features=features)
    idx = torch.tensor([5, 0, 11])
    c = imp.contexts(toy.ctx, idx, torch.tensor(7.5))
    pixels = toy.images[idx].reshape(3, -1)
    pooled = nn.functional.avg_pool2d(toy.images[idx], 4).reshape(3, -1)  # 3 x (3*2*2)
    onehot = torch.zeros(3, 3)
    onehot[torch.arange(3), idx % 3] = 1
    x = {"pixels": pixels, "pooled": pooled, "label": onehot,
         "pooled+label": torch.cat([pooled, onehot], 1)}[features]
    assert c.shape == (3, x.shape[1] + 2)
    torch.testing.assert_close(c[:, :-2], x)
    assert torch.all(c[:, -2] == 7.5) and torch.all(c[:, -1] == 1.0)
    assert {"pixels": 192, "pooled": 12, "label": 3, "pooled+label": 15}[features] == x.shape[1]


def _bank_of_next_call(toy, N):
    """The bank IMPON/oracle will draw next: same generator state, same draw."""
    g = torch.Generator().set_state(toy.ctx.generator.get_state())
    return draw_bank(toy.ctx.n_train, N, g, toy.ctx.device)


@pytest.mark.parametrize("select", ["highest", "lowest"])
def test_selection_is_top_or_bottom_b_of_predictions(select):
    toy = make_toy(n=40, b=4)
    imp = build("impon", bank_size=12, select=select, reset="never")
    reseed(toy.ctx, 0, 1)
    imp.start_epoch(1, toy.ctx)
    imp.w = torch.randn(imp.w.shape, generator=torch.Generator().manual_seed(3))
    for _ in range(5):
        bank = _bank_of_next_call(toy, 12)
        scores = imp.contexts(toy.ctx, bank, torch.tensor(2.0)) @ imp.w
        order = torch.argsort(scores, descending=(select == "highest"))
        expected = set(bank[order[:4]].tolist())
        assert set(imp.next_batch(toy.ctx).idx.tolist()) == expected
        imp._pending = None  # (no training step here)


def test_bank_equal_to_batch_is_uniform():
    n, b, steps = 24, 4, 3000
    toy = make_toy(n=n, b=b)
    imp = build("impon", bank_size=b, reset="never", lr=1e-2)
    reseed(toy.ctx, 0, 1)
    imp.start_epoch(1, toy.ctx)
    imp.w = torch.randn(imp.w.shape, generator=torch.Generator().manual_seed(1))  # strong, skewed w
    picked = []
    for _ in range(steps):
        batch = train_step(imp, toy)
        assert len(set(batch.idx.tolist())) == b
        picked.append(batch.idx)
    counts = torch.bincount(torch.cat(picked), minlength=n).numpy()
    assert stats.chisquare(counts).pvalue > P_MIN


def test_update_is_one_sgd_step_by_hand():
    # Two examples, label features: contexts [1,0,||W||,1] and [0,1,||W||,1], ||W|| = 2.
    toy = make_toy(n=2, b=2, num_classes=2, losses=torch.tensor([1.0, 3.0]))
    imp = build("impon", bank_size=2, lr=0.1, features="label")
    reseed(toy.ctx, 0, 1)
    imp.start_epoch(1, toy.ctx)
    batch = imp.next_batch(toy.ctx)
    imp.observe(batch.idx, toy.losses[batch.idx], torch.ones(2))
    # residuals r = [-1, -3]; grad = C^T r / 2 = [-0.5, -1.5, -4, -2]; w = -0.1 * grad
    torch.testing.assert_close(imp.w, torch.tensor([0.05, 0.15, 0.4, 0.2]))


def test_update_matches_closed_form_and_uses_selection_time_weight_norm():
    toy = make_toy(n=30, b=5)
    imp = build("impon", bank_size=10, lr=0.05, features="pooled+label", reset="never")
    reseed(toy.ctx, 0, 1)
    imp.start_epoch(1, toy.ctx)
    imp.w = torch.randn(imp.w.shape, generator=torch.Generator().manual_seed(2))
    w0 = imp.w.clone()
    toy.wnorm[0] = 3.0
    batch = imp.next_batch(toy.ctx)
    toy.wnorm[0] = 100.0          # the model moved on: the update must use the old norm
    losses = torch.rand(5, generator=torch.Generator().manual_seed(4))
    imp.observe(batch.idx, losses, torch.ones(5))
    c = imp.contexts(toy.ctx, batch.idx, torch.tensor(3.0)).double()
    expected = w0.double() - 0.05 * c.t() @ (c @ w0.double() - losses.double()) / 5
    torch.testing.assert_close(imp.w.double(), expected, rtol=1e-5, atol=1e-6)
    # the same as a gradient step computed by autograd on 0.5 * mean(residual^2)
    w = w0.clone().requires_grad_(True)
    (0.5 * ((c.float() @ w - losses) ** 2).mean()).backward()
    torch.testing.assert_close(imp.w, w0 - 0.05 * w.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sgd_step(w0, c.float(), losses, 0.05), imp.w)


@pytest.mark.parametrize("reset", ["epoch", "never"])
def test_reset_epoch_restores_init_never_keeps(reset):
    toy = make_toy(n=40, b=4)
    imp = build("impon", bank_size=8, lr=1e-2, reset=reset)
    run(imp, toy, seed=0, epochs=1)
    learned = imp.w.clone()
    assert learned.abs().sum() > 0
    reseed(toy.ctx, 0, 2)
    imp.start_epoch(2, toy.ctx)
    if reset == "epoch":
        assert torch.all(imp.w == 0)
    else:
        assert torch.equal(imp.w, learned)


def test_weight_frobenius_norm_matches_direct_computation():
    torch.manual_seed(0)  # model init only (the test's own randomness, not a sampler's)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 2 * 2, 5))
    conv, linear = model[0], model[4]
    direct = math.sqrt(conv.weight.pow(2).sum().item() + linear.weight.pow(2).sum().item())
    assert weight_frobenius_norm(model).item() == pytest.approx(direct, rel=1e-6)
    # ...and it is what IMPON puts into the context at selection time
    toy = make_toy(n=16, b=4, weight_norm_fn=lambda: weight_frobenius_norm(model))
    imp = build("impon", bank_size=8, features="label")
    reseed(toy.ctx, 0, 1)
    imp.start_epoch(1, toy.ctx)
    imp.next_batch(toy.ctx)
    assert imp._pending[:, -2].tolist() == pytest.approx([direct] * 4, rel=1e-6)
    with torch.no_grad():
        linear.weight.mul_(2)     # the norm follows the model
    assert weight_frobenius_norm(model).item() > direct


def test_spearman_and_precision_on_known_inputs():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman_rho(x, x * 10).item() == pytest.approx(1.0)
    assert spearman_rho(x, -x).item() == pytest.approx(-1.0)
    # rho = 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 24 = 0.5
    assert spearman_rho(torch.tensor([1.0, 2, 3]), torch.tensor([1.0, 3, 2])).item() == pytest.approx(0.5)
    assert average_ranks(torch.tensor([10.0, 20, 20, 5])).tolist() == [2.0, 3.5, 3.5, 1.0]
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (50,), generator=g).float()   # many ties
    b = a + torch.randint(0, 4, (50,), generator=g).float()
    assert spearman_rho(a, b).item() == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-9)
    assert math.isnan(spearman_rho(torch.ones(4), x[:4]).item())  # constant: undefined
    true = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3])
    assert precision_at_b(torch.tensor([1, 3]), true, 2, "highest").item() == 1.0
    assert precision_at_b(torch.tensor([1, 0]), true, 2, "highest").item() == 0.5
    assert precision_at_b(torch.tensor([0, 4]), true, 2, "lowest").item() == 1.0
    assert precision_at_b(torch.tensor([2, 3]), true, 2, "lowest").item() == 0.0


@pytest.mark.parametrize("sign,rho,precision", [(1.0, 1.0, 1.0), (-1.0, -1.0, 0.0)])
def test_diagnostics_with_a_perfect_and_a_reversed_predictor(sign, rho, precision):
    # Pixel features: feature 0 *is* the true loss, so w = sign * e_0 predicts sign * loss.
    toy = make_toy(n=40, b=4)
    imp = build("impon", bank_size=12, lr=0.0, reset="never", diagnose_every=2)
    reseed(toy.ctx, 0, 1)
    imp.start_epoch(1, toy.ctx)
    imp.w[0] = sign
    for _ in range(6):
        train_step(imp, toy)
    assert toy.ctx.diag_forwards == 3 * 12  # iterations 2, 4, 6 scored the whole bank
    assert toy.ctx.forwards == 0            # a measurement, not the method's cost
    m = imp.epoch_metrics()
    assert m["impon_spearman"] == pytest.approx(rho)
    assert m["impon_precision_at_b"] == pytest.approx(precision)


def test_diagnostics_skip_undefined_spearman_and_reset_per_epoch():
    toy = make_toy(n=40, b=4)
    imp = build("impon", bank_size=12, lr=0.0, reset="epoch", diagnose_every=1)
    run(imp, toy, seed=0, epochs=1, steps=3)   # w stays 0: every prediction ties
    m = imp.epoch_metrics()
    assert math.isnan(m["impon_spearman"])     # never defined this epoch
    assert 0.0 <= m["impon_precision_at_b"] <= 1.0
    assert build("impon").epoch_metrics() == {}  # no diagnostics, no columns


def test_no_diagnostics_means_no_extra_forwards():
    toy = make_toy(n=40, b=4)
    run(build("impon", bank_size=12), toy, seed=0, epochs=1)
    assert toy.ctx.forwards == 0


@pytest.mark.parametrize("params,message", [
    ({"bank_size": 0}, "bank_size must be an integer >= 1"),
    ({"bank_size": 2.5}, "bank_size must be an integer >= 1"),
    ({"lr": -1.0}, "lr must be a finite number >= 0"),
    ({"features": "edges"}, "unknown features 'edges'; choose one of pixels"),
    ({"select": "middle"}, "unknown select 'middle'; choose one of highest, lowest"),
    ({"reset": "daily"}, "unknown reset 'daily'; choose one of epoch, never"),
    ({"init": "normal"}, "unknown init 'normal'; choose one of zeros"),
    ({"diagnose_every": -1}, "diagnose_every must be an integer >= 0"),
])
def test_invalid_parameters_are_rejected_clearly(params, message):
    with pytest.raises(ValueError, match=message):
        build("impon", **params)


def test_bank_smaller_than_batch_is_an_error():
    toy = make_toy(n=40, b=4)
    imp = build("impon", bank_size=3)
    with pytest.raises(ValueError, match="bank_size 3 < batch_size 4: "):
        imp.start_epoch(1, toy.ctx)
    with pytest.raises(ValueError, match="bank_size 50 > n_train 40"):
        build("impon", bank_size=50).start_epoch(1, toy.ctx)
