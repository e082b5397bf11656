"""Bytes that autograd keeps for the backward pass, counted with ``saved_tensors_hooks``.

Every tensor an autograd node saves passes through the pack hook; tensors that share memory
(views, the same tensor saved by two nodes) are counted once, by their storage. Tensors of the
module's or model's own state (parameters, buffers) are left out: they stay in memory whether or
not a backward follows, so saving them costs nothing. What remains is the activation memory of a
training step: what a forward adds to memory until its backward runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


def _storage_key(t: torch.Tensor) -> tuple[Any, ...]:
    """What identifies ``t``'s memory: device and address of its storage (or the tensor's id)."""
    try:
        storage = t.untyped_storage()
        return (str(t.device), storage.data_ptr(), storage.nbytes())
    except (RuntimeError, NotImplementedError):  # e.g. tensor subclasses without storage
        return ("id", id(t))


def _storage_bytes(t: torch.Tensor) -> int:
    try:
        return int(t.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):
        return t.numel() * t.element_size()


class SavedTensorsMeter:
    """``with SavedTensorsMeter(exclude=params) as meter: y = f(x)``; then ``meter.bytes``.

    Only storages first seen inside the block are counted; ``exclude`` lists tensors whose
    storages are never counted.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self._excluded = {_storage_key(t) for t in exclude}
        self.storages: dict[tuple[Any, ...], int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in self._excluded and key not in self.storages:
            self.storages[key] = _storage_bytes(t)
        return t

    @staticmethod
    def _unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    @property
    def bytes(self) -> int:
        """Total bytes of the distinct storages saved so far."""
        return sum(self.storages.values())

    def __enter__(self) -> SavedTensorsMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


def saved_bytes(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, exclude: Iterable[torch.Tensor] = ()
) -> int:
    """Bytes autograd saves for the backward of ``fn(x)``, with ``x`` requiring grad (its own storage counts)."""
    x = x.detach().requires_grad_(True)
    with SavedTensorsMeter(exclude) as meter:
        y = fn(x)
    del y
    return meter.bytes


def tensor_bytes(x: torch.Tensor) -> int:
    """Bytes of ``x``'s elements."""
    return x.numel() * x.element_size()
