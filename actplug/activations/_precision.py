"""Precision policy shared by every activation: half types are computed in float32.

float16 cannot hold SMU's default mu=1e6 (it becomes inf) nor SMU-1's mu=4.35e-9 (it becomes 0),
and bfloat16 keeps 8 bits of mantissa; computing in float32 and casting the result back keeps
finite inputs finite in outputs and gradients, as the activations promise.
"""

from __future__ import annotations

import torch

_UPCAST = (torch.float16, torch.bfloat16)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype an activation computes in for input ``x``: float32 for half types, else x's own."""
    return torch.float32 if x.dtype in _UPCAST else x.dtype


def as_compute(value: torch.Tensor | float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A scalar hyperparameter or parameter as a tensor of the compute dtype on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.tensor(value, dtype=dtype, device=device)


def check_floating(x: torch.Tensor, name: str) -> None:
    """Reject non-tensors and integer tensors at the boundary with a message naming the fix."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}() expects a torch.Tensor input, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name}() expects a floating-point tensor, got dtype {x.dtype}; convert it first, e.g. x.float()"
        )


def reduce_to(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum a per-element gradient ``t`` down to the shape of the (broadcast) parameter ``like``."""
    if like.ndim == 0:
        return t.sum()
    return t.sum_to_size(like.shape)


def finite_max(x: torch.Tensor) -> torch.Tensor:
    """``x`` with +-inf clamped to the largest finite number (NaN stays NaN), for backward formulas
    whose factors would otherwise meet as inf / inf or inf * 0 at infinite inputs."""
    big = torch.finfo(x.dtype).max
    return x.clamp(-big, big)
