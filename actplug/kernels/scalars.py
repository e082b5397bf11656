"""Scalar parameters as the kernels take them: 0-d tensors of the compute dtype on the input's device.

A tensor parameter is detached and reshaped (no copy where it already fits); a Python number becomes
a 0-d tensor, kept for reuse, so that a constant like SMU's alpha costs no allocation (and on CUDA
no host-to-device copy) per call, and a compiled kernel takes every value as an input.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch

_MAX_CACHED = 256
_cache: dict[tuple[float, torch.dtype, torch.device], torch.Tensor] = {}
_lock = threading.Lock()


def scalar(value: torch.Tensor | float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``value`` as a detached 0-d tensor of ``dtype`` on ``device``."""
    if isinstance(value, torch.Tensor):
        t = value.detach()
        if t.ndim:
            t = t.reshape(())
        return t if t.dtype == dtype and t.device == device else t.to(device=device, dtype=dtype)
    key = (float(value), dtype, device)
    found = _cache.get(key)
    if found is None:
        with torch.inference_mode(False):  # a plain tensor even when first met inside inference mode
            found = torch.full((), key[0], dtype=dtype, device=device)
        with _lock:
            if len(_cache) >= _MAX_CACHED:
                _cache.clear()
            _cache[key] = found
    return found


def scalars(values: Sequence[torch.Tensor | float], dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """:func:`scalar` of each value, no two of them the same tensor (kernels take distinct inputs)."""
    found = [scalar(v, dtype, device) for v in values]
    for i, t in enumerate(found):
        if any(t.untyped_storage().data_ptr() == u.untyped_storage().data_ptr() for u in found[:i]):
            found[i] = t.clone()
    return found
