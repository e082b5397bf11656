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


def rows_stats(x2d: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each float32 (or half) row's mean and std as :func:`actplug.functional.ash_stats` gives them,
    from float64 sums.

    The sums of x and x^2 in float64 take one cheap pass: Welford's update, Inductor's fused
    var_mean, costs a multiply and a division-free update per element and runs 40-70% longer on
    this CPU. Their difference, var = E[x^2] - mean^2, loses log10(mean^2 / var) of float64's 16
    digits, which leaves the variance exact to float32 unless |mean| > 1e4 std (where float32 holds
    x itself to no better than 1e-3 std); and x^2 cannot overflow.
    """
    wide = x2d.to(torch.float64)
    n = x2d.shape[1]
    mean = wide.sum(1, keepdim=True) / n
    var = (wide * wide).sum(1, keepdim=True) / n - mean * mean
    std = torch.sqrt((var + eps).clamp_min(torch.finfo(torch.float32).tiny))
    return mean.to(torch.float32), std.to(torch.float32)


def rows_forward(x2d: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, eps: float):
    """ASH of each row; returns y and the (samples, 1) mean and std. float64 keeps the plain math."""
    if compute_dtype(x2d) == torch.float64:
        mean, std = F.ash_stats(x2d, 1, eps)
        return F.ash_apply(x2d, mean, std, z, alpha), mean, std
    mean, std = rows_stats(x2d, eps)
    # 2 alpha (x - mean - z std) as one multiply-add per element: a2 x - a2 t
    a2 = 2.0 * alpha
    xc = x2d.to(torch.float32)
    y = xc * rational.sigmoid(xc * a2 - a2 * (mean + z * std))
    return y.to(x2d.dtype), mean, std


def rows_backward_sums(x2d, grad2d, mean, std, z, alpha, need_z: bool, need_alpha: bool):
    """``(dL/dmean, dL/dstd, dL/dz, dL/dalpha)`` per row (see :func:`actplug.functional.ash_backward_sums`)."""
    return F.ash_backward_sums(x2d, grad2d, mean, std, z, alpha, 1, need_z, need_alpha, sigmoid=_sigmoid_for(x2d))


def rows_backward_dx(x2d, grad2d, mean, std, d_mean, d_std, z, alpha) -> torch.Tensor:
    """dL/dx of each row given the row sums."""
    return F.ash_backward_dx(x2d, grad2d, mean, std, d_mean, d_std, z, alpha, 1, sigmoid=_sigmoid_for(x2d))
