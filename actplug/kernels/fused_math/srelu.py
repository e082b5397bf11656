"""SReLU (srelu.txt III.A) for the fused loops: expm1 from a rational function, not a library call."""

from __future__ import annotations

import math

import torch

from ... import functional as F
from ...functional._precision import as_compute, compute_dtype, reduce_to
from . import rational

# expm1(v) for v <= 0 next to exp(v) (SReLU's backward needs both): the Taylor polynomial up to
# v^7/7! where v > -1/2 (exp(v) - 1 would cancel there), exp(v) - 1 further left (no cancellation:
# |exp(v) - 1| > 0.39). Both sides are within one float32 ulp of expm1; float64 uses torch.expm1.
_EXPM1_TAYLOR_CUTOFF = 0.5
_EXPM1_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(2, 9))


def srelu(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """:func:`actplug.functional.srelu` with expm1 from a rational function (no exp call)."""
    dtype = compute_dtype(x)
    if dtype == torch.float64:
        return F.srelu(x, alpha, beta)
    xc = x.to(dtype)
    a, b = as_compute(alpha, dtype, x.device), as_compute(beta, dtype, x.device)
    right = xc > 0
    left = rational.expm1_nonpositive(torch.where(right, 0.0, xc))
    return torch.where(right, a * xc, b * left).to(x.dtype)


def _expm1_nonpositive(v: torch.Tensor) -> torch.Tensor:
    """``expm1(v)`` for v <= 0 in float32 from one ``exp`` and a short polynomial."""
    taylor = v + v * v * rational.horner(_EXPM1_TAYLOR, v)
    return torch.where(v > -_EXPM1_TAYLOR_CUTOFF, taylor, torch.exp(v) - 1.0)


def srelu_backward(x, grad, alpha, beta, need_alpha=False, need_beta=False):
    """:func:`actplug.functional.srelu_backward` with expm1 from the exp that dy/dx needs anyway."""
    dtype = compute_dtype(x)
    if dtype == torch.float64 or not need_beta:
        return F.srelu_backward(x, grad, alpha, beta, need_alpha, need_beta)
    xc, gc = x.to(dtype), grad.to(dtype)
    a, b = as_compute(alpha, dtype, x.device), as_compute(beta, dtype, x.device)
    right = xc > 0
    left = torch.where(right, 0.0, xc)
    dx = (gc * torch.where(right, a, b * torch.exp(left))).to(x.dtype)
    d_alpha = reduce_to(gc * torch.where(right, xc, 0.0), a) if need_alpha else None
    d_beta = reduce_to(gc * torch.where(right, 0.0, _expm1_nonpositive(left)), b)
    return dx, d_alpha, d_beta
