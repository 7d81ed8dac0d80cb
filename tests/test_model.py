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
