"""Find, on CPU, the operations of a call that would make a GPU wait for the host.

``torch.cuda.set_sync_debug_mode`` needs a GPU; the ops that cause those syncs can be seen on
any device by recording every dispatched ATen op (``TorchDispatchMode``): scalar reads
(``.item()``, ``float()``, ``int()``, ``bool()`` of a tensor), ``nonzero`` and boolean-mask
indexing (data-dependent shapes), and host data turned into tensors (``torch.tensor(...)``,
which on a GPU is a synchronous copy). Reads of tensors that live on the host by design (CPU
random draws kept on torch's CPU RNG so that resumed runs replay them) are allowed by the name
of the function that makes them.
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
SYNC_OPS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.nonzero.default,
            aten.masked_select.default, aten.lift_fresh.default, aten.equal.default,
            aten._unique2.default, aten.unique_dim.default}
INDEX_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default,
             aten._index_put_impl_.default}
# CPU-side draws (torch's CPU generator; on a GPU these tensors are host tensors anyway)
HOST_BY_DESIGN = {"drop_self_positive", "ltcl"}


def _bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else []
    return any(torch.is_tensor(i) and i.dtype == torch.bool for i in (indices or []) if i is not None)


def _caller() -> tuple[str, str]:
    for frame in inspect.stack()[2:]:
        if "/vsslpipe/" in frame.filename:
            return frame.function, f"{frame.filename.split('/vsslpipe/')[-1]}:{frame.lineno}"
    return "?", "?"


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SYNC_OPS or (func in INDEX_OPS and _bool_index(args)):
            function, where = _caller()
            if function not in HOST_BY_DESIGN:
                self.found.append(f"{func} in {function} ({where})")
        return func(*args, **(kwargs or {}))


def host_reads(fn: Callable[[], object]) -> list[str]:
    """The offending ops of ``fn()``, each with the vsslpipe function and line that ran it."""
    recorder = _Recorder()
    with recorder:
        fn()
    return recorder.found
