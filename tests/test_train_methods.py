"""The trainer with the methods that need more than the basic step: shorter epochs
(InfoBatch), mean-mode weights, an auxiliary model's cost (RHO-LOSS), logits, resume."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import samplers
from benchmarks.config import RunSpec
from benchmarks.train import Trainer, schedule_position, train_one

N_TRAIN, B = 96, 16          # tiny_root: 96 training examples; 6 steps per epoch


def _spec(tiny_defaults, sampler, **over):
    return RunSpec.from_dict({**tiny_defaults, "matrix": "t", "sampler": sampler, **over})


def _train(tiny_root, path, spec, on_epoch=None):
    return train_one(spec, path, data_root=tiny_root, download=False, device="cpu",
                     on_epoch=on_epoch)


def test_schedule_position_by_epoch_fraction():
    assert [schedule_position(2, i, 6, 6) for i in range(6)] == [6, 7, 8, 9, 10, 11]
    assert [schedule_position(2, i, 3, 6) for i in range(3)] == [6.0, 8.0, 10.0]


def test_mean_weight_mode_minimises_the_plain_mean_of_weighted_losses(tiny_root, tiny_defaults, tmp_path):
    trainer = Trainer(_spec(tiny_defaults, {"name": "uniform"}), tmp_path / "r", data_root=tiny_root,
                      download=False, device=torch.device("cpu"))
    idx = torch.arange(8)
    inputs = trainer.data.train_images()[idx]
    weights = torch.tensor([2.0, 1, 1, 1, 1, 1, 1, 1])
    grads = {}
    for mode in ("mean", "normalized"):
        trainer.sampler.next_batch = lambda ctx: samplers.Batch(idx=idx, inputs=inputs, weights=weights,
                                                                weight_mode=mode)
        trainer.train_step(0.0)                        # lr 0: the model does not move
        grads[mode] = [p.grad.clone() for p in trainer.net.parameters()]
    losses = F.cross_entropy(trainer.net(inputs), trainer.data.y_train[idx], reduction="none")
    expected = torch.autograd.grad((weights * losses).mean(), list(trainer.net.parameters()))
    for g, e in zip(grads["mean"], expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)
    ratio = weights.sum() / len(weights)               # normalized = mean / (sum w / b)
    for g, e in zip(grads["normalized"], expected):
        torch.testing.assert_close(g * ratio, e, rtol=1e-4, atol=1e-6)


def test_infobatch_prunes_steps_and_the_schedule_spans_the_real_steps(tiny_root, tiny_defaults, tmp_path):
    spec = _spec(tiny_defaults, {"name": "infobatch", "ratio": 0.5, "delta": 0.67}, epochs=3)
    assert _train(tiny_root, tmp_path / "r", spec).status == "done"
    it = pd.read_csv(tmp_path / "r" / "iterations.csv")
    ep = pd.read_csv(tmp_path / "r" / "epochs.csv")
    steps = it.groupby("epoch").size().tolist()
    # epoch 1: nothing below the initial score; epoch 2 prunes (2 <= 3 * .67); epoch 3 full
    assert steps[0] == 6 and steps[1] < 6 and steps[2] == 6
    assert ep.infobatch_pruning.tolist()[1:] == [1.0, 1.0, 0.0]
    assert (it.iteration == list(range(1, len(it) + 1))).all() and (it.backprops == it.iteration * B).all()
    assert it.lr.iloc[0] == pytest.approx(0.05) and it.lr.iloc[-1] == pytest.approx(0.001)
    assert (it.lr.diff().iloc[1:] < 0).all()
    # epoch 2's steps sit on its share of the schedule (epoch fraction), not compressed
    e2 = it[it.epoch == 2].lr.tolist()
    assert e2[0] == pytest.approx(0.05 + (0.001 - 0.05) * 6 / 17)


def test_rho_loss_counts_the_il_model_and_the_big_batches(tiny_root, tiny_defaults, tmp_path):
    spec = _spec(tiny_defaults, {"name": "rho_loss", "n_big": 32, "il_epochs": 2,
                                 "il_batch_size": 16}, epochs=1)
    assert _train(tiny_root, tmp_path / "r", spec).status == "done"
    ep = pd.read_csv(tmp_path / "r" / "epochs.csv")
    it = pd.read_csv(tmp_path / "r" / "iterations.csv")
    il_train, il_score = 2 * 48, 48                     # 48 odd (holdout) / 48 even examples
    assert ep.backprops.iloc[1] == il_train + 6 * B
    assert ep.forwards.iloc[1] == il_train + il_score + 6 * (32 + B)
    assert it.backprops.iloc[0] == il_train + B        # the IL cost lands before step 1
    assert ep.rho_il_mean.iloc[1] > 0


def test_online_batch_selection_and_upper_bound_is_run_and_count(tiny_root, tiny_defaults, tmp_path):
    spec = _spec(tiny_defaults, {"name": "online_batch_selection", "recompute_epochs": 1})
    assert _train(tiny_root, tmp_path / "o", spec).status == "done"
    ep = pd.read_csv(tmp_path / "o" / "epochs.csv")
    # the reference's schedule: epoch 1 uniform, one recomputation before epoch 2
    assert ep.forwards.iloc[1] == 6 * B and ep.forwards.iloc[2] == N_TRAIN + 12 * B
    assert ep.backprops.iloc[2] == 12 * B and list(ep.obs_recomputed.iloc[1:]) == [0.0, 1.0]
    spec = _spec(tiny_defaults, {"name": "upper_bound_is", "tau_th": 0.0})
    assert _train(tiny_root, tmp_path / "u", spec).status == "done"
    ep = pd.read_csv(tmp_path / "u" / "epochs.csv")
    # the first step is uniform (tau starts at 0); every later one presamples B = 3b
    assert ep.forwards.iloc[2] == 12 * B + 11 * 3 * B and ep.ubis_is_frac.iloc[2] == 1.0


def test_train_update_scoring_keeps_the_batchnorm_update_of_a_plain_forward(tiny_root, tiny_defaults,
                                                                           tmp_path):
    """RHO-LOSS's reference selection forward: train mode, no grad, running statistics
    updated; ``train`` restores them; both score with batch statistics."""
    import copy
    spec = _spec(tiny_defaults, {"name": "rho_loss", "n_big": 32, "il_epochs": 1})
    trainer = Trainer(spec, tmp_path / "r", data_root=tiny_root, download=False,
                      device=torch.device("cpu"))
    trainer.net.train()
    idx = torch.arange(16)
    inputs = trainer.ctx.augment(idx)
    twin = copy.deepcopy(trainer.net)
    with torch.no_grad():
        want = F.cross_entropy(twin(inputs), trainer.data.y_train[idx], reduction="none")
    bufs = lambda net: [b.clone() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)
                        for b in (m.running_mean, m.running_var, m.num_batches_tracked)]
    before = bufs(trainer.net)
    restored = trainer.ctx.score(idx, inputs, mode="train")
    assert all(torch.equal(x, y) for x, y in zip(before, bufs(trainer.net)))
    got = trainer.ctx.score(idx, inputs, mode="train_update")
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(restored, want)
    assert all(torch.equal(x, y) for x, y in zip(bufs(twin), bufs(trainer.net)))   # updated
    assert not all(torch.equal(x, y) for x, y in zip(before, bufs(trainer.net)))
    assert trainer.ctx.forwards == 32 and trainer.net.training


class _Stop(Exception):
    pass


@pytest.mark.parametrize("sampler", [
    {"name": "infobatch", "delta": 0.5},
    {"name": "rho_loss", "n_big": 32, "il_epochs": 1},
    {"name": "upper_bound_is", "tau_th": 1.0},
    {"name": "online_batch_selection", "recompute_epochs": 2},
])
def test_interrupted_after_an_epoch_then_resumed_writes_the_same_csvs(tiny_root, tiny_defaults,
                                                                      tmp_path, sampler):
    spec = _spec(tiny_defaults, sampler, epochs=3)
    _train(tiny_root, tmp_path / "a", spec)

    def stop(epoch, row):
        if epoch == 1:
            raise _Stop

    with pytest.raises(_Stop):
        _train(tiny_root, tmp_path / "b", spec, on_epoch=stop)
    _train(tiny_root, tmp_path / "b", spec)
    for name in ("iterations.csv", "epochs.csv"):
        a = pd.read_csv(tmp_path / "a" / name).drop(columns=["train_seconds", "eval_seconds",
                                                             "diag_seconds"], errors="ignore")
        b = pd.read_csv(tmp_path / "b" / name).drop(columns=["train_seconds", "eval_seconds",
                                                             "diag_seconds"], errors="ignore")
        pd.testing.assert_frame_equal(a, b)
