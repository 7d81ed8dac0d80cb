"""Models trained by the suite. ``build(name, num_classes, **kw)`` is the one entry point.

Built in: ``resnet18`` and ``resnet50`` (``stem`` cifar or imagenet, :mod:`models.resnet`)
and ``wrn28_10`` (:mod:`models.wide_resnet`). ``timm:<name>`` builds any model of the
optional package timm (``pip install -e '.[timm]'``), randomly initialised: never
pretrained weights, which would need a download and would make a run depend on them.

:func:`problems` states what is wrong with a model section without building anything, so
the runner's schema check (``benchmarks.config``) refuses a bad model before any run
starts, with the model's own rules stated once, here.
"""
from __future__ import annotations

import importlib.util
from typing import Any, Mapping

from torch import nn

from .resnet import STEMS, ResNet, ResNet18, ResNet50
from .wide_resnet import WRN28_10, WideResNet, depth_problem

MODELS: dict[str, type[nn.Module]] = {"resnet18": ResNet18, "resnet50": ResNet50,
                                      "wrn28_10": WRN28_10}

#: Prefix of a timm model name: ``timm:resnet26d`` is timm's ``resnet26d``.
TIMM_PREFIX = "timm:"
#: The line that says how to get timm (pyproject.toml's optional extra).
TIMM_HINT = "install the optional extra: pip install -e '.[timm]' (or pip install 'timm>=1.0')"


def is_timm(name: object) -> bool:
    """Whether ``name`` asks for a timm model (``timm:<name>``)."""
    return isinstance(name, str) and name.startswith(TIMM_PREFIX)


def timm_available() -> bool:
    """Whether timm can be imported (without importing it: that takes seconds)."""
    return importlib.util.find_spec("timm") is not None


def problems(name: object, params: Mapping[str, Any]) -> list[str]:
    """What is wrong with model ``name`` and its ``params`` (``key: why`` lines), or []."""
    if is_timm(name):
        arch = str(name)[len(TIMM_PREFIX):]
        if not arch:
            return [f"name: {name!r} names no timm model; write timm:<name>, e.g. timm:resnet26d"]
        if not timm_available():
            return [f"name: {name} needs the package timm, which is not installed; {TIMM_HINT}"]
        import timm

        if not timm.is_model(arch):
            return [f"name: timm has no model {arch!r}; list them with "
                    f"python -c \"import timm; print(timm.list_models('*{arch[:6]}*'))\""]
        return []
    out = []
    stem = params.get("stem")
    if stem is not None and stem not in STEMS:
        out.append(f"stem: must be one of {', '.join(STEMS)}, got {stem!r}")
    if name == "wrn28_10" and "depth" in params:
        why = depth_problem(params["depth"])
        if why:
            out.append(f"depth: {why.removeprefix('depth ')}")
    return out


def build(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build model ``name`` (see ``MODELS``, or ``timm:<name>``) for ``num_classes`` classes."""
    if is_timm(name):
        bad = problems(name, kwargs)
        if bad:
            raise ValueError(f"model {bad[0]}")
        if kwargs:
            raise ValueError(f"model {name}: timm models take no parameters here, got "
                             f"{', '.join(sorted(kwargs))}")
        import timm

        return timm.create_model(name[len(TIMM_PREFIX):], pretrained=False, num_classes=num_classes)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}, "
                         f"{TIMM_PREFIX}<name>")
    return MODELS[name](num_classes=num_classes, **kwargs)


__all__ = ["build", "problems", "is_timm", "timm_available", "MODELS", "STEMS", "TIMM_PREFIX",
           "ResNet", "ResNet18", "ResNet50", "WideResNet", "WRN28_10"]
