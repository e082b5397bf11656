"""PFLU, LPFLU and FPFLU (Zhu et al. 2021; lpflu.txt eq. 8) for the fused loops: one sqrt, one division.

The plain math takes PFLU's gate from ``rsqrt`` and a division, with a third division where |x| is
huge; vectorised, each costs what the whole of ReLU does. Here every gate and slope is one
quotient N / D of products of s = sqrt(1 + x^2), with N and D chosen per side of 0 so that
nothing cancels (``1 - |x| / s = 1 / (s (s + |x|))``) and nothing overflows before the result
itself is beyond float32. Values agree with the plain math to a few ulps (the tests hold them to
the float64 references).
"""

from __future__ import annotations

import torch

from ... import functional as F
from ...functional._precision import as_compute, compute_dtype, reduce_to

# |x| is clamped here before squaring: 1.8e19^2 is finite in float32, and past it the gate is 1
# on the right (its N / D is 1) and its denominator overflows to inf on the left, where the true
# gate 1 / (4 x^2) is below float32's normal range anyway.
_SQUARE_MAX = 1.8e19
# The slope's |x| clamp: there PFLU'(x) is 1 on the right to the last bit and -1 / (4 x^2), below
# 2.5e-19, on the left; the slope's terms, up to 4 |x|^4, stay finite in float32.
_SLOPE_MAX = 1e9


def _gate(x: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """g(x) = (1 + x / sqrt(1 + x^2)) / 2, or g(-x) = 1 - g(x) with ``flip``, as one quotient.

    With a = |x|, s = sqrt(1 + a^2): (s + a) / (2 s) on the side where x / s adds to 1, and
    1 / (2 s (s + a)) on the side where it takes away (1 - a / s = 1 / (s (s + a))).
    """
    a = x.abs().clamp_max(_SQUARE_MAX)
    s = torch.sqrt(1.0 + a * a)
    adds = (x < 0) if flip else (x >= 0)
    return torch.where(adds, 0.5 * (s + a), 0.5) / torch.where(adds, s, s * (s + a))


def _pflu_slope(x: torch.Tensor) -> torch.Tensor:
    """PFLU'(x) = g(x) + x g'(x) as one quotient: with q = 1 + x^2 and s = sqrt(q),
    ``(q s + x (1 + q)) / (2 q s)`` for x >= 0 and ``(1 - |x| s) / (2 q s (s + |x|))`` for x < 0."""
    a = x.abs().clamp_max(_SLOPE_MAX)
    q = 1.0 + a * a
    s = torch.sqrt(q)
    qs = q * s
    right = x >= 0
    return torch.where(right, qs + a * (1.0 + q), 1.0 - a * s) / (2.0 * qs * torch.where(right, 1.0, s + a))


def pflu(x: torch.Tensor) -> torch.Tensor:
    """:func:`actplug.functional.pflu`: ``x g(x)``, g from one sqrt and one division."""
    dtype = compute_dtype(x)
    if dtype == torch.float64:
        return F.pflu(x)
    xc = x.to(dtype)
    return (xc * _gate(xc)).to(x.dtype)


def pflu_backward(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """:func:`actplug.functional.pflu_backward`, the slope from one sqrt and one division."""
    dtype = compute_dtype(x)
    if dtype == torch.float64:
        return F.pflu_backward(x, grad)
    return (grad.to(dtype) * _pflu_slope(x.to(dtype))).to(x.dtype)


def lpflu(x: torch.Tensor, negative_slope: torch.Tensor) -> torch.Tensor:
    """:func:`actplug.functional.lpflu`: ``x ((1 - a) g(x) + a)``."""
    dtype = compute_dtype(x)
    if dtype == torch.float64:
        return F.lpflu(x, negative_slope)
    xc = x.to(dtype)
    a = as_compute(negative_slope, dtype, x.device)
    return (xc * (a + (1.0 - a) * _gate(xc))).to(x.dtype)


def lpflu_backward(
    x: torch.Tensor, grad: torch.Tensor, negative_slope: torch.Tensor, need_slope: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`actplug.functional.lpflu_backward`: ``dy/dx = a + (1 - a) PFLU'(x)``, ``dy/da = x g(-x)``."""
    dtype = compute_dtype(x)
    if dtype == torch.float64:
        return F.lpflu_backward(x, grad, negative_slope, need_slope)
    xc, gc = x.to(dtype), grad.to(dtype)
    a = as_compute(negative_slope, dtype, x.device)
    dx = (gc * (a + (1.0 - a) * _pflu_slope(xc))).to(x.dtype)
    if not need_slope:
        return dx, None
    return dx, reduce_to(gc * xc * _gate(xc, flip=True), a)
