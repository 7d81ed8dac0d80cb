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


def test_imagenet_stem_flops_are_torchvisions_published_ones_and_pixels_scale_the_cost():
    # torchvision's weights metadata publishes GFLOPS as multiply-adds (the counter counts
    # 2 FLOPs per multiply-add): resnet18 1.814, resnet50 4.089 at 224x224, 1000 classes
    from torchvision.models import ResNet18_Weights, ResNet50_Weights

    for name, weights in (("resnet18", ResNet18_Weights), ("resnet50", ResNet50_Weights)):
        f = flops.training_step_flops(1.0, 1, 1000, model=name, stem="imagenet", image_size=224)
        assert f["forward"] / 2e9 == pytest.approx(weights.IMAGENET1K_V1.meta["_ops"], abs=5e-4)
    small, big = (flops.training_step_flops(0.25, 2, 10, image_size=s)["total"] for s in (32, 64))
    assert big == pytest.approx(4 * small, rel=1e-3)     # CIFAR stem: 4x the pixels, 4x the work


def test_cli_counts_any_model_and_refuses_a_bad_one(capsys):
    r = flops.main(["--model", "resnet50", "--stem", "imagenet", "--image-size", "64",
                    "--classes", "1000", "--n-train", "1281167"])
    out = capsys.readouterr().out
    assert "resnet50 (1000 classes, width 1.0, stem imagenet), batch 128, 64x64 inputs" in out
    assert r["steps_per_epoch"] == 10009
    assert flops.cli(["--model", "wrn28_10", "--depth", "27"]) == 2
    assert "--depth: must be 6n+4" in capsys.readouterr().err
    assert flops.cli(["--model", "vgg"]) == 2
    assert "--model: unknown model 'vgg'" in capsys.readouterr().err
