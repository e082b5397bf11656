"""ASH's Triton kernels (:mod:`.triton`) on a (samples, elements) matrix: two passes each way."""

from __future__ import annotations

import torch


def forward(
    x2d: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, mean, std)`` of each row."""
    from .triton import ash_forward

    return ash_forward(x2d.contiguous(), z, alpha, eps)


def backward(
    x2d: torch.Tensor,
    grad2d: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    z: torch.Tensor,
    alpha: torch.Tensor,
    need_z: bool,
    need_alpha: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(dL/dx, dL/dz, dL/dalpha)`` per row."""
    from .triton import ash_backward

    return ash_backward(x2d.contiguous(), grad2d.contiguous(), mean, std, z, alpha, (need_z, need_alpha))
