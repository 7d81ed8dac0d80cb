"""Wide ResNet (Zagoruyko & Komodakis 2016), WRN-d-k: the standard CIFAR model of many
selection papers (the upper-bound importance sampling paper among them).

The layout is that of the authors' PyTorch code (szagoruyko/wide-residual-networks,
``pytorch/resnet.py``, function ``resnet`` and its inner ``block``): a 3x3 conv to 16
channels, three groups of ``n = (d - 4) / 6`` pre-activation blocks at widths 16k, 32k,
64k and strides 1, 2, 2, each block BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3, the shortcut a
1x1 conv of the *activated* input when the shape changes (else the identity); then
BN-ReLU, average pool, linear. Convolutions have no bias. WRN-28-10 has 36,479,194
parameters for 10 classes (the paper's "36.5M"; tests/test_model.py pins it).

Our choices, not the reference's: a *global* average pool (the reference pools 8x8, which
is the same on 32x32 inputs and also works on 64x64 ones); no dropout (the paper's
dropout variant draws from the global RNG, which a checkpoint here does not hold, so exact
resume would break); PyTorch's default initialisation (the reference uses Kaiming-normal);
and ``width`` is a multiplier of the group widths 16k, 32k, 64k (width 1 = the named k;
the 16-channel stem conv is never widened, as in the reference), so that
``--set model.width=0.0625`` makes any model of the suite tiny for CPU tests.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class WideBlock(nn.Module):
    """Pre-activation basic block; the projection shortcut reads the activated input."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: Tensor) -> Tensor:
        o = torch.relu(self.bn1(x))
        y = self.conv2(torch.relu(self.bn2(self.conv1(o))))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    """WRN-``depth``-``k`` with group widths ``16k, 32k, 64k`` times ``width``."""

    def __init__(self, num_classes: int = 10, depth: int = 28, k: int = 10, width: float = 1.0,
                 in_channels: int = 3) -> None:
        super().__init__()
        problem = depth_problem(depth)
        if problem:
            raise ValueError(problem)
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        n = (depth - 4) // 6
        widths = [max(1, int(round(c * k * width))) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        groups, c_in = [], 16
        for i, c in enumerate(widths):
            stride = 1 if i == 0 else 2
            groups.append(nn.Sequential(*[WideBlock(c_in if j == 0 else c, c, stride if j == 0 else 1)
                                          for j in range(n)]))
            c_in = c
        self.groups = nn.Sequential(*groups)
        self.bn = nn.BatchNorm2d(c_in)
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn(self.groups(self.conv1(x))))
        out = torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


def depth_problem(depth: object) -> str | None:
    """Why ``depth`` is not a WRN depth (6n + 4, n >= 1), or None."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        return f"depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 34, 40, ...), got {depth!r}"
    return None


class WRN28_10(WideResNet):
    """WRN-28-10; ``depth`` and ``width`` make smaller ones (WRN-16-10 at width 0.05, ...)."""

    def __init__(self, num_classes: int = 10, depth: int = 28, width: float = 1.0,
                 in_channels: int = 3) -> None:
        super().__init__(num_classes, depth=depth, k=10, width=width, in_channels=in_channels)
