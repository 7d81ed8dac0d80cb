"""Find device->host synchronisations in a training step without a GPU.

Why: the suite promises that nothing in ``Trainer.train_step`` (nor a sampler's
``next_batch``/``observe``) makes the GPU wait on Python, but the machines that test it
have no GPU, so ``torch.cuda.set_sync_debug_mode`` never runs there. The ops that force a
sync on CUDA are visible on CPU too, one level down: every call goes through the ATen
dispatcher, and a :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees each op
with its arguments. :class:`SyncRecorder` records the ops below and a test fails on them.

Flagged (each forces a device->host sync on CUDA):

- ``aten::_local_scalar_dense``: ``.item()``, ``float(t)``, ``int(t)``, ``bool(t)``, ``if t:``
- ``aten::nonzero``, ``aten::argwhere``, single-argument ``torch.where``
  (all data-dependent shapes), ``aten::masked_select``, ``aten::masked_scatter``
- boolean-mask indexing: ``aten::index`` / ``index_put_`` with a bool (or uint8) index
- ``aten::_unique``, ``_unique2``, ``unique_dim``, ``unique_consecutive``, ...
- ``aten::repeat_interleave`` with a tensor of repeats and no ``output_size``
- ``aten::bincount`` (its output length is the data's max), ``aten::equal``,
  ``aten::is_nonzero``, ``aten::multinomial`` without replacement or with one sample
  (PyTorch validates the distribution there with an ``.item()`` inside the kernel, which a
  dispatch mode cannot see, so the op itself is flagged)
- host reads by Python method (seen one level up, by a ``TorchFunctionMode``):
  ``.cpu()``, ``.tolist()``, ``.numpy()`` of a tensor on the run's device, and
  ``.to(...)``/``aten::_to_copy``/``aten::copy_`` into CPU memory from a tensor that is not
  on the CPU.

Limits (honest): on a CPU run every tensor is already in host memory, so a copy to the
host written as ``.to(some_device)`` that happens to be the CPU, or an implicit one, is
invisible here: only the explicit ``.cpu()``, ``.tolist()`` and ``.numpy()`` are caught on
CPU (those three are flagged whatever the device). The CUDA test
(``tests/test_perf.py::test_train_step_never_syncs_on_cuda``) covers copies for real.
``_local_scalar_dense`` of a tensor that lives on the host even on CUDA (the optimiser's
``step`` counters, which PyTorch keeps on the CPU unless ``capturable``/``fused``) is not
a device sync: pass such tensors as ``host_tensors`` to exempt them. Ops issued inside a
compiled graph (``torch.compile``) are not seen one by one; run the harness eagerly.
"""
from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import samplers

#: ATen ops (overload packet names) that always force a sync on CUDA.
ALWAYS_SYNC = frozenset({
    "_local_scalar_dense", "nonzero", "argwhere", "masked_select", "masked_scatter",
    "_unique", "_unique2", "unique_dim", "unique_consecutive", "unique_dim_consecutive",
    "bincount", "equal", "is_nonzero",
})
#: Tensor methods that read device memory on the host.
HOST_READ_METHODS = frozenset({"cpu", "tolist", "numpy"})


@dataclass
class SyncEvent:
    """One op that would synchronise on CUDA, with where in our code it was issued."""

    op: str
    why: str
    where: str = ""

    def __str__(self) -> str:
        return f"{self.op} ({self.why}) at {self.where}"


def _where() -> str:
    """The innermost frame of this repository's code (not torch's, not this file's)."""
    for frame in reversed(traceback.extract_stack()):
        f = frame.filename.replace("\\", "/")
        if ("/torch/" in f or f.endswith("sync_harness.py") or "/site-packages/" in f
                or "/lib/python" in f):
            continue
        return f"{f.rsplit('/', 2)[-2]}/{f.rsplit('/', 1)[-1]}:{frame.lineno} ({frame.name})"
    return "?"


def _storage_ptr(t: torch.Tensor) -> int:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return -1


class _DispatchRecorder(TorchDispatchMode):
    def __init__(self, owner: "SyncRecorder") -> None:
        super().__init__()
        self.owner = owner

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        why = classify_op(func, args, kwargs)
        if why is not None and not self.owner._exempt(func, args):
            self.owner._record(str(func.overloadpacket.__name__), why)
        return func(*args, **kwargs)


class _FunctionRecorder(TorchFunctionMode):
    def __init__(self, owner: "SyncRecorder") -> None:
        super().__init__()
        self.owner = owner

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if args and isinstance(args[0], torch.Tensor):
            t = args[0]
            if name in HOST_READ_METHODS and t.device == self.owner.device:
                self.owner._record(f"Tensor.{name}", "reads a device tensor on the host")
            elif (name == "to" and t.device.type != "cpu"
                  and _to_target_is_cpu(args[1:], kwargs)):
                self.owner._record("Tensor.to", "copies a device tensor to the host")
        return func(*args, **kwargs)


def _to_target_is_cpu(args: tuple, kwargs: dict) -> bool:
    targets = [kwargs.get("device")] + [a for a in args if isinstance(a, (str, torch.device))]
    return any(t is not None and torch.device(t).type == "cpu" for t in targets)


def classify_op(func: Any, args: tuple, kwargs: dict) -> Optional[str]:
    """Why ATen op ``func`` with these arguments would sync on CUDA, or None if it would not."""
    name = func.overloadpacket.__name__
    if name in ALWAYS_SYNC:
        return "data-dependent result read by the host"
    if name == "where" and len(args) == 1 and not kwargs:
        return "single-argument where is nonzero"
    if name in ("index", "index_put", "index_put_", "_index_put_impl_", "_unsafe_index"):
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        if any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
               for i in (indices or ())):
            return "boolean-mask index has a data-dependent shape"
    if name == "repeat_interleave":
        # overloads .Tensor(repeats) and .self_Tensor(self, repeats) take tensor repeats;
        # .self_int takes a host int (no sync)
        if func._overloadname in ("Tensor", "self_Tensor") and kwargs.get("output_size") is None:
            return "repeat_interleave without output_size sums the repeats on the host"
    if name == "multinomial":
        n = args[1] if len(args) > 1 else kwargs.get("num_samples")
        replacement = args[2] if len(args) > 2 else kwargs.get("replacement", False)
        if not replacement or n == 1:
            return "multinomial without replacement (or one sample) validates with .item()"
    if name in ("_to_copy", "to"):
        dev = kwargs.get("device")
        src = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if dev is not None and torch.device(dev).type == "cpu" and src is not None \
                and src.device.type != "cpu":
            return "copy of a device tensor to the host"
    if name == "copy_" and len(args) >= 2 and all(isinstance(a, torch.Tensor) for a in args[:2]):
        dst, src = args[0], args[1]
        if dst.device.type == "cpu" and src.device.type != "cpu":
            return "copy of a device tensor into host memory"
    return None


@dataclass
class SyncRecorder:
    """Context manager recording every would-be sync issued inside it (see module doc).

    ``device``: the run's device (tensors there are "device tensors").
    ``host_tensors``: called when a scalar read is seen; returns tensors that live on the
    host even on CUDA (reading them is no device sync), e.g. optimiser step counters.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    host_tensors: Callable[[], Iterable[torch.Tensor]] = lambda: ()
    events: list[SyncEvent] = field(default_factory=list)

    def __enter__(self) -> "SyncRecorder":
        self._fn, self._disp = _FunctionRecorder(self), _DispatchRecorder(self)
        self._fn.__enter__()
        self._disp.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._disp.__exit__(*exc)
        self._fn.__exit__(*exc)

    def _record(self, op: str, why: str) -> None:
        self.events.append(SyncEvent(op, why, _where()))

    def _exempt(self, func: Any, args: tuple) -> bool:
        if func.overloadpacket.__name__ != "_local_scalar_dense" or not args:
            return False
        ptr = _storage_ptr(args[0])
        return any(_storage_ptr(t) == ptr for t in self.host_tensors())

    def counts(self) -> Counter:
        return Counter(e.op for e in self.events)

    def report(self) -> str:
        return "\n".join(f"  {e}" for e in self.events) or "  (none)"


def optimizer_step_counters(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimiser's ``step`` state tensors: on the host even on CUDA (PyTorch's default,
    ``capturable=False`` and not fused), so reading them is no device sync."""
    return [s["step"] for s in optimizer.state.values()
            if isinstance(s.get("step"), torch.Tensor) and not s["step"].is_cuda]


def assert_no_sync(recorder: SyncRecorder, allowed: Optional[Counter] = None,
                   what: str = "step") -> None:
    """Fail unless the recorded would-be syncs are exactly ``allowed`` (op -> count)."""
    got, want = recorder.counts(), Counter(allowed or {})
    if got != want:
        raise AssertionError(f"{what}: ops that synchronise on CUDA, expected "
                             f"{dict(want) or 'none'}, got {dict(got)}:\n{recorder.report()}")


__all__ = ["SyncRecorder", "SyncEvent", "classify_op", "assert_no_sync",
           "optimizer_step_counters", "ALWAYS_SYNC", "HOST_READ_METHODS"]


# ----------------------------------------------------------------------------- samplers
@dataclass
class SamplerCase:
    """How the sync tests run one registered sampler, read from its class's traits
    (``Sampler.test_params`` and ``Sampler.host_syncs``, documented in its module): every
    name in ``samplers.available()`` is tested, and a sampler that declares no syncs must
    not sync at all.
    """

    params: dict[str, Any] = field(default_factory=dict)
    #: given the number of scoring calls a step made, the exact op counts it may issue
    expected: Callable[[int], Counter] = lambda score_calls: Counter()
    #: the exact syncs ``begin_epoch`` may issue (a data-dependent epoch length, say)
    epoch_expected: Counter = field(default_factory=Counter)
    #: skip the check of the first ``begin_epoch`` (a documented once-per-run setup)
    once_per_run_setup: bool = False


def sampler_case(name: str, n_train: int, batch_size: int) -> SamplerCase:
    """The sync-test case of sampler ``name`` on a tiny set of ``n_train`` / ``batch_size``."""
    cls = samplers.get(name)
    syncs = cls.host_syncs

    def expected(score_calls: int) -> Counter:
        per_call = Counter({op: n * score_calls for op, n in syncs.per_score_call.items()})
        return Counter(syncs.per_step) + per_call

    return SamplerCase(params={**cls.test_params(n_train, batch_size), **syncs.test_params},
                       expected=expected, epoch_expected=Counter(syncs.per_epoch),
                       once_per_run_setup=syncs.once_per_run_setup)


@dataclass
class StepRecord:
    """What one recorded call issued: its would-be syncs and its ``ctx.score`` calls."""

    recorder: SyncRecorder
    score_calls: int


def record_call(trainer: Any, call: Callable[[], Any]) -> StepRecord:
    """Run ``call()`` (``trainer.train_step(lr)`` or ``trainer.begin_epoch(e)``) under a
    :class:`SyncRecorder`, counting the trainer's scoring forwards (``ctx.score`` calls)."""
    ctx = trainer.ctx
    calls = [0]
    backends = ("score_fn", "score_eval_fn", "score_update_fn")
    saved = {name: getattr(ctx, name) for name in backends}

    def counting(fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*a: Any, **k: Any) -> Any:
            calls[0] += 1
            return fn(*a, **k)
        return counted

    for name, fn in saved.items():
        if fn is not None:
            setattr(ctx, name, counting(fn))
    try:
        with SyncRecorder(trainer.device,
                          lambda: optimizer_step_counters(trainer.optimizer)) as rec:
            call()
    finally:
        for name, fn in saved.items():
            setattr(ctx, name, fn)
    return StepRecord(rec, calls[0])
