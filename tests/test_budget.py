"""Budgeted training (Arazo et al. 2021) and the reference protocols in the trainer.

What is pinned here: ``budget`` is a hash-stable RunSpec key; an epoch runs
``int(n * budget / b)`` steps (the reference's ``max_it``) with the per-iteration schedule
spanning exactly the budgeted steps; the samplers' ``epoch_steps`` hook sets each epoch's
count and a resumed run replays it; ``unif_sgd`` trains a fresh uniform subset per epoch;
eval-mode scoring uses (and leaves alone) BatchNorm's running statistics.
"""
from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

import samplers
from benchmarks import config
from benchmarks.config import RunSpec
from benchmarks.errors import UserError
from benchmarks.optim import lr_at
from benchmarks.train import Trainer, train_one
from samplers.uniform import Uniform
from sampler_fixtures import build, make_toy, reseed, run
from conftest import Interrupt, stop_after


# --------------------------------------------------------------------------- the key


def _old_hash(spec: dict) -> str:
    """The hash as computed before ``budget``/``validation``/``score_mode`` (and the later
    ``label_noise`` and ``model.stem``) existed."""
    body = {k: v for k, v in spec.items() if k not in ("matrix", "budget", "validation",
                                                       "label_noise")}
    body["sampler"] = {k: v for k, v in body["sampler"].items() if k != "score_mode"}
    body["model"] = {k: v for k, v in body["model"].items() if k != "stem"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:8]


def test_budget_key_defaults_to_1_and_keeps_published_ids():
    spec = RunSpec.from_dict({"dataset": "cifar10", "sampler": {"name": "p_sgd", "replacement": True}})
    assert spec["budget"] == 1.0 and spec.hash == _old_hash(spec.to_dict())
    assert "budget" not in spec.run_id
    half = RunSpec.from_dict({"dataset": "cifar10", "budget": 0.5, "sampler": {"name": "p_sgd"}})
    assert half.run_id.startswith("cifar10-p_sgd-budget0.5-seed0-")
    assert half.hash != _old_hash(half.to_dict())


def test_published_selective_backprop_ids_mean_train_mode_scoring():
    """Runs made before ``score_mode`` existed scored in train mode: a spec saying
    ``score_mode: train`` has their id; the new default (eval, the reference) has another."""
    old = {"dataset": "cifar10", "sampler": {"name": "selective_backprop", "beta": 3,
                                             "history": 1024, "prime_epochs": 0}}
    train = RunSpec.from_dict({**old, "sampler": {**old["sampler"], "score_mode": "train"}})
    assert train.hash == _old_hash(train.to_dict())
    default = RunSpec.from_dict(old)
    assert default["sampler"]["score_mode"] == "eval" and default.hash != train.hash
    assert config.HASH_STABLE_DEFAULTS["sampler.score_mode"] == "train"
    assert config.HASH_STABLE_DEFAULTS["budget"] == 1.0


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, "all"])
def test_budget_outside_0_1_is_a_user_error(bad):
    with pytest.raises(UserError, match="budget"):
        RunSpec.from_dict({"dataset": "cifar10", "budget": bad})


# --------------------------------------------------------------------------- trainer


def _train(tiny_root, tmp_path, name, **over):
    spec = RunSpec.from_dict({"matrix": "t", **over})
    d = tmp_path / name
    assert train_one(spec, d, data_root=tiny_root, download=False, device="cpu").status == "done"
    return pd.read_csv(d / "iterations.csv"), pd.read_csv(d / "epochs.csv"), d


@pytest.mark.parametrize("budget,steps", [(0.5, 3), (0.3, 1), (1.0, 6)])
def test_budget_sets_steps_per_epoch_and_the_schedule_spans_them(tiny_root, tiny_defaults,
                                                                 tmp_path, budget, steps):
    # tiny: 96 examples, batch 16 -> int(96 * f / 16) steps (0.3: int(1.8) = 1)
    it, ep, _ = _train(tiny_root, tmp_path, "b", **{**tiny_defaults, "budget": budget})
    assert len(it) == 2 * steps and it.groupby("epoch").size().tolist() == [steps, steps]
    assert ep.iteration.tolist() == [0, steps, 2 * steps]
    assert it.lr.iloc[0] == pytest.approx(0.05) and it.lr.iloc[-1] == pytest.approx(0.001)
    expected = [lr_at(i, 2 * steps, steps, 0.05, {"name": "linear", "final_lr": 0.001})
                for i in range(2 * steps)]
    assert it.lr.tolist() == pytest.approx(expected)


def test_budget_leaving_no_batch_is_a_user_error(tiny_root, tiny_defaults, tmp_path):
    spec = RunSpec.from_dict({**tiny_defaults, "budget": 0.1})  # int(9.6 / 16) = 0 steps
    with pytest.raises(UserError, match="no full batch"):
        train_one(spec, tmp_path / "r", data_root=tiny_root, download=False, device="cpu")
    # a setup failure is recorded (issue: arms must not silently go missing from reports)
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["status"] == "failed" and "no full batch" in info["error"]
    assert not (tmp_path / "r" / "iterations.csv").exists()


class _FewerSteps(Uniform):
    """Uniform, but epoch e trains ``default - e + 1`` steps (InfoBatch-like pruning)."""

    def epoch_steps(self, epoch, ctx, default):
        return default - epoch + 1


@pytest.fixture
def fewer_steps(monkeypatch):
    """``test_fewer_steps`` registered in a private copy of the registry (undone after), so
    the suite's registry-wide tests never see a test-only sampler."""
    from samplers import registry
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    samplers.register("test_fewer_steps")(_FewerSteps)


def test_epoch_steps_hook_sets_each_epoch_and_resume_replays(fewer_steps, tiny_root, tiny_defaults,
                                                             tmp_path):
    spec = {**tiny_defaults, "epochs": 3, "sampler": {"name": "test_fewer_steps"}}
    it, ep, _ = _train(tiny_root, tmp_path, "full", **spec)
    assert it.groupby("epoch").size().tolist() == [6, 5, 4]        # default 6, then fewer
    assert ep.iteration.tolist() == [0, 6, 11, 15] and it.loss.notna().all()
    plan = {"name": "linear", "final_lr": 0.001}                  # schedule over 3 x 6 planned
    # epochs of 6, 5, 4 steps; each step sits on the schedule by its fraction of the epoch
    # (train.schedule_position), so the run still ends where the schedule ends
    from benchmarks.train import schedule_position
    pos = [schedule_position(e, i, n, 6) for e, n in ((1, 6), (2, 5), (3, 4)) for i in range(n)]
    assert it.lr.tolist() == pytest.approx([lr_at(p, 18, 6, 0.05, plan) for p in pos])

    d = tmp_path / "resumed"
    run_spec = RunSpec.from_dict({"matrix": "t", **spec})
    d.mkdir()
    trainer = Trainer(run_spec, d, data_root=tiny_root, download=False, device=torch.device("cpu"))
    with pytest.raises(Interrupt):
        trainer.run(stop_after(1))                                  # checkpoint of epoch 1 on disk
    assert train_one(run_spec, d, data_root=tiny_root, download=False, device="cpu").status == "done"
    assert (d / "iterations.csv").read_bytes() == (tmp_path / "full" / "iterations.csv").read_bytes()


def test_eval_mode_scoring_uses_and_keeps_running_statistics(tiny_root, tiny_defaults, tmp_path):
    spec = RunSpec.from_dict({**tiny_defaults, "sampler": {"name": "selective_backprop"}})
    trainer = Trainer(spec, tmp_path / "r", data_root=tiny_root, download=False,
                      device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    bns = [m for m in trainer.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:  # running statistics far from any batch's, so using them is visible
        m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
        m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    before = [b.clone() for m in bns for b in (m.running_mean, m.running_var, m.num_batches_tracked)]
    trainer.net.train()
    idx = torch.arange(16)
    inputs = trainer.ctx.augment(idx)
    forwards = trainer.ctx.forwards
    got = trainer.ctx.score(idx, inputs, mode="eval")
    after = [b for m in bns for b in (m.running_mean, m.running_var, m.num_batches_tracked)]
    assert all(torch.equal(x, y) for x, y in zip(before, after))   # not updated
    assert trainer.net.training                                     # back in train mode
    assert trainer.ctx.forwards == forwards + 16                    # counted
    trainer.net.eval()
    with torch.no_grad():
        want = F.cross_entropy(trainer.net(inputs), trainer.data.y_train[idx], reduction="none")
    trainer.net.train()
    torch.testing.assert_close(got, want)                           # = an eval-mode forward
    train_mode = trainer.ctx.score(idx, inputs, mode="train")       # batch statistics instead
    assert not torch.allclose(got, train_mode, atol=1e-3)
    assert all(torch.equal(x, y) for x, y in zip(before, after))   # restored there too


# --------------------------------------------------------------------------- unif_sgd


def test_unif_sgd_trains_a_fresh_uniform_fraction_each_epoch():
    n, b, epochs = 20, 2, 2000
    toy = make_toy(n=n, b=b)
    toy.ctx.budget = 0.3                                   # int(20 * 0.3) = 6 examples
    s = build("unif_sgd")
    seen, subsets = torch.zeros(n), set()
    for epoch in range(1, epochs + 1):
        reseed(toy.ctx, 0, epoch)
        s.start_epoch(epoch, toy.ctx)
        idx = torch.cat([s.next_batch(toy.ctx).idx for _ in range(3)])  # int(20*0.3/2) = 3 steps
        assert len(set(idx.tolist())) == 6                 # distinct within the epoch
        seen[idx] += 1
        subsets.add(tuple(sorted(idx.tolist())))
    assert len(subsets) > epochs // 2                      # fresh subsets, not one fixed
    assert stats.chisquare(seen.numpy()).pvalue > 1e-3     # every example equally likely
    assert toy.ctx.forwards == 0


def test_unif_sgd_at_budget_1_is_a_permutation():
    toy = make_toy(n=12, b=4)
    batches = run(build("unif_sgd"), toy, seed=0, epochs=2)
    for e in range(2):
        idx = torch.cat([x.idx for x in batches[3 * e:3 * e + 3]])
        assert sorted(idx.tolist()) == list(range(12))


def test_rs2_without_replacement_uses_every_example_before_repeating_one():
    """RS2 without replacement (Okanovic et al. 2024): the examples trained, epoch after
    epoch, are consecutive chunks of a stream of permutations, so each n-aligned window of
    the stream is a permutation (the with-replacement rule fails this: its subsets are
    drawn independently each epoch)."""
    n, b, epochs = 20, 3, 40
    toy = make_toy(n=n, b=b)
    toy.ctx.budget = 0.3                                   # int(20 * 0.3 / 3) = 2 steps
    s = build("unif_sgd", draw="without_replacement")
    stream = []
    for epoch in range(1, epochs + 1):
        reseed(toy.ctx, 0, epoch)
        s.start_epoch(epoch, toy.ctx)
        stream += torch.cat([s.next_batch(toy.ctx).idx for _ in range(2)]).tolist()
    assert len(stream) == epochs * 6
    windows = [stream[i:i + n] for i in range(0, len(stream) - n + 1, n)]
    assert len(windows) == 12 and all(sorted(w) == list(range(n)) for w in windows)
    assert len({tuple(w) for w in windows}) == 12          # a new permutation each time
    state = s.state_dict()                                 # the stream position is state
    resumed = build("unif_sgd", draw="without_replacement")
    resumed.load_state_dict(state)
    nxt = []
    for sampler in (s, resumed):
        reseed(toy.ctx, 0, epochs + 1)
        sampler.start_epoch(epochs + 1, toy.ctx)
        nxt.append(torch.cat([sampler.next_batch(toy.ctx).idx for _ in range(2)]))
    assert torch.equal(nxt[0], nxt[1])


def test_rs2_with_replacement_is_the_default_and_keeps_published_ids():
    old = RunSpec.from_dict({"matrix": "m", "dataset": "cifar10", "arm": "unif_sgd",
                             "sampler": {"name": "unif_sgd"}})
    explicit = RunSpec.from_dict({"matrix": "m", "dataset": "cifar10", "arm": "unif_sgd",
                                  "sampler": {"name": "unif_sgd", "draw": "with_replacement"}})
    other = RunSpec.from_dict({"matrix": "m", "dataset": "cifar10", "arm": "unif_sgd",
                               "sampler": {"name": "unif_sgd", "draw": "without_replacement"}})
    assert old.run_id == explicit.run_id != other.run_id
    with pytest.raises(ValueError, match="draw"):
        build("unif_sgd", draw="sometimes")


def test_committed_runs_keep_their_ids_under_the_current_schema():
    """The run folders committed under results/ were made before later schema keys
    existed; resolving their recorded spec today must give the same run id (else the
    runner would train them again and the plots would not find them)."""
    from pathlib import Path
    folders = sorted(Path(__file__).resolve().parent.parent.glob("results/cpu_*/*/run.json"))
    if not folders:
        pytest.skip("no committed run folders")
    for path in folders:
        recorded = json.loads(path.read_text())
        assert RunSpec.from_dict(recorded["spec"]).run_id == path.parent.name, path


# --------------------------------------------------------------------------- matrices


def test_budget_matrices_expand_as_documented():
    from benchmarks import matrix
    runs = matrix.load("budget").runs
    assert len(runs) == 3 * 5 * 6 * 3
    assert sorted({r["budget"] for r in runs}) == [0.2, 0.3, 0.5, 0.7, 1.0]
    assert {r["arm"] for r in runs} == {"unif_sgd", "unif_sgd_rs2_wor", "p_sgd", "c_sgd", "impon",
                                        "selective_backprop"}
    assert {r["sampler"]["draw"] for r in runs if r["arm"].startswith("unif_sgd")} == {
        "with_replacement", "without_replacement"}
    cpu = matrix.load("cpu_budget").runs
    assert len({r["seed"] for r in cpu}) >= 3 and {r["dataset"] for r in cpu} == {"cifar10-5k"}
    beta0 = [r for r in cpu if r["arm"] == "selective_backprop_beta0"]
    assert beta0 and all(r["sampler"]["beta"] == 0 for r in beta0)
    paper = {r["arm"]: r for r in matrix.load("paper").runs}
    assert paper["sgd"]["optimizer"]["weight_decay"] == 1e-4
    assert paper["selective_backprop"]["sampler"]["score_mode"] == "eval"
    assert paper["selective_backprop"]["sampler"]["prime_epochs"] == 1
    assert paper["p_sgd"]["sampler"]["replacement"] is False


def test_cpu_budget_matrix_runs_end_to_end_on_tiny_data(tiny_root, tmp_path):
    """cpu_budget's arms, shrunk to smoke size (every arm at budget 0.5, two at 1.0),
    through the trainer and plots.budget: every run finishes with int(f*n/b) steps and the
    budget figure is drawn from the run folders."""
    from benchmarks import matrix
    from plots import budget
    from plots.aggregate import load_matrix
    over = {"dataset": "tiny", "epochs": 1, "batch_size": 16, "eval_batch_size": 64}
    runs = [r for r in matrix.load("cpu_budget").runs
            if r["seed"] == 0 and (r["budget"] == 0.5
                                   or (r["budget"] == 1.0 and r["arm"] in ("unif_sgd", "p_sgd")))]
    assert len(runs) == 9
    root = tmp_path / "results" / "cpu_budget"
    for r in runs:
        raw = r.to_dict()
        raw.update(over)
        raw["model"]["width"] = 0.0625
        if r["sampler"]["name"] == "selective_backprop":
            raw["sampler"]["history"] = 64
        if r["sampler"]["name"] == "impon":
            raw["sampler"]["bank_size"] = 64             # the bank must fit 96 examples
        spec = RunSpec.from_dict(raw)
        assert train_one(spec, root / spec.run_id, data_root=tiny_root, download=False,
                         device="cpu").status == "done"
        steps = len(pd.read_csv(root / spec.run_id / "iterations.csv"))
        assert steps == int(96 * spec["budget"] / 16)
    fig = budget.budget_accuracy(load_matrix(root), root / "figures")
    assert fig is not None and (root / "figures" / "budget_accuracy.png").exists()
    assert len(budget.budget_table(load_matrix(root))) == 9
