"""PFLU, LPFLU and FPFLU (Zhu et al. 2021; lpflu.txt eq. 8) for the fused loops: one sqrt, one division.

The plain math takes PFLU's gate from ``rsqrt`` and a division, with a third division where |x| is
huge; vectorised, each costs what the whole of ReLU does. Here PFLU and its slope each come from
one quotient of a = |x| and s = sqrt(1 + a^2) that is exact to a few ulps on the side of 0 where
x / s takes away from 1 (``1 - a / s = 1 / (s (s + a))``), and the other side is taken from it
through ``g(x) = 1 - g(-x)``, where nothing cancels (the result is at least half the term it is
taken from). Past the range where the quotient's denominator is finite, the quotient is 0 and the
result its limit. Values agree with the plain math to a few ulps (the tests hold them to the
float64 references).
"""

from __future__ import annotations

import torch

from ... import functional as F
from ...functional._precision import as_compute, compute_dtype, reduce_to

# The slope's |x| clamp: there PFLU'(x) is 1 on the right to the last bit and -1 / (4 x^2), below
# 2.5e-19, on the left; the slope's terms, up to 4 |x|^4, stay finite in float32.
_SLOPE_MAX = 1e9


def _twice_left_gate(a: torch.Tensor) -> torch.Tensor:
    """2 g(-a) = 1 - a / s = 1 / (s (s + a)) for a = |x|, s = sqrt(1 + a^2): no cancellation.

    Where a^2 overflows (|x| > 1.8e19), s and the product are inf and the gate is 0, its limit: no
    clamp is needed. The gate is subnormal from a = 4.6e18 on, so x g keeps fewer digits there
    (PFLU(x) is then below 6e-20 in magnitude; its absolute error below 1e-25). Twice the gate,
    because Inductor computes a constant over a tensor as a reciprocal and a multiply: the 1/2 is
    folded into the caller's scalars.
    """
    q = 1.0 + a * a
    return 1.0 / (q + a * torch.sqrt(q))  # s (s + a) = q + a s: one multiply-add


def _gate(x: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """g(x) = (1 + x / sqrt(1 + x^2)) / 2, or g(-x) = 1 - g(x) with ``flip``: h = g(-|x|) on the side
    where x / s takes away from 1, and 1 - h (h <= 1/2, so exact) where it adds."""
    h = 0.5 * _twice_left_gate(x.abs())
    adds = (x < 0) if flip else (x >= 0)
    return torch.where(adds, 1.0 - h, h)


def _left_slope(x: torch.Tensor) -> torch.Tensor:
    """k = PFLU'(-|x|) = g(-a) - a g'(a) = (1 - a s) / (2 q s (s + a)), with a = |x|, q = 1 + a^2, s = sqrt(q)
    (g'(x) = 1 / (2 q s)): one quotient. PFLU'(x) is k left of 0 and 1 - k right of 0 (g(a) = 1 - g(-a)).

    |x| is clamped at 1e9 (a compare and a blend; Inductor's NaN-propagating minimum takes three
    vector instructions), past which k's numerator would overflow along with its denominator.
    """
    a = x.abs()
    a = torch.where(a > _SLOPE_MAX, _SLOPE_MAX, a)  # NaN > limit is false: NaN stays NaN
    q = 1.0 + a * a
    s = torch.sqrt(q)
    return (1.0 - a * s) / ((2.0 * q) * (q + a * s))  # s (s + a) = q + a s


def _pflu_slope(x: torch.Tensor) -> torch.Tensor:
    """PFLU'(x) = g(x) + x g'(x): k = :func:`_left_slope` left of 0, 1 - k right of 0."""
    k = _left_slope(x)
    return torch.where(x >= 0, 1.0 - k, k)


def _leaky(x: torch.Tensor, left: torch.Tensor, a: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """a + (1 - a) f(x) for f = g or PFLU', given ``left`` = f(-|x|) / ``scale`` (f(|x|) = 1 - f(-|x|)):
    one blend, ``1 - c left`` right of 0 and ``a + c left`` left of it, c = scale (1 - a) a scalar."""
    c = scale * (1.0 - a)
    return torch.where(x >= 0, 1.0 - c * left, a + c * left)


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
    return (xc * _leaky(xc, _twice_left_gate(xc.abs()), a, scale=0.5)).to(x.dtype)


def lpflu_backward(
    x: torch.Tensor, grad: torch.Tensor, negative_slope: torch.Tensor, need_slope: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`actplug.functional.lpflu_backward`: ``dy/dx = a + (1 - a) PFLU'(x)``, ``dy/da = x g(-x)``."""
    dtype = compute_dtype(x)
    if dtype == torch.float64:
        return F.lpflu_backward(x, grad, negative_slope, need_slope)
    xc, gc = x.to(dtype), grad.to(dtype)
    a = as_compute(negative_slope, dtype, x.device)
    dx = (gc * _leaky(xc, _left_slope(xc), a)).to(x.dtype)
    if not need_slope:
        return dx, None
    return dx, reduce_to(gc * xc * _gate(xc, flip=True), a)


# FPFLU's slope left of 0 is finite and tends to 0 as x -> -inf; x is clamped there so that the
# factors below stay finite (x^2 would overflow to inf, and -inf * 0 is NaN).
_FPFLU_SQUARE_MAX = 1.8e19


def fpflu_backward(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """:func:`actplug.functional.fpflu_backward`: 1 for x >= 0, ``(1 - x^2) w w`` with w = 1 / (1 + x^2)
    for x < 0. ``1 - x^2`` compiles to one fused multiply-add, exact before its one rounding, so the
    zero at x = -1 keeps its relative precision; a one-sided clamp (a compare and a blend) in place
    of the plain math's two-sided NaN-propagating one."""
    dtype = compute_dtype(x)
    if dtype == torch.float64:
        return F.fpflu_backward(x, grad)
    xc = x.to(dtype)
    xl = torch.where(xc < -_FPFLU_SQUARE_MAX, -_FPFLU_SQUARE_MAX, xc)  # NaN < limit is false
    w = 1.0 / (1.0 + xl * xl)
    return (grad.to(dtype) * torch.where(xc >= 0, 1.0, ((1.0 - xl * xl) * w) * w)).to(x.dtype)
