"""ASH's CPU fast path: the fused row forms of :mod:`actplug.activations.ash` as Inductor kernels.

The forward is one kernel (per-row float64 sums, then the gate: Inductor fuses both passes into one
loop over each row); the backward two (per-row sums of the gradient terms, then dx), which run
faster than one graph of both. Every size is dynamic and z, alpha and eps enter as 0-d tensors.
Until a kernel is compiled (in the background, :mod:`..compiler`) these return None.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ...activations import ash as math
from ..compiler import MISS, Job, compiler


def forward(
    x2d: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(y, mean, std)`` of each row of the contiguous ``x2d``, or None if the kernel is not ready."""
    args = (x2d.detach(), z, alpha, eps)
    return _run(_flat(math.rows_forward), "forward", args, dynamic=((0, 0, 0), (0, 1, 1)))


def backward(
    x2d: torch.Tensor,
    grad2d: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    z: torch.Tensor,
    alpha: torch.Tensor,
    need_z: bool,
    need_alpha: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None:
    """``(dL/dx, dL/dz, dL/dalpha)`` per row, or None if the kernels are not ready."""
    x2d, grad2d = x2d.detach(), grad2d.detach()
    rows = ((0, 0, 0), (0, 1, 1), (1, 0, 0), (1, 1, 1), (2, 0, 0), (3, 0, 0))

    def sums(x, g, m, s, z_, a_):
        d_mean, d_std, dz, da = math.rows_backward_sums(x, g, m, s, z_, a_, need_z, need_alpha)
        return (d_mean, d_std, *(t for t in (dz, da) if t is not None))

    what = f"backward_sums{'_z' * need_z}{'_alpha' * need_alpha}"
    found = _run(sums, what, (x2d, grad2d, mean, std, z, alpha), rows, key=(need_z, need_alpha))
    if found is None:
        return None
    d_mean, d_std, *param_grads = found
    dz = param_grads.pop(0) if need_z else None
    da = param_grads.pop(0) if need_alpha else None
    dx_rows = (*rows, (4, 0, 0), (5, 0, 0))
    args = (x2d, grad2d, mean, std, d_mean, d_std, z, alpha)
    dx = _run(_flat(math.rows_backward_dx), "backward_dx", args, dx_rows)
    return None if dx is None else (dx[0], dz, da)


def _flat(fn: Callable[..., Any]) -> Callable[..., tuple[torch.Tensor, ...]]:
    """``fn`` returning a tuple of tensors, as compiled kernels do."""

    def kernel(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = fn(*args)
        return tuple(result) if isinstance(result, (tuple, list)) else (result,)

    kernel.__name__ = fn.__name__
    return kernel


def _run(fn: Callable[..., Any], what: str, args: Sequence[torch.Tensor], dynamic, key: tuple = ()) -> Any:
    """``fn(*args)`` compiled (keyed by what and the dtypes), or None if not ready."""
    key = ("ash", what, *key, *(a.dtype for a in args))
    label = f"ash_{what}_{str(args[0].dtype).removeprefix('torch.')}"
    kernel = compiler.get(key, lambda: _job(label, fn, args, dynamic))
    if kernel is None:
        return None
    result = compiler.run(key, kernel, args)
    return None if result is MISS else result


def _job(label: str, fn: Callable[..., Any], args: Sequence[torch.Tensor], dynamic) -> Job:
    return Job.like(fn, label, args, dynamic)
