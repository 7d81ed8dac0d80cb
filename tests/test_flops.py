"""``python -m benchmarks.flops``: the FLOP count quoted in the README and the floor."""
from __future__ import annotations

import pytest

from benchmarks import flops


def test_resnet18_step_flops_match_the_readme_and_scale():
    full = flops.training_step_flops(1.0, 128, 10)
    assert round(full["total"] / 1e9, 1) == 426.1  # README, Speed section
    assert full["backward"] == pytest.approx(2 * full["forward"], rel=0.01)
    two, four = (flops.training_step_flops(0.25, b, 10) for b in (2, 4))
    assert four["forward"] == pytest.approx(2 * two["forward"], rel=1e-6)


def test_floor_and_cli(capsys):
    assert flops.epoch_floor(10 ** 12, 390, 1000.0) == pytest.approx(0.39)
    r = flops.main(["--width", "0.25", "--batch-size", "64"])
    out = capsys.readouterr().out
    assert "GFLOP" in out and "without sparsity" in out and r["steps_per_epoch"] == 781
    assert flops.cli(["--batch-size", "0"]) == 2
    assert "--batch-size: must be > 0" in capsys.readouterr().err
