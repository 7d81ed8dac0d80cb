"""Models trained by the suite. ``build(name, num_classes, **kw)`` is the one entry point."""
from __future__ import annotations

from typing import Any

from torch import nn

from .resnet import ResNet18

MODELS: dict[str, type[nn.Module]] = {"resnet18": ResNet18}


def build(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build model ``name`` (see ``MODELS``) for ``num_classes`` classes."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes, **kwargs)


__all__ = ["build", "MODELS", "ResNet18"]
