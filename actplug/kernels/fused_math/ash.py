"""ASH (ash.txt eq. 10) on the rows of a (samples, elements) matrix, for the fused loops.

The statistics and formulas are :mod:`actplug.functional.ash`'s; only the sigmoid, most of the
elementwise cost, is :func:`.rational.sigmoid` (no library exp) in float32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ... import functional as F
from ...functional._precision import compute_dtype
from . import rational


def _sigmoid_for(x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return torch.sigmoid if compute_dtype(x) == torch.float64 else rational.sigmoid


def ash_rows(x2d: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, eps: float):
    """ASH of each row; returns y and the (samples, 1) mean and std."""
    mean, std = F.ash_stats(x2d, 1, eps)
    return F.ash_apply(x2d, mean, std, z, alpha, sigmoid=_sigmoid_for(x2d)), mean, std


def ash_rows_backward(x2d, grad2d, mean, std, z, alpha, need_z: bool, need_alpha: bool):
    """``(dx, dz, dalpha)`` of :func:`ash_rows` from x and the statistics."""
    return F.ash_backward(x2d, grad2d, mean, std, z, alpha, 1, need_z, need_alpha, sigmoid=_sigmoid_for(x2d))
