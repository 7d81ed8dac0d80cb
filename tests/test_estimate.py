"""The --dry-run estimate (issue 10 item 14): stable logic, tested without real time."""
from __future__ import annotations

import itertools

import pytest
import torch

from benchmarks import estimate
from benchmarks.config import RunSpec
from benchmarks.estimate import StepTime, time_steps


class FakeClock:
    """A clock that advances by the scripted duration of each step."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = iter(durations)

    def __call__(self) -> float:
        return self.now

    def step(self) -> None:
        self.now += next(self.durations)


def test_warm_up_is_dropped_and_median_and_iqr_are_reported():
    # 4 slow warm-up steps, then 4 steady ones with one outlier (a busy machine)
    clock = FakeClock([3.0, 2.0, 1.5, 1.2, 1.0, 1.1, 0.9, 9.0])
    t = time_steps(clock.step, clock=clock, budget_s=0.0, min_steps=8, max_steps=8)
    assert t.steps == 4
    assert t.median == pytest.approx(1.05)          # the outlier does not move it
    assert t.low == pytest.approx(0.975) and t.high == pytest.approx(3.075)


def test_budget_and_bounds_on_the_number_of_steps():
    clock = FakeClock(itertools.repeat(0.5))
    assert time_steps(clock.step, clock=clock, budget_s=3.0, min_steps=2, max_steps=100).steps == 3
    clock = FakeClock(itertools.repeat(10.0))         # slow device: min_steps only
    assert time_steps(clock.step, clock=clock, budget_s=3.0, min_steps=6, max_steps=100).steps == 3
    clock = FakeClock(itertools.repeat(1e-6))         # fast device: max_steps caps it
    assert time_steps(clock.step, clock=clock, budget_s=3.0, min_steps=2, max_steps=10).steps == 5


def test_same_timings_give_the_same_estimate():
    # The estimate is a pure function of the step durations: equal inputs, equal answers.
    script = [2.0, 1.0, 1.0, 1.0, 0.8, 1.2, 1.0, 1.0]
    a = time_steps((c := FakeClock(script)).step, clock=c, budget_s=0, min_steps=8, max_steps=8)
    b = time_steps((d := FakeClock(script)).step, clock=d, budget_s=0, min_steps=8, max_steps=8)
    assert a == b


def test_timing_runs_with_a_fixed_thread_count(monkeypatch):
    seen = []

    def fake_time_steps(step, sync=None, **kw):
        seen.append(torch.get_num_threads())
        return StepTime(1.0, 0.5, 2.0, 3)

    monkeypatch.setattr(estimate, "time_steps", fake_time_steps)
    monkeypatch.setattr(estimate, "estimate_threads", lambda: 1)
    estimate.step_time.cache_clear()
    before = torch.get_num_threads()
    try:
        t = estimate.step_time("cpu", 0.0625, 4, 10, False, False)
    finally:
        estimate.step_time.cache_clear()
    assert seen == [1] and t.median == 1.0
    assert torch.get_num_threads() == before          # restored


def test_describe_gives_total_and_range(monkeypatch):
    monkeypatch.setattr(estimate, "step_time", lambda *a: StepTime(0.1, 0.08, 0.2, 5))
    spec = RunSpec.from_dict({"dataset": "cifar10", "epochs": 2, "batch_size": 100})
    est = estimate.describe([spec], "cpu", "/nonexistent")
    steps = 50000 // 100 * 2
    evals = 3 * 10000 / 100 * estimate.FORWARD_FRACTION
    assert est["total"] == pytest.approx((steps + evals) * 0.1)
    assert est["total_low"] == pytest.approx((steps + evals) * 0.08)
    assert est["total_high"] == pytest.approx((steps + evals) * 0.2)
    text = estimate.format_range(est)
    assert text.startswith(estimate.format_seconds(est["total"])) and "range" in text
    with_val = RunSpec.from_dict({"dataset": "cifar10", "epochs": 2, "batch_size": 100,
                                  "validation": 10000})
    fewer = estimate.describe([with_val], "cpu", "/nonexistent")["total"]
    assert fewer == pytest.approx((40000 // 100 * 2 + 3 * 20000 / 100 * estimate.FORWARD_FRACTION) * 0.1)


def _spec(sampler: dict, epochs: int) -> RunSpec:
    return RunSpec.from_dict({"matrix": "m", "dataset": "cifar10", "arm": "a", "epochs": epochs,
                              "sampler": sampler})


def test_infobatch_estimate_counts_the_references_pruned_epochs():
    # 6 epochs at delta 0.875: the reference prunes floor(5.25) = 5 epochs (issue: was 6)
    factor, extra = estimate.sampler_run_extra(_spec({"name": "infobatch"}, 6), 50_000)
    assert factor == pytest.approx((5 * 0.75 + 1) / 6) and extra == 0.0


def test_online_batch_selection_estimate_counts_the_references_recomputations():
    # recompute before epochs 2, 4, 6 of 6 (none before epoch 1)
    _, extra = estimate.sampler_run_extra(_spec({"name": "online_batch_selection"}, 6), 1280)
    assert extra == pytest.approx(estimate.FORWARD_FRACTION * 3 * 1280 / 128)


def test_image_size_comes_from_the_catalogue_or_the_npz_header(tmp_path):
    from data_fixtures import make_prepared

    assert estimate.image_size("tinyimagenet", tmp_path) == 64      # no data needed
    make_prepared(tmp_path, "big", n_train=4, n_test=2, num_classes=2, size=48)
    assert estimate.image_size("big", tmp_path) == 48
    assert estimate.image_size("absent", tmp_path) == 32            # not written yet


@pytest.mark.parametrize("name,model,size", [
    ("tinyimagenet_methods", ("resnet18", (("stem", "imagenet"),)), 64),
    ("imagenet64_methods", ("resnet50", (("stem", "imagenet"),)), 64)])
def test_64_pixel_matrices_are_timed_with_their_model_and_size_without_data(monkeypatch, name, model, size):
    from benchmarks import matrix

    seen = set()

    def fake(*args):
        seen.add(args[6:])
        return StepTime(0.1, 0.08, 0.2, 5)

    monkeypatch.setattr(estimate, "step_time", fake)
    runs = list(matrix.load(name).runs)
    est = estimate.describe(runs, "cpu", "/nonexistent")
    assert seen == {(size, model)} and est["unknown"] == 0 and est["total"] > 0


def test_step_time_builds_the_runs_model_at_its_image_size(monkeypatch):
    shapes = []

    def fake_time_steps(step, sync=None, **kw):
        step()
        return StepTime(1.0, 0.5, 2.0, 3)

    real_build = estimate.models.build

    def build(name, k, **kw):
        net = real_build(name, k, **kw)
        net.register_forward_pre_hook(lambda m, a: shapes.append((name, kw, tuple(a[0].shape))))
        return net

    monkeypatch.setattr(estimate, "time_steps", fake_time_steps)
    monkeypatch.setattr(estimate.models, "build", build)
    estimate.step_time.cache_clear()
    try:
        estimate.step_time("cpu", 0.0625, 2, 7, False, False, 64, ("wrn28_10", (("depth", 10),)))
    finally:
        estimate.step_time.cache_clear()
    assert shapes == [("wrn28_10", {"depth": 10, "width": 0.0625}, (2, 3, 64, 64))]


@pytest.mark.parametrize("name", ["tinyimagenet_methods", "imagenet64_methods"])
def test_dry_run_of_the_64_pixel_matrices_needs_no_data(monkeypatch, capsys, tmp_path, name):
    from benchmarks.cli import main

    monkeypatch.setattr(estimate, "step_time", lambda *a: StepTime(0.1, 0.08, 0.2, 5))
    rc = main(["run", name, "--dry-run", "--data-root", str(tmp_path / "none"),
               "--results", str(tmp_path / "r"), "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and f"matrix {name}: 39 runs (0 done, 39 to run)" in out
    assert "estimated cost" in out and "unknown size" not in out
    assert not (tmp_path / "none").exists() and not (tmp_path / "r").exists()
