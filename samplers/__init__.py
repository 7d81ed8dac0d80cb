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
from .base import FEATURE_KINDS, Batch, Sampler, StepContext
from .registry import SamplerConfigError, available, build, check_params, get, params, register
from .scoring import model_device, score_fn
from .dataloader import SamplerBatches, WithIndex, batch_sampler

# Importing a method module registers it.
from . import uniform  # noqa: F401,E402
from . import impon, oracle, psgd, selective_backprop, unif_sgd  # noqa: F401,E402
from . import infobatch, online_batch_selection, rho_loss, upper_bound_is  # noqa: F401,E402

__all__ = ["Batch", "Sampler", "StepContext", "FEATURE_KINDS", "SamplerConfigError",
           "available", "build", "check_params", "get", "params", "register",
           "model_device", "score_fn", "SamplerBatches", "WithIndex", "batch_sampler"]
