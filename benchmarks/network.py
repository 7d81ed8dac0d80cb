"""The one place a run's network is built: architecture, initialisation seed, speed knobs.

Why one builder: the trained model and RHO-LOSS's irreducible-loss model must be the same
architecture under the same knobs. They used to be built in two places, and the auxiliary
model applied ``channels_last`` only on CUDA while the trained model applied it on every
device, so the CPU runs (the suite's tests and CPU matrices) scored with a model in
another memory format than the GPU runs. Here each knob applies to every model, on every
device, as ``benchmarks/config.py`` documents it (``channels_last``: "memory format of
model and inputs (any device)"; ``compile``: "torch.compile the model").
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

import models


def build(spec: Mapping[str, Any], num_classes: int, device: torch.device,
          init_seed: int) -> tuple[nn.Module, nn.Module]:
    """``(net, model)`` for ``spec``: ``net`` the module (its parameters, state dict and
    BatchNorm buffers), ``model`` what is called (``net`` itself, or ``torch.compile(net)``).

    Initialised from ``init_seed`` under a forked RNG, so the global RNG is never reseeded
    nor advanced; then moved to ``device`` and, with ``channels_last``, to that memory
    format (inputs come in it from :class:`benchmarks.data.DeviceData`).
    """
    model_cfg = spec["model"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        net = models.build(model_cfg["name"], num_classes,
                           **{k: v for k, v in model_cfg.items() if k != "name"})
    net = net.to(device)
    # The speed knobs apply on every device (CPU: oneDNN channels_last kernels, CPU
    # autocast, inductor's C++ backend), so the CPU tests run the code a GPU runs.
    if spec["channels_last"]:
        net = net.to(memory_format=torch.channels_last)
    model = torch.compile(net) if spec["compile"] else net
    return net, model
