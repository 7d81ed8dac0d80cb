"""The CIFAR ResNet-18 (He et al. 2016, as used for 32x32 images by the IMPON paper).

Differences from torchvision's ImageNet ResNet-18, all standard for CIFAR: a 3x3
stride-1 stem and no max-pool, so 32x32 inputs keep enough resolution. BasicBlocks
[2, 2, 2, 2] at widths 64-128-256-512 (times ``width``), global average pool, linear.
11,173,962 parameters for 10 classes at width 1.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        widths = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, c_in = [], widths[0]
        for i, c in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(c_in, c, stride), BasicBlock(c, c, 1)))
            c_in = c
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)
