"""Where a run's images live: on the training device, or in pinned host memory that the
device reads in place ("host-resident"), and how the run decides.

    python -m benchmarks run M --data-placement auto|device|host     (default: auto)

Why a choice at all: the suite keeps every split on the device as uint8 (4x smaller than
float; the per-example crop and flip are one gather there), which is what makes its step
fast. A split that does not fit (ImageNet-64's 15.7 GB training set on a 24 GB card next to
a ResNet-50) used to end the run in an out-of-memory error. ``auto`` keeps the data on the
device when it takes at most :data:`DEVICE_FRACTION` of the device's free memory at the
run's start, and in host memory otherwise; ``--dry-run`` prints the decision.

How host-resident data reaches the step, and why not by a copy one step ahead. A sampler
chooses each step's indices *on the device*, often from the current model (IMPON's top-b
of a bank, RHO-LOSS's presample, Selective Backprop's keep decisions). Copying the batch
one step ahead needs those indices on the host a step early: either a device->host sync
every step (the GPU waits on Python), or a change to every sampler's rule (draw candidates
on the host a step ahead, select on the device), which would also change the random draws
and so every committed number. Instead the host buffer is page-locked in place
(``cudaHostRegister``, the call ``torch.cuda._pin_memory_utils.pin_memory`` makes) and read
by the device's own kernels: under CUDA's unified virtual addressing a registered host
pointer is valid in kernels, so a CUDA tensor over the same memory (built through the
``__cuda_array_interface__`` protocol, no copy) lets the step's gather take its indices on
the device, in stream order, with no host sync and exactly the images the device-resident
path gathers. vLLM's ``get_cuda_view_from_cpu_tensor`` (``csrc/cuda_view.cu``) builds the
same kind of view for its CPU offloading. The gather reads whole images as 8-byte words,
so each warp reads contiguous 256-byte runs across PCIe. What it costs: the step's b images
(0.4 MB at CIFAR's b=128, 3 MB at ImageNet-64's b=256) cross PCIe inside the gather instead
of overlapping the previous step; ``make perf`` times uniform on both paths in the same
rounds and reports the ratio. Evaluation and feature building read the host split in order,
chunk by chunk, by asynchronous copies from the page-locked buffer (``non_blocking``).

Exactness: the images gathered are the same bytes, the random streams are the same, so
the two placements train identically (tests/test_placement.py compares the CSVs of whole
runs; on a CPU both placements are host memory and the test proves the wiring: the same
code path, the chunked features, the evaluation copies). A run may resume under another
placement. The placement is not part of the run's identity (it changes no number); it is
recorded in run.json (``data_placement``).

Where the CUDA view cannot be made (no unified addressing, registration refused), the run
stops at setup with one line naming ``--data-placement device``; a one-time check at setup
compares rows read through the view with the host bytes, so a view that reads wrong memory
is refused before it trains.
"""
from __future__ import annotations

import math
import mmap
from dataclasses import asdict, dataclass
from typing import Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from .errors import UserError

PLACEMENTS = ("auto", "device", "host")
#: ``auto`` keeps the data on the device while it takes at most this fraction of the
#: device's free memory at the run's start. GUESS: half leaves the other half for the
#: model, its activations, the optimiser and the sampler's state; not measured per model.
DEVICE_FRACTION = 0.5
#: cudaHostRegisterPortable | cudaHostRegisterMapped (CUDA runtime API flag values)
_REGISTER_FLAGS = 0x01 | 0x02


@dataclass(frozen=True)
class Placement:
    """The decision and what it was made from (recorded in run.json ``data_placement``)."""

    where: str                    # "device" or "host"
    requested: str                # "auto", "device" or "host"
    data_bytes: int               # uint8 bytes of every split the run loads
    free_bytes: Optional[int]     # the device's free memory at the decision (CUDA only)
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def check_requested(requested: str) -> str:
    if requested not in PLACEMENTS:
        raise UserError(f"--data-placement {requested!r}: expected one of {', '.join(PLACEMENTS)}")
    return requested


def free_bytes(device: torch.device) -> Optional[int]:
    """Free memory of a CUDA device now (None on a CPU)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.mem_get_info(device)[0])


def decide(requested: str, data_bytes: int, device: torch.device,
           free: Optional[int] = None) -> Placement:
    """Where the run keeps its images. ``free``: the device's free bytes (measured when
    None). On a CPU the device's memory *is* host memory: ``auto`` means device and
    ``host`` runs the host-resident code path on the same memory (what the CPU tests use)."""
    check_requested(requested)
    gib = data_bytes / 2 ** 30
    if device.type != "cuda":
        where = "host" if requested == "host" else "device"
        return Placement(where, requested, data_bytes, None,
                         "requested" if requested != "auto" else
                         "a CPU run: the device's memory is host memory")
    free = free_bytes(device) if free is None else int(free)
    if requested != "auto":
        return Placement(requested, requested, data_bytes, free, "requested")
    limit = DEVICE_FRACTION * free
    fits = data_bytes <= limit
    why = (f"{gib:.2f} GiB of images {'<=' if fits else '>'} {DEVICE_FRACTION:g} x "
           f"{free / 2 ** 30:.1f} GiB free on the device")
    return Placement("device" if fits else "host", requested, data_bytes, free, why)


def describe_auto(data_bytes: int, device: str) -> str:
    """One ``--dry-run`` line: the placement ``auto`` picks for data of ``data_bytes``."""
    dev = torch.device(device)
    gib = data_bytes / 2 ** 30
    if dev.type != "cuda":
        return (f"{gib:.2f} GiB of uint8 images; on {device} they stay in memory; on a GPU "
                f"they go to the device when <= {DEVICE_FRACTION:g} x its free memory at the "
                "run's start, else stay in pinned host memory (--data-placement)")
    p = decide("auto", data_bytes, dev)
    return f"{gib:.2f} GiB of uint8 images -> {p.where} ({p.reason}; --data-placement)"


class Images:
    """One split's uint8 (N, H, W, C) images as the device's kernels read them.

    ``tensor`` is what kernels index: the device copy, or (host-resident on CUDA) a CUDA
    view of the page-locked host buffer; on a CPU run the host tensor itself. ``rows``
    gathers examples by device indices with no sync; ``slice`` hands out a contiguous range
    on the device (an asynchronous copy from the page-locked buffer when host-resident).
    """

    def __init__(self, x: np.ndarray, device: torch.device, where: str) -> None:
        if where not in ("device", "host"):
            raise ValueError(f"where must be 'device' or 'host', got {where!r}")
        self.device, self.where = torch.device(device), where
        self.host: Optional[Tensor] = None
        if where == "device":
            self.tensor = torch.tensor(x, dtype=torch.uint8, device=self.device)
        else:
            self.host = _host_buffer(x)
            self.tensor = (_cuda_view(self.host, self.device) if self.device.type == "cuda"
                           else self.host)
        n = int(self.tensor.shape[0])
        row = int(math.prod(self.tensor.shape[1:]))
        # Whole images as 8-byte words: a gather then moves 8 bytes per thread (coalesced
        # 256-byte runs per warp), which matters when the reads cross PCIe.
        self._words = (self.tensor.reshape(n, row).view(torch.int64)
                       if row % 8 == 0 and n else None)

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    @property
    def shape(self) -> torch.Size:
        return self.tensor.shape

    def rows(self, idx: Tensor) -> Tensor:
        """The images of ``idx`` (device indices), (b, H, W, C) uint8 on the device."""
        if self._words is None:
            return self.tensor[idx]
        return self._words[idx].view(torch.uint8).view(idx.shape[0], *self.tensor.shape[1:])

    def slice(self, start: int, stop: int) -> Tensor:
        """Images ``start:stop`` in order, on the device."""
        if self.host is None or self.device.type != "cuda":
            return self.tensor[start:stop]
        return self.host[start:stop].to(self.device, non_blocking=True)

    def chunks(self, size: int) -> Iterator[tuple[int, Tensor]]:
        """``(start, images)`` over the whole split, ``size`` at a time, in order."""
        for s in range(0, len(self), size):
            yield s, self.slice(s, s + size)


def _host_buffer(x: np.ndarray) -> Tensor:
    """A copy of ``x`` in pages of its own (an anonymous mapping, page-aligned).

    Why not ``x``'s own memory: page-locking works on whole pages, and an array from the
    heap may share its first or last page with another split's array, whose registration
    CUDA would then refuse; a mapping of our own shares no page with anything."""
    x = np.ascontiguousarray(x, dtype=np.uint8)
    if x.nbytes == 0:
        return torch.from_numpy(x.copy())
    buf = mmap.mmap(-1, x.nbytes)
    out = np.frombuffer(buf, dtype=np.uint8, count=x.size).reshape(x.shape)
    out[...] = x
    return torch.from_numpy(out)


class _HostView:
    """A page-locked host buffer exposed through ``__cuda_array_interface__`` (version 2):
    what ``torch.as_tensor`` turns into a CUDA tensor over the same memory. It keeps the
    buffer alive and registered for as long as that tensor lives, and unregisters it then."""

    def __init__(self, host: Tensor, device: torch.device) -> None:
        self._host = host
        self._ptr = host.data_ptr()
        self._registered = False
        if host.numel():
            with torch.cuda.device(device):
                err = int(torch.cuda.cudart().cudaHostRegister(self._ptr, host.numel(), _REGISTER_FLAGS))
            if err != 0:
                raise UserError(f"--data-placement host: CUDA refused to page-lock "
                                f"{host.numel() / 2 ** 30:.2f} GiB of host memory (cudaError {err}); "
                                "free host memory, raise the locked-memory limit (ulimit -l), or "
                                "use --data-placement device")
            self._registered = True
        self.__cuda_array_interface__ = {"shape": tuple(host.shape), "typestr": "|u1",
                                         "data": (self._ptr, False), "version": 2}

    def __del__(self) -> None:
        if self._registered:
            try:
                torch.cuda.cudart().cudaHostUnregister(self._ptr)
            except Exception:  # interpreter shutdown: the process releases it anyway
                pass
            self._registered = False


def _cuda_view(host: Tensor, device: torch.device) -> Tensor:
    """A CUDA tensor on ``device`` over ``host``'s memory (no copy), checked once."""
    if device.index is None:   # "cuda" means the current device; the view names its index
        device = torch.device("cuda", torch.cuda.current_device())
    view = torch.as_tensor(_HostView(host, device))
    if view.device != device or view.data_ptr() != host.data_ptr():
        raise UserError(f"--data-placement host: the device view of host memory landed on "
                        f"{view.device} at another address (expected {device}, zero-copy); "
                        "use --data-placement device")
    # One-time check at setup (a sync, once per run): rows read by a device kernel through
    # the view equal the host bytes, so a view of the wrong memory never trains.
    n = int(host.shape[0])
    if n:
        probe = torch.tensor(sorted({0, n // 2, n - 1}), dtype=torch.int64)
        read = view[probe.to(device)].cpu()
        if not torch.equal(read, host[probe]):
            raise UserError("--data-placement host: kernels reading host memory through the "
                            "device view saw other bytes (no unified addressing here?); use "
                            "--data-placement device")
    return view
