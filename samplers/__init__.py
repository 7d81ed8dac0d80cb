"""Importance-sampling methods behind one small interface (see ``samplers.base``).

Usable on its own in any PyTorch loop::

    import samplers
    s = samplers.build("impon", bank_size=200, lr=1e-6)
    ctx = samplers.StepContext(...)      # your data, model hooks and generator
    s.start_epoch(1, ctx)
    batch = s.next_batch(ctx)            # Batch(idx, inputs=None, weights=None)
    ...                                  # train on batch.idx, get per-example losses
    s.observe(batch.idx, losses.detach(), p_true.detach())

This package never imports ``benchmarks``.
"""
import importlib
import pkgutil

from .base import FEATURE_KINDS, SCORE_MODES, Batch, Cost, HostSyncs, Sampler, StepContext
from .registry import SamplerConfigError, available, build, check_params, get, params, register
from .scoring import logits_fn, model_device, score_fn
from .dataloader import SamplerBatches, WithIndex, batch_sampler
from .traits import (ArmStyle, DiagnosticColumn, DiagnosticFigure, NotePart, PerfRow,
                     PlotTraits)

# Every module of this package is imported, so a method's ``@register`` runs without an
# import line to add anywhere: a new method is one new file.
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Batch", "Sampler", "StepContext", "Cost", "HostSyncs", "FEATURE_KINDS", "SCORE_MODES",
           "SamplerConfigError", "available", "build", "check_params", "get", "params",
           "register", "logits_fn", "model_device", "score_fn", "SamplerBatches", "WithIndex", "batch_sampler",
           "ArmStyle", "DiagnosticColumn", "DiagnosticFigure", "NotePart", "PerfRow", "PlotTraits"]
