"""Sync-freedom of the training step on CPU: every registered sampler, ``train_step`` and
``begin_epoch``, recorded op by op (``tests/sync_harness.py`` says what counts as a sync
and the limits of seeing it on a CPU); and the harness itself catching inserted syncs."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

import samplers
from benchmarks.config import RunSpec
from benchmarks.train import Trainer
from data_fixtures import make_prepared
from sync_harness import (SyncRecorder, assert_no_sync, classify_op, record_call,
                          sampler_case)

N_TRAIN, BATCH = 64, 16


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on cores shared with other jobs two OpenMP threads stall at
    barriers on a model this tiny (see tests/test_perf.py); the ops dispatched are the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trainer(tmp_path: Path, sampler: dict, placement: str = "device", **top) -> Trainer:
    root = tmp_path / "data"
    if not (root / "tiny").exists():
        make_prepared(root, "tiny", n_train=N_TRAIN, n_test=32, num_classes=10, seed=0)
    spec = RunSpec.from_dict({"dataset": "tiny", "batch_size": BATCH, "eval_batch_size": 64,
                              "epochs": 2, "model": {"name": "resnet18", "width": 0.0625},
                              "optimizer": {"name": "sgd", "lr": 0.05}, "sampler": sampler,
                              **top})
    return Trainer(spec, tmp_path / "run", data_root=root, download=False,
                   device=torch.device("cpu"), data_placement=placement)


def _epoch_expected(case, rec) -> Counter:
    """What a begin_epoch may issue: its documented epoch syncs, plus per-chunk syncs only
    if it scored (a per-step sync rule does not apply to an epoch start that scored none)."""
    return (case.expected(rec.score_calls) if rec.score_calls else Counter()) + case.epoch_expected


@pytest.mark.parametrize("placement", ["device", "host"])
@pytest.mark.parametrize("name", samplers.available())
def test_train_step_and_begin_epoch_never_sync(name: str, placement: str, tmp_path: Path):
    """Every registered sampler (new ones are picked up automatically): begin_epoch of the
    first and second epoch and steps past the end of an epoch's draw (uniform's new
    permutation and p/c-SGD's redraw inside next_batch) issue no op that syncs on CUDA,
    except a sampler's documented, counted ones (Selective Backprop: one per chunk); with
    the images on the device and host-resident (``--data-placement host``: the gathers
    take their indices on the device, never on the host)."""
    case = sampler_case(name, N_TRAIN, BATCH)
    params = dict(case.params)
    trainer = _trainer(tmp_path, {"name": name, **params}, placement)
    assert trainer.data.placement == placement
    first = record_call(trainer, lambda: trainer.begin_epoch(1))
    if not case.once_per_run_setup:
        assert_no_sync(first.recorder, _epoch_expected(case, first), f"{name} begin_epoch(1)")
    scored = 0
    for i in range(trainer.steps_per_epoch + 1):
        rec = record_call(trainer, lambda: trainer.train_step(0.05))
        assert_no_sync(rec.recorder, case.expected(rec.score_calls), f"{name} train_step {i}")
        scored += rec.score_calls
    second = record_call(trainer, lambda: trainer.begin_epoch(2))
    assert_no_sync(second.recorder, _epoch_expected(case, second),
                   f"{name} begin_epoch(2)")
    if samplers.get(name).host_syncs.per_score_call:  # the counted exception really ran
        assert scored > trainer.steps_per_epoch + 1


def test_selective_backprop_syncs_exactly_once_per_scored_chunk(tmp_path: Path):
    """beta 3 keeps ~1/4 of each chunk, so a step scores several chunks: one nonzero each."""
    trainer = _trainer(tmp_path, {"name": "selective_backprop", "beta": 3, "prime_epochs": 0})
    trainer.begin_epoch(1)
    per_step = []
    for _ in range(3):
        rec = record_call(trainer, lambda: trainer.train_step(0.05))
        assert rec.recorder.counts() == Counter({"nonzero": rec.score_calls})
        per_step.append(rec.score_calls)
    assert max(per_step) >= 2  # a step that needed more than one chunk was seen


def test_amp_bf16_and_adam_steps_never_sync(tmp_path: Path):
    """The bf16 autocast path and Adam (whose host-side step counter is exempt) too."""
    trainer = _trainer(tmp_path, {"name": "impon", "bank_size": 2 * BATCH}, amp="bf16",
                       optimizer={"name": "adam", "lr": 1e-3})
    trainer.begin_epoch(1)
    for i in range(3):
        rec = record_call(trainer, lambda: trainer.train_step(1e-3))
        assert_no_sync(rec.recorder, None, f"adam+bf16 step {i}")


def test_noisy_label_counting_never_syncs_a_step(tmp_path: Path):
    """label_noise: the trainer's noisy-fraction count stays on the device during steps."""
    trainer = _trainer(tmp_path, {"name": "loss_oracle", "bank_size": 2 * BATCH},
                       label_noise={"kind": "symmetric", "rate": 0.3})
    assert trainer._noisy is not None and bool(trainer._noisy.any())
    rec = record_call(trainer, lambda: trainer.begin_epoch(1))
    assert_no_sync(rec.recorder, None, "begin_epoch(1) with label noise")
    for i in range(3):
        rec = record_call(trainer, lambda: trainer.train_step(0.05))
        assert_no_sync(rec.recorder, None, f"label-noise step {i}")
    assert 0 < int(trainer._noisy_seen) <= 3 * BATCH


def test_harness_catches_an_item_inserted_into_a_step(tmp_path: Path, monkeypatch):
    trainer = _trainer(tmp_path, {"name": "uniform"})
    trainer.begin_epoch(1)
    observe = trainer.sampler.observe

    def observe_with_item(idx, losses, p_true):
        if losses.mean().item() > 1e9:  # the kind of line that slips in
            raise AssertionError
        observe(idx, losses, p_true)

    monkeypatch.setattr(trainer.sampler, "observe", observe_with_item)
    rec = record_call(trainer, lambda: trainer.train_step(0.05))
    with pytest.raises(AssertionError, match="_local_scalar_dense") as err:
        assert_no_sync(rec.recorder, None)
    assert "test_sync.py" in str(err.value)  # points at the offending line


def test_harness_catches_a_host_copy_in_a_step(tmp_path: Path, monkeypatch):
    trainer = _trainer(tmp_path, {"name": "uniform"})
    trainer.begin_epoch(1)
    next_batch = trainer.sampler.next_batch

    def next_batch_logged(ctx):
        batch = next_batch(ctx)
        batch.idx.cpu()
        return batch

    monkeypatch.setattr(trainer.sampler, "next_batch", next_batch_logged)
    rec = record_call(trainer, lambda: trainer.train_step(0.05))
    assert rec.recorder.counts() == Counter({"Tensor.cpu": 1})


@pytest.mark.parametrize("snippet, op", [
    (lambda x: x.sum().item(), "_local_scalar_dense"),
    (lambda x: bool(x[0] > 0), "_local_scalar_dense"),
    (lambda x: float(x.max()), "_local_scalar_dense"),
    (lambda x: torch.nonzero(x > 0), "nonzero"),
    (lambda x: x[x > 0], "index"),
    (lambda x: x.masked_select(x > 0), "masked_select"),
    (lambda x: torch.unique(x), "_unique2"),
    (lambda x: torch.repeat_interleave(torch.tensor([1, 2])), "repeat_interleave"),
    (lambda x: x.repeat_interleave(torch.ones(4, dtype=torch.long)), "repeat_interleave"),
    (lambda x: torch.multinomial(x.abs() + 1, 2), "multinomial"),
    (lambda x: x.tolist(), "Tensor.tolist"),
    (lambda x: x.numpy(), "Tensor.numpy"),
    (lambda x: torch.equal(x, x), "equal"),
])
def test_each_kind_of_sync_is_flagged(snippet, op):
    x = torch.randn(4)
    with SyncRecorder() as rec:
        snippet(x)
    assert op in rec.counts(), rec.report()


@pytest.mark.parametrize("snippet", [
    lambda x: x[torch.tensor([0, 2])],
    lambda x: torch.where(x > 0, x, torch.zeros_like(x)),
    lambda x: x.repeat_interleave(2),
    lambda x: x.repeat_interleave(torch.ones(4, dtype=torch.long), output_size=4),
    lambda x: torch.multinomial(x.abs() + 1, 8, replacement=True),
    lambda x: torch.topk(x, 2).indices,
    lambda x: x.masked_fill(x > 0, 0.0),
    lambda x: x.to("cpu"),
])
def test_sync_free_ops_are_not_flagged(snippet):
    x = torch.randn(4)
    with SyncRecorder() as rec:
        snippet(x)
    assert not rec.events, rec.report()


def test_classify_op_sees_copies_to_the_host_from_another_device():
    """What a CPU run cannot exercise for real: a device->host copy (meta stands in)."""
    src = torch.empty(3, device="meta")
    why = classify_op(torch.ops.aten._to_copy.default, (src,), {"device": torch.device("cpu")})
    assert why is not None and "host" in why
    dst = torch.empty(3)
    assert classify_op(torch.ops.aten.copy_.default, (dst, src), {}) is not None
    assert classify_op(torch.ops.aten.copy_.default, (dst, dst), {}) is None
