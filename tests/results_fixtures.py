"""Write fake-but-well-formed run folders (README "Outputs") with curves the test chooses.

Why: the plotting tests must check *what is drawn* against numbers known in advance,
and the runner's tests need result folders without training anything. Both use this.

Each run folder gets ``config.yaml``, ``run.json``, ``epochs.csv`` and ``iterations.csv``
in the trainer's format. Curves are plain functions, e.g. ``acc=lambda epoch: 0.1 * epoch``.
Runs that are not ``done`` can be cut short with ``epochs_written`` (as a crash would).

The ``run_id`` follows the design's pattern (``<dataset>-<arm>[-bank<N>]-seed<S>-<hash8>``)
with a hash of the spec; it is not guaranteed to equal the runner's own hash.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Sampler behind each well-known arm name (the arm is the matrix's name for a bundle).
ARM_SAMPLERS = {"sgd": "uniform", "adam": "uniform", "uniform_lr1e-3": "uniform",
                "impon_low": "impon"}


def _default_acc(epoch: int) -> float:
    return min(0.95, 0.1 + 0.1 * epoch)


def _default_loss(iteration: int) -> float:
    return 0.2 + 2.1 * math.exp(-iteration / 20)


@dataclass
class FakeRun:
    """One run folder to write. Every field has a sensible default."""

    arm: str = "sgd"
    seed: int = 0
    dataset: str = "cifar10-5k"
    matrix: str = "fake"
    epochs: int = 5
    bank_size: int | None = None
    sampler: str | None = None  # default: ARM_SAMPLERS.get(arm, arm)
    status: str = "done"
    error: str | None = None
    n_train: int = 512
    n_test: int = 256
    subset: dict[str, int] | None = None
    batch_size: int = 128
    acc: Callable[[int], float] = _default_acc  # test accuracy (fraction) after epoch e
    loss: Callable[[int], float] = _default_loss  # training loss at iteration i (from 1)
    train_seconds: Callable[[int], float] | float = 2.0  # per epoch, epochs >= 1
    eval_seconds: float = 0.5
    forwards_per_step: int | None = None  # default batch_size (+ bank_size for oracle-like)
    epochs_written: int | None = None  # default: all epochs (done) / about half (others)
    device: str = "cpu"
    extra_spec: dict[str, Any] = field(default_factory=dict)
    #: record the sampler's plot traits in run.json, as the runner does (False: a run made
    #: before the runner recorded them)
    plot_traits: bool = True

    @property
    def sampler_name(self) -> str:
        return self.sampler or ARM_SAMPLERS.get(self.arm, self.arm)

    def spec(self) -> dict[str, Any]:
        """The resolved RunSpec as the trainer writes it to config.yaml."""
        sampler: dict[str, Any] = {"name": self.sampler_name}
        if self.bank_size is not None:
            sampler.update(bank_size=self.bank_size, lr=1.0e-6, features="pixels",
                           reset="epoch", select="highest", init="zeros", diagnose_every=0)
        spec: dict[str, Any] = {
            "matrix": self.matrix, "arm": self.arm, "dataset": self.dataset,
            "subset": self.subset, "seed": self.seed, "epochs": self.epochs,
            "batch_size": self.batch_size, "eval_batch_size": 1024,
            "model": {"name": "resnet18", "width": 0.25},
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False,
                          "weight_decay": 5.0e-4},
            "schedule": {"name": "linear", "final_lr": 1.0e-6},
            "sampler": sampler,
            "augment": {"crop_padding": 4, "flip": "auto"},
            "channels_last": True, "amp": "off", "compile": False,
        }
        _deep_update(spec, self.extra_spec)
        return spec

    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.spec(), sort_keys=True).encode()).hexdigest()[:8]
        bank = f"-bank{self.bank_size}" if self.bank_size is not None else ""
        return f"{self.dataset}-{self.arm}{bank}-seed{self.seed}-{digest}"


def _deep_update(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


def write_run(matrix_dir: Path, run: FakeRun) -> Path:
    """Write one run folder under ``matrix_dir`` and return its path."""
    folder = Path(matrix_dir) / run.run_id()
    folder.mkdir(parents=True, exist_ok=True)
    spec = run.spec()
    steps = run.n_train // run.batch_size
    if run.epochs_written is not None:
        last_epoch = run.epochs_written
    else:
        last_epoch = run.epochs if run.status == "done" else max(1, run.epochs // 2)
    fwd = run.forwards_per_step
    if fwd is None:
        oracle = run.sampler_name == "loss_oracle"
        fwd = run.batch_size + ((run.bank_size or 0) if oracle else 0)

    it_rows = ["iteration,epoch,loss,lr,backprops,forwards"]
    ep_rows = ["epoch,iteration,train_loss,test_loss,test_acc,backprops,forwards,"
               "train_seconds,eval_seconds"]
    total = steps * run.epochs
    ep_rows.append(f"0,0,,{2.3:.6f},{run.acc(0):.6f},0,0,0.0,{run.eval_seconds}")
    for epoch in range(1, last_epoch + 1):
        losses = []
        for step in range(1, steps + 1):
            i = (epoch - 1) * steps + step
            loss = run.loss(i)
            losses.append(loss)
            lr = 0.1 + (1e-6 - 0.1) * (i - 1) / max(1, total - 1)
            it_rows.append(f"{i},{epoch},{loss:.6f},{lr:.6g},{i * run.batch_size},{i * fwd}")
        i = epoch * steps
        seconds = run.train_seconds(epoch) if callable(run.train_seconds) else run.train_seconds
        acc = run.acc(epoch)
        ep_rows.append(f"{epoch},{i},{sum(losses) / len(losses):.6f},{2.3 * (1 - acc):.6f},"
                       f"{acc:.6f},{i * run.batch_size},{i * fwd},{seconds},{run.eval_seconds}")

    (folder / "config.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (folder / "iterations.csv").write_text("\n".join(it_rows) + "\n")
    (folder / "epochs.csv").write_text("\n".join(ep_rows) + "\n")
    info = {
        "run_id": folder.name, "status": run.status, "error": run.error, "spec": spec,
        "dataset": {"name": run.dataset, "n_train": run.n_train, "n_test": run.n_test,
                    "num_classes": 10, "fingerprint": "0" * 16, "source": "fake",
                    "subset": run.subset},
        "versions": {"python": "3.11", "torch": "fake"}, "device": run.device,
        "git": {"commit": "0" * 40, "dirty": False}, "host": "test",
        "started": "2026-01-01T00:00:00", "ended": "2026-01-01T00:01:00", "seconds": 60.0,
    }
    if run.plot_traits:
        from benchmarks.traits import plot_traits  # the runner's own record (imports samplers)
        info["plot_traits"] = plot_traits(run.sampler_name)
    (folder / "run.json").write_text(json.dumps(info, indent=2))
    return folder


def write_matrix(matrix_dir: Path, runs: Iterable[FakeRun]) -> list[Path]:
    """Write several run folders into ``matrix_dir`` (e.g. ``tmp_path / "results" / name``)."""
    return [write_run(matrix_dir, run) for run in runs]


def left_out_after(matrix_dir: Path, damage: Callable[[Path], Any]) -> Any:
    """Write a good run (seed 0) and a run (seed 1) that ``damage`` breaks, load the matrix,
    check only the good run's epochs are used, and return (matrix, the left-out run's row)."""
    from plots.aggregate import load_matrix

    good, broken = FakeRun(seed=0), FakeRun(seed=1)
    write_run(matrix_dir, good)
    damage(write_run(matrix_dir, broken))
    res = load_matrix(matrix_dir)
    assert list(res.epochs["run_id"].unique()) == [good.run_id()]
    (row,) = res.left_out.itertuples()
    assert row.run_id == broken.run_id()
    return res, row
