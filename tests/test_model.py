import importlib.util
import re

import pytest
import torch

import models


def test_resnet18_parameter_count_pinned():
    net = models.build("resnet18", 10)
    assert sum(p.numel() for p in net.parameters()) == 11_173_962


def test_resnet18_width_and_classes():
    net = models.build("resnet18", 100, width=0.25)
    assert net.conv1.out_channels == 16 and net.linear.in_features == 128
    out = net(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 100)


def test_unknown_model_is_clear():
    try:
        models.build("vgg", 10)
    except ValueError as e:
        assert "resnet18" in str(e)
    else:
        raise AssertionError("expected ValueError")


# ---------------------------------------------------------------- issue 23: more models
def _params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_published_parameter_counts():
    # torchvision's resnet18 / resnet50 (11.69M / 25.56M at 1000 classes, its model docs)
    # and WRN-28-10's 36.5M at 10 classes (the count Zagoruyko & Komodakis 2016 list for it)
    assert _params(models.build("resnet18", 1000, stem="imagenet")) == 11_689_512
    assert _params(models.build("resnet50", 1000, stem="imagenet")) == 25_557_032
    assert _params(models.build("wrn28_10", 10)) == 36_479_194
    assert _params(models.build("resnet18", 10)) == 11_173_962        # the CIFAR one, unchanged


def test_imagenet_stem_matches_torchvision_layer_for_layer():
    from torchvision.models import resnet18, resnet50

    for ours, theirs in ((models.build("resnet18", 1000, stem="imagenet"), resnet18()),
                         (models.build("resnet50", 1000, stem="imagenet"), resnet50())):
        shapes = sorted(tuple(p.shape) for p in ours.parameters())
        assert shapes == sorted(tuple(p.shape) for p in theirs.parameters())


def test_cifar_resnet18_initialises_as_before_the_stem_option():
    # the committed runs were made with the old class: same seed, same weights, same keys
    torch.manual_seed(7)
    a = models.build("resnet18", 10, width=0.25)
    torch.manual_seed(7)
    b = models.build("resnet18", 10, width=0.25, stem="cifar")
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and not any(k.startswith("pool") for k in sa)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_imagenet_stem_quarters_a_64_pixel_input_and_every_model_runs_channels_last():
    seen = {}
    net = models.build("resnet50", 200, stem="imagenet", width=0.0625)
    net.layers.register_forward_hook(lambda m, i, o: seen.update(shape=i[0].shape))
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 200)
    assert seen["shape"][-2:] == (16, 16)            # 7x7 stride 2, then max-pool stride 2
    for name, kw in (("resnet18", {"stem": "imagenet"}), ("resnet50", {}), ("wrn28_10", {"depth": 10})):
        torch.manual_seed(0)
        net = models.build(name, 5, width=0.0625, **kw).eval()
        x = torch.randn(2, 3, 32, 32)
        ref = net(x)
        cl = net.to(memory_format=torch.channels_last)
        out = cl(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        out.sum().backward()                      # and trains in that layout
        assert all(p.grad is not None for p in cl.parameters())


def test_wide_resnet_depth_and_width():
    net = models.build("wrn28_10", 10, depth=10, width=0.05)   # WRN-10-0.5: one block a group
    assert len(net.groups) == 3 and all(len(g) == 1 for g in net.groups)
    assert [g[0].conv1.out_channels for g in net.groups] == [8, 16, 32]
    assert net.conv1.out_channels == 16                         # the stem is never widened
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert len(models.build("wrn28_10", 10, width=0.05).groups[0]) == 4   # 28 = 6 * 4 + 4
    with pytest.raises(ValueError, match="6n\\+4"):
        models.build("wrn28_10", 10, depth=27)


def test_model_section_is_checked_before_anything_runs():
    from benchmarks.config import RunSpec
    from benchmarks.errors import UserError

    for model, needle in (({"name": "resnet18", "stem": "imagent"}, "model.stem: must be one of cifar, imagenet"),
                          ({"name": "wrn28_10", "depth": 27}, "model.depth: must be 6n+4"),
                          ({"name": "timm:"}, "model.name: 'timm:' names no timm model"),
                          ({"name": "vgg"}, "timm:<name>")):
        with pytest.raises(UserError, match=re.escape(needle)):
            RunSpec.from_dict({"dataset": "cifar10", "model": model})


def test_the_stem_key_leaves_earlier_run_ids_alone():
    from benchmarks.config import RunSpec

    plain = RunSpec.from_dict({"dataset": "cifar10"})
    assert plain["model"] == {"name": "resnet18", "width": 1.0, "stem": "cifar"}
    assert plain.run_id == "cifar10-uniform-seed0-5d3fee1f"   # the id before the key existed
    other = RunSpec.from_dict({"dataset": "cifar10", "model": {"name": "resnet18", "stem": "imagenet"}})
    assert other.run_id != plain.run_id


def test_timm_missing_is_one_line_naming_the_extra(monkeypatch, capsys, tmp_path):
    from benchmarks.cli import main

    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == "timm" else importlib.util.find_spec(name, *a))
    m = tmp_path / "m.yaml"
    m.write_text("name: t\ndefaults: {dataset: tiny, model: {name: 'timm:resnet18'}}\n"
                 "grid: {arm: [{name: sgd, sampler: {name: uniform}}]}\n")
    rc = main(["run", str(m), "--data-root", str(tmp_path), "--results", str(tmp_path / "r"),
               "--dry-run", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "timm:resnet18 needs the package timm" in err and "pip install -e '.[timm]'" in err
    with pytest.raises(ValueError, match="pip install"):
        models.build("timm:resnet18", 10)


def test_timm_models_build_and_validate_when_installed():
    pytest.importorskip("timm")
    from benchmarks.config import RunSpec
    from benchmarks.errors import UserError

    spec = RunSpec.from_dict({"dataset": "cifar10", "model": {"name": "timm:resnet10t"}})
    assert spec["model"] == {"name": "timm:resnet10t"}
    net = models.build("timm:resnet10t", 7).to(memory_format=torch.channels_last)
    assert net(torch.zeros(2, 3, 32, 32).to(memory_format=torch.channels_last)).shape == (2, 7)
    with pytest.raises(UserError, match="timm has no model 'no_such_net'"):
        RunSpec.from_dict({"dataset": "cifar10", "model": {"name": "timm:no_such_net"}})
