"""Rules every sampler follows: seeded determinism, exact resume, no sync, clear errors."""
from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import samplers
from samplers.impon import weight_frobenius_norm
from sampler_fixtures import build, make_toy, reseed, run, train_step

def sampler_configs(n_train: int = 40, batch_size: int = 4) -> dict[str, tuple[str, dict]]:
    """label -> (name, params) for every registered sampler, from its own traits
    (``test_params`` and ``test_variants``): a new method is tested without an edit here."""
    out = {}
    for name in samplers.available():
        cls = samplers.get(name)
        base = cls.test_params(n_train, batch_size)
        out[name] = (name, base)
        for label, extra in cls.test_variants.items():
            out[f"{name}-{label}"] = (name, {**base, **extra})
    return out


CONFIGS = sampler_configs()


def _short_epochs(name: str) -> bool:
    """Samplers that may run fewer than n // b steps (they override ``epoch_steps``)."""
    return samplers.get(name).epoch_steps is not samplers.Sampler.epoch_steps


def _syncs_per_step(name: str) -> bool:
    """Samplers with a documented per-step host sync (their ``host_syncs`` trait)."""
    syncs = samplers.get(name).host_syncs
    return bool(syncs.per_step or syncs.per_score_call)


def _same(a, b):
    assert torch.equal(a.idx, b.idx)
    assert (a.inputs is None) == (b.inputs is None)
    if a.inputs is not None:
        assert torch.equal(a.inputs, b.inputs)


@pytest.mark.parametrize("key", CONFIGS)
def test_same_seed_same_batches(key):
    name, params = CONFIGS[key]
    a = run(build(name, **params), make_toy(n=40, b=4), seed=7, epochs=2)
    b = run(build(name, **params), make_toy(n=40, b=4), seed=7, epochs=2)
    c = run(build(name, **params), make_toy(n=40, b=4), seed=8, epochs=2)
    assert len(a) == len(b) == (20 if not _short_epochs(name) else len(a))
    assert len(a) >= 10
    for x, y in zip(a, b):
        _same(x, y)
        assert x.idx.dtype == torch.int64 and x.idx.shape == (4,)
    assert any(not torch.equal(x.idx, z.idx) for x, z in zip(a, c))


@pytest.mark.parametrize("key", CONFIGS)
def test_state_dict_round_trip_mid_epoch_continues_identically(key):
    name, params = CONFIGS[key]
    toy = make_toy(n=40, b=4)
    sampler = build(name, **params)
    run(sampler, toy, seed=3, epochs=1)
    reseed(toy.ctx, 3, 2)
    sampler.start_epoch(2, toy.ctx)
    for _ in range(3):
        train_step(sampler, toy)
    buf = io.BytesIO()   # as a checkpoint would: serialised, then read back
    torch.save({"sampler": sampler.state_dict(), "rng": toy.ctx.generator.get_state()}, buf)

    def rest(s, t):
        out = [train_step(s, t) for _ in range(7)]
        metrics = s.epoch_metrics()
        return out + run(s, t, seed=3, epochs=1, first_epoch=3), metrics

    expected, expected_metrics = rest(sampler, toy)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    toy2 = make_toy(n=40, b=4)
    resumed = build(name, **params)
    resumed.load_state_dict(saved["sampler"])
    toy2.ctx.generator.set_state(saved["rng"])
    got, got_metrics = rest(resumed, toy2)
    assert len(got) == len(expected) == (17 if not _short_epochs(name) else len(got))
    for x, y in zip(expected, got):
        _same(x, y)
    assert got_metrics.keys() == expected_metrics.keys()
    for k in got_metrics:
        assert got_metrics[k] == pytest.approx(expected_metrics[k], nan_ok=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("key", [k for k in CONFIGS if not _syncs_per_step(CONFIGS[k][0])])
def test_no_device_to_host_sync_in_next_batch_and_observe(key):
    """Selective Backprop (once per scored chunk) and upper-bound IS (once per step, the
    uniform-or-IS decision) are exempt, documented in their modules."""
    name, params = CONFIGS[key]
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 4)).cuda()
    toy = make_toy(n=40, b=4, device="cuda", weight_norm_fn=lambda: weight_frobenius_norm(model))
    sampler = build(name, **params)
    run(sampler, toy, seed=0, epochs=1)        # warm-up: lazy features, allocations
    reseed(toy.ctx, 0, 2)
    sampler.start_epoch(2, toy.ctx)
    losses = torch.rand(4, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            batch = sampler.next_batch(toy.ctx)
            assert batch.idx.device.type == "cuda"
            sampler.observe(batch.idx, losses, torch.exp(-losses))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    sampler.epoch_metrics()   # may sync: once per epoch


def test_every_registered_sampler_is_tested_and_declares_a_cost():
    names = {name for name, _ in CONFIGS.values()}
    assert names == set(samplers.available())
    for name in names:
        cost = samplers.build(name, **CONFIGS[name][1]).cost(n_train=40, batch_size=4, epochs=2)
        assert isinstance(cost, samplers.Cost), name


def test_unknown_sampler_lists_what_exists():
    with pytest.raises(samplers.SamplerConfigError) as err:
        samplers.build("impom")
    msg = str(err.value)
    assert "did you mean impon?" in msg
    for name in ["c_sgd", "impon", "loss_oracle", "p_sgd", "selective_backprop", "uniform"]:
        assert name in msg


@pytest.mark.parametrize("name,bad,good", [
    ("impon", "bank_sise", "bank_size"),
    ("loss_oracle", "selection", "select"),
    ("selective_backprop", "betta", "beta"),
    ("c_sgd", "replace", "replacement"),
])
def test_unknown_parameter_lists_the_parameters(name, bad, good):
    with pytest.raises(samplers.SamplerConfigError) as err:
        samplers.build(name, **{bad: 1})
    msg = str(err.value)
    assert f"did you mean {good}?" in msg
    for p in samplers.params(name):
        assert p in msg


def test_defaults_and_bank_flag():
    assert samplers.params("impon") == {"bank_size": 200, "lr": 1e-6, "features": "pixels",
                                        "reset": "epoch", "select": "highest",
                                        "init": "zeros", "diagnose_every": 0}
    assert samplers.params("loss_oracle") == {"bank_size": 200, "select": "highest"}
    # reference settings (see the samplers' docstrings for the source files)
    assert samplers.params("selective_backprop") == {"beta": 3, "history": 1024,
                                                     "prime_epochs": 1, "score_mode": "eval"}
    assert samplers.params("p_sgd") == samplers.params("c_sgd") == {"replacement": False}
    assert samplers.params("unif_sgd") == {"draw": "with_replacement"}
    assert samplers.params("rho_loss")["score_mode"] == "train_update"
    assert samplers.params("upper_bound_is")["score_mode"] == "eval"
    assert [n for n in ["impon", "loss_oracle", "selective_backprop", "p_sgd", "c_sgd", "unif_sgd"]
            if samplers.get(n).has_bank] == ["impon", "loss_oracle"]
