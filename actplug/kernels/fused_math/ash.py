"""ASH (ash.txt eq. 10) on the rows of a (samples, elements) matrix, for the fused loops.

The statistics and formulas are :mod:`actplug.functional.ash`'s; the sigmoid, most of the
elementwise cost, is :func:`.rational.sigmoid` (no library exp) in float32. The backward's two
passes, the per-row sums and then the elementwise dx, compile as two kernels: as one graph,
Inductor's loops took about 20% longer (the forward's two passes fuse well).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ... import functional as F
from ...functional._precision import compute_dtype
from . import rational


def _sigmoid_for(x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return torch.sigmoid if compute_dtype(x) == torch.float64 else rational.sigmoid


def rows_forward(x2d: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, eps: float):
    """ASH of each row; returns y and the (samples, 1) mean and std."""
    mean, std = F.ash_stats(x2d, 1, eps)
    return F.ash_apply(x2d, mean, std, z, alpha, sigmoid=_sigmoid_for(x2d)), mean, std


def rows_backward_sums(x2d, grad2d, mean, std, z, alpha, need_z: bool, need_alpha: bool):
    """``(dL/dmean, dL/dstd, dL/dz, dL/dalpha)`` per row (see :func:`actplug.functional.ash_backward_sums`)."""
    return F.ash_backward_sums(x2d, grad2d, mean, std, z, alpha, 1, need_z, need_alpha, sigmoid=_sigmoid_for(x2d))


def rows_backward_dx(x2d, grad2d, mean, std, d_mean, d_std, z, alpha) -> torch.Tensor:
    """dL/dx of each row given the row sums."""
    return F.ash_backward_dx(x2d, grad2d, mean, std, d_mean, d_std, z, alpha, 1, sigmoid=_sigmoid_for(x2d))
