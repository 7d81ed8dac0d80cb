"""Name -> sampler class, and ``build(name, **params)`` with errors that list what exists.

Parameters are the keyword arguments of each class's ``__init__`` (with their defaults),
so a sampler documents and validates its own parameters in one place.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, TypeVar

from .base import Sampler

_REGISTRY: dict[str, type[Sampler]] = {}

S = TypeVar("S", bound=type[Sampler])


class SamplerConfigError(ValueError):
    """A sampler name or parameter that does not exist (message says what does)."""


def register(name: str) -> Callable[[S], S]:
    """Class decorator: make the sampler buildable as ``samplers.build(name)``."""

    def deco(cls: S) -> S:
        if name in _REGISTRY:
            raise ValueError(f"sampler {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available() -> list[str]:
    """Registered sampler names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> type[Sampler]:
    if name not in _REGISTRY:
        hint = difflib.get_close_matches(name, available(), n=1)
        extra = f" (did you mean {hint[0]}?)" if hint else ""
        raise SamplerConfigError(
            f"unknown sampler {name!r}{extra}; available: {', '.join(available())}")
    return _REGISTRY[name]


def params(name: str) -> dict[str, Any]:
    """The parameters of sampler ``name`` with their defaults."""
    sig = inspect.signature(get(name).__init__)
    return {p.name: p.default for p in sig.parameters.values()
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def check_params(name: str, given: dict[str, Any]) -> list[str]:
    """Problems with ``given`` parameters for ``name`` (empty list if all fine)."""
    known = params(name)
    problems = []
    for key in given:
        if key not in known:
            hint = difflib.get_close_matches(key, list(known), n=1)
            extra = f" (did you mean {hint[0]}?)" if hint else ""
            problems.append(f"{key}: unknown parameter of sampler {name!r}{extra}; "
                            f"it takes: {', '.join(known) or 'no parameters'}")
    return problems


def build(name: str, **kwargs: Any) -> Sampler:
    """Instantiate sampler ``name``; unknown name/parameter -> SamplerConfigError."""
    cls = get(name)
    problems = check_params(name, kwargs)
    if problems:
        raise SamplerConfigError("; ".join(problems))
    return cls(**kwargs)
