"""The CUDA speed knobs (``amp: bf16``, ``compile: true``, ``channels_last``) on CPU.

Why on CPU: the suite's users run on GPUs, its test machines have none. The knobs take the
same code path on every device (CPU autocast with ``device_type`` from the run's device,
torch.compile's inductor C++ backend, oneDNN's channels_last kernels), so running them here
checks the wiring: finite losses and the same run files as a plain run apart from numbers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.config import RunSpec
from benchmarks.train import Trainer, train_one

PLAIN = {"channels_last": False, "amp": "off", "compile": False}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared cores: see tests/test_perf.py
    yield
    torch.set_num_threads(threads)


def _spec(tiny_defaults: dict, **knobs) -> RunSpec:
    return RunSpec.from_dict({**tiny_defaults, "epochs": 1, "eval_batch_size": 64,
                              **PLAIN, **knobs})


def _files(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(run_dir / "iterations.csv"), pd.read_csv(run_dir / "epochs.csv")


def _same_structure(a: Path, b: Path) -> pd.DataFrame:
    """Same files, columns, rows and counters; only float values may differ."""
    (it_a, ep_a), (it_b, ep_b) = _files(a), _files(b)
    for x, y in ((it_a, it_b), (ep_a, ep_b)):
        assert list(x.columns) == list(y.columns) and len(x) == len(y)
    for col in ("iteration", "epoch", "lr", "backprops", "forwards"):
        assert it_a[col].tolist() == it_b[col].tolist(), col
    assert ep_a.epoch.tolist() == ep_b.epoch.tolist()
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    assert np.isfinite(it_b.loss).all() and np.isfinite(ep_b.test_loss).all()
    return it_b


@pytest.fixture
def plain_run(tiny_root, tiny_defaults, tmp_path) -> Path:
    run = tmp_path / "plain"
    assert train_one(_spec(tiny_defaults), run, data_root=tiny_root, download=False,
                     device="cpu").status == "done"
    return run


def test_channels_last_on_cpu(tiny_root, tiny_defaults, tmp_path, plain_run):
    spec = _spec(tiny_defaults, channels_last=True)
    trainer = Trainer(spec, tmp_path / "cl", data_root=tiny_root, download=False,
                      device=torch.device("cpu"))
    conv = next(m for m in trainer.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert trainer._augment(torch.arange(4)).is_contiguous(memory_format=torch.channels_last)
    assert train_one(spec, tmp_path / "cl", data_root=tiny_root, download=False,
                     device="cpu").status == "done"
    _same_structure(plain_run, tmp_path / "cl")


def test_amp_bf16_on_cpu_autocasts(tiny_root, tiny_defaults, tmp_path, plain_run):
    spec = _spec(tiny_defaults, amp="bf16")
    trainer = Trainer(spec, tmp_path / "x", data_root=tiny_root, download=False,
                      device=torch.device("cpu"))
    seen = []
    conv = next(m for m in trainer.net.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    trainer.begin_epoch(1)
    loss = trainer.train_step(0.05)
    assert seen == [torch.bfloat16] and loss.dtype == torch.float32  # loss in float32
    assert train_one(spec, tmp_path / "amp", data_root=tiny_root, download=False,
                     device="cpu").status == "done"
    it = _same_structure(plain_run, tmp_path / "amp")
    plain = _files(plain_run)[0]
    assert not np.array_equal(it.loss.to_numpy(), plain.loss.to_numpy())  # bf16 really ran


@pytest.mark.slow
def test_compile_on_cpu(tiny_root, tiny_defaults, tmp_path, plain_run, monkeypatch):
    """inductor's CPU backend (needs a C compiler) on a few steps of the tiny model.

    Slow (minutes on loaded shared cores: the training and the evaluation graph are each
    generated and built with gcc). Compiling in this process (``compile_threads`` 1)
    spares starting a pool of worker processes that each import torch.
    """
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "compile_threads", 1)
    spec = _spec(tiny_defaults, compile=True)
    trainer = Trainer(spec, tmp_path / "c", data_root=tiny_root, download=False,
                      device=torch.device("cpu"))
    assert isinstance(trainer.model, torch._dynamo.eval_frame.OptimizedModule)
    assert trainer.model._orig_mod is trainer.net
    assert train_one(spec, tmp_path / "c", data_root=tiny_root, download=False,
                     device="cpu").status == "done"
    it = _same_structure(plain_run, tmp_path / "c")
    plain = _files(plain_run)[0]
    assert it.loss.to_numpy() == pytest.approx(plain.loss.to_numpy(), rel=1e-3, abs=1e-3)
