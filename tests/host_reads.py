"""Count the places where a search would stop a GPU: reading a value back to the host, and the
calls that wait for the device without reading (a device sync on CUDA).

On the CPU nothing syncs, so the count is taken by what the code does with tensors: every call
that turns tensor contents into Python values or makes a shape depend on tensor contents. On a
GPU each of these waits for the device to finish all queued work.

    with HostReads() as reads:
        summarizer.summarize(texts)
    reads.total, reads.by_site   # how many, and where (file:line of the caller in s2s_model)

Counted: ``.item()``, ``.tolist()``, ``.numpy()``, ``bool()``, ``int()``, ``float()``,
``operator.index()`` on a tensor; ``nonzero``, ``masked_select``, ``unique``, ``argwhere``; indexing
(read or write) with a boolean tensor; ``.cpu()``; ``.to()`` from another device to the CPU.
Two more stop a GPU without reading anything, as the CUDA runtime's sync calls showed on an H200
(benchmarks/gpu.py, ``host_syncs``): ``repeat_interleave`` without ``output_size`` (torch uploads
the repeat count from ordinary host memory, then reads the output size back), and indexing with
a list of numbers (the list becomes a host tensor, copied to the device with a wait).
Reads of small tensors the code built on the host itself (lengths) are counted too, since on the
CPU there is no telling them apart, so the figure is an upper bound on the syncs of a GPU run.
Uploads (``.to(device)``, ``torch.tensor(..., device=...)``) are not reads; on a CPU run a
``.to(device)`` cannot be told from a ``.to('cpu')``, so ``.to()`` counts only when it moves
data from another device.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_READS: set[Callable[..., Any]] = {
    torch.Tensor.item,
    torch.Tensor.tolist,
    torch.Tensor.numpy,
    torch.Tensor.__bool__,
    torch.Tensor.__int__,
    torch.Tensor.__float__,
    torch.Tensor.__index__,
    torch.Tensor.nonzero,
    torch.nonzero,
    torch.Tensor.masked_select,
    torch.masked_select,
    torch.Tensor.unique,
    torch.unique,
    torch.Tensor.argwhere,
    torch.argwhere,
    torch.Tensor.cpu,
}
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__}
_REPEATS = {torch.Tensor.repeat_interleave, torch.repeat_interleave}


class HostReads(TorchFunctionMode):
    """A ``TorchFunctionMode`` counting host reads made by code under ``package`` (a path part)."""

    def __init__(self, package: str = "s2s_model") -> None:
        super().__init__()
        self.package = package
        self.by_site: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.by_site.values())

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if _is_read(func, args, kwargs):
            site = self._caller()
            if site is not None:
                self.by_site[site] += 1
        return func(*args, **kwargs)

    def _caller(self) -> str | None:
        """``file:line`` of the innermost frame in ``package`` (None: not the package's read)."""
        frame = sys._getframe(2)
        while frame is not None:
            path = frame.f_code.co_filename
            if f"/{self.package}/" in path:
                return f"{path.rsplit('/', 1)[-1]}:{frame.f_lineno}"
            frame = frame.f_back  # type: ignore[assignment]
        return None


def _is_read(func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    if func in _READS:
        return True
    if func is torch.Tensor.to and args[0].device.type != "cpu":
        return any(_is_cpu(a) for a in [*args[1:], kwargs.get("device")])
    if func in _REPEATS:
        return kwargs.get("output_size") is None and len(args) < 4
    if func in _INDEXING and len(args) > 1:
        return any(_is_mask(i) or _is_number_list(i) for i in _indices(args[1]))
    return False


def _is_number_list(index: object) -> bool:
    return isinstance(index, list) and any(isinstance(i, int) for i in index)


def _is_cpu(value: object) -> bool:
    return (isinstance(value, str) and value == "cpu") or (
        isinstance(value, torch.device) and value.type == "cpu"
    )


def _indices(index: object) -> Iterator[object]:
    yield from index if isinstance(index, tuple) else (index,)


def _is_mask(index: object) -> bool:
    return isinstance(index, torch.Tensor) and index.dtype == torch.bool
