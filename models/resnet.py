"""ResNets (He et al. 2016): the CIFAR ResNet-18 the suite trains, and ImageNet-stem variants.

``stem="cifar"`` (the default, and the only stem of the runs made before this option): a
3x3 stride-1 stem conv and no max-pool, so 32x32 inputs keep enough resolution (the
CIFAR variant used for 32x32 images by the IMPON paper). BasicBlocks [2, 2, 2, 2] at
widths 64-128-256-512 (times ``width``), global average pool, linear: 11,173,962
parameters for 10 classes at width 1.

``stem="imagenet"``: torchvision's ImageNet stem (``torchvision.models.resnet.ResNet``: a
7x7 stride-2 conv, BatchNorm, ReLU, 3x3 stride-2 max-pool), which divides the resolution
by 4 before the first block; our choice for 64x64 inputs (Tiny-ImageNet, ImageNet64x64),
where the CIFAR stem would cost 4x the FLOPs of a 32x32 run at every layer. With it,
``resnet18``/``resnet50`` at width 1 have torchvision's parameter counts (11,689,512 and
25,557,032 for 1000 classes; tests/test_model.py checks both against torchvision).

Both default to the CIFAR stem (so switching ``name`` alone changes only the depth).
``resnet50`` uses torchvision's Bottleneck: the stride sits on the 3x3 conv (the
"ResNet v1.5" of ``torchvision.models.resnet.Bottleneck``), expansion 4.

Initialisation is PyTorch's default for every layer (as the suite's ResNet-18 always had;
torchvision's ``ResNet.__init__`` re-initialises convs with Kaiming-normal, which we do not:
our choice, so that the CIFAR ResNet-18 of the committed runs is bit-for-bit unchanged).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

#: The stems a ResNet can have (``stem`` of the model section of a RunSpec).
STEMS = ("cifar", "imagenet")


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """Identity, or a 1x1 projection + BatchNorm where the shape changes (He et al. 2016, option B)."""
    if stride != 1 or c_in != c_out:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
    return nn.Sequential()


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = _shortcut(c_in, c_out, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (with the stride), 1x1 expand to ``4 * planes``; projection shortcut."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut = _shortcut(c_in, c_out, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet of ``block`` with ``blocks[i]`` blocks in stage i (stages at strides 1, 2, 2, 2).

    Modules are created in the order of the original ``ResNet18`` (stem conv, stem BN,
    stages, linear) so that a seeded CIFAR ResNet-18 initialises exactly as before, and
    its ``state_dict`` keys (checkpoints) are unchanged.
    """

    def __init__(self, block: type[nn.Module], blocks: Sequence[int], num_classes: int = 10,
                 width: float = 1.0, in_channels: int = 3, stem: str = "cifar") -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
        widths = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.pool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        expansion = block.expansion  # type: ignore[attr-defined]
        layers, c_in = [], widths[0]
        for i, (c, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            stage = [block(c_in, c, stride)] + [block(c * expansion, c, 1) for _ in range(n - 1)]
            layers.append(nn.Sequential(*stage))
            c_in = c * expansion
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.pool(torch.relu(self.bn1(self.conv1(x))))
        out = self.layers(out)
        out = torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


class ResNet18(ResNet):
    """BasicBlocks [2, 2, 2, 2]; ``stem="cifar"`` is the suite's CIFAR ResNet-18."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 3,
                 stem: str = "cifar") -> None:
        super().__init__(BasicBlock, (2, 2, 2, 2), num_classes, width, in_channels, stem)


class ResNet50(ResNet):
    """Bottlenecks [3, 4, 6, 3] (torchvision's ``resnet50`` layout)."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 3,
                 stem: str = "cifar") -> None:
        super().__init__(Bottleneck, (3, 4, 6, 3), num_classes, width, in_channels, stem)
