"""SMU and SMU-1 (smu.txt eqs. 3 and 6) for the fused loops: sqrt for hypot, a rational erf, a shared exp."""

from __future__ import annotations

import math

import torch

from ... import functional as F
from ...functional._precision import as_compute, compute_dtype, reduce_to
from ...functional.smu import _INV_SQRT_PI, smu_backward_from_slope, smu_from_slope
from . import rational

# SMU-1's |(1-a) x| above which ((1-a) x)^2 would overflow float32: the slope is exactly +-1 there.
_SQUARE_SAFE = 1e18


def _smu1_mu(mu: torch.Tensor | float, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, float]:
    """|mu| on SMU-1's floor (see :func:`actplug.functional.smu1`) and the floor itself."""
    floor = math.sqrt(torch.finfo(dtype).tiny) * 4.0
    return as_compute(mu, dtype, device).abs().clamp_min(floor), floor


def smu1(x: torch.Tensor, alpha: float = 0.25, mu: torch.Tensor | float = 4.352665993287951e-09) -> torch.Tensor:
    """:func:`actplug.functional.smu1` with ``sqrt(A^2 + mu^2)`` for ``hypot(A, mu)``.

    Where A^2 overflows, r = inf makes the gap ``mu^2 / (2 (r + |A|))`` exactly 0, its true
    limit in float32, so no guard is needed.
    """
    dtype = compute_dtype(x)
    if dtype == torch.float64:
        return F.smu1(x, alpha, mu)
    xc = x.to(dtype)
    mu_safe, _ = _smu1_mu(mu, dtype, x.device)
    mu2 = mu_safe * mu_safe
    a = (1.0 - alpha) * xc
    a_abs = a.abs()
    gap = mu2 / (2.0 * (torch.sqrt(a * a + mu2) + a_abs))
    right_side = xc >= 0
    right, left = (xc, alpha * xc) if alpha <= 1.0 else (alpha * xc, xc)
    return (torch.where(right_side, right, left) + gap).to(x.dtype)


def smu1_backward(x, grad, alpha=0.25, mu=4.352665993287951e-09, need_mu=False):
    """:func:`actplug.functional.smu1_backward` with ``rsqrt(A^2 + mu^2)`` for ``1 / hypot(A, mu)``.

    A is clamped to +-1e18 first: A / r is exactly +-1 there in float32, and A^2 stays finite.
    """
    dtype = compute_dtype(x)
    if dtype == torch.float64:
        return F.smu1_backward(x, grad, alpha, mu, need_mu)
    xc, gc = x.to(dtype), grad.to(dtype)
    mu_c = as_compute(mu, dtype, x.device)
    mu_safe, floor = _smu1_mu(mu_c, dtype, x.device)
    a = ((1.0 - alpha) * xc).clamp(-_SQUARE_SAFE, _SQUARE_SAFE)
    inv_r = torch.rsqrt(a * a + mu_safe * mu_safe)
    dx = (gc * (0.5 * (1.0 + alpha) + (0.5 * (1.0 - alpha)) * (a * inv_r))).to(x.dtype)
    if not need_mu:
        return dx, None
    scale = torch.where(mu_c.abs() >= floor, 0.5 * torch.sign(mu_c), 0.0)
    return dx, reduce_to(gc * (mu_safe * inv_r), mu_c) * scale


# erf(u) = sign(u) (1 - t P(t) exp(-u^2)), t = 1 / (1 + p |u|): Abramowitz & Stegun 7.1.26, absolute
# error below 1.5e-7 (about one float32 ulp of SMU's gate). It is the algorithm Inductor's own
# vectorised erf uses, written out so that SMU's backward shares exp(-u^2) between erf and its
# derivative instead of computing it twice.
_AS_ERF_P = 0.3275911
_AS_ERF_COEFFS = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _erf_with_bell(u: torch.Tensor, bell: torch.Tensor) -> torch.Tensor:
    """erf(u) given ``bell = exp(-u^2)`` (float32 accuracy, see above)."""
    t = 1.0 / (1.0 + _AS_ERF_P * u.abs())
    return torch.copysign(1.0 - t * rational.horner(_AS_ERF_COEFFS, t) * bell, u)


def smu_slope(mu: torch.Tensor, alpha: float) -> torch.Tensor:
    """k = mu (1 - alpha), the scale of erf's argument; a mu that overflowed (1e6 in float16) is the
    saturated limit, the largest float. Computed once per call, outside the fused loop: inside it,
    the compiler cannot hoist it (the output might alias mu) and redoes it for every vector."""
    return torch.nan_to_num(mu * (1.0 - alpha))


def smu(x: torch.Tensor, k: torch.Tensor, alpha: float = 0.25) -> torch.Tensor:
    """:func:`actplug.functional.smu` from ``k = smu_slope(mu, alpha)``, erf from a rational function."""
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    if dtype == torch.float64:
        return smu_from_slope(xc, k, alpha).to(x.dtype)
    gate = (0.5 * (1.0 + alpha)) + (0.5 * (1.0 - alpha)) * rational.erf(k * xc)
    return (xc * gate).to(x.dtype)


def smu_backward(x, grad, k, alpha=0.25, need_mu=False):
    """:func:`actplug.functional.smu_backward` from ``k``, with one exp shared by erf and its derivative.

    u = k x is not clamped: where u^2 overflows, ``exp(-u^2)`` is 0 and the terms that multiply it
    by u or x^2 are taken as 0 (their limit) instead of inf * 0. dy/dmu does not depend on mu.
    """
    dtype = compute_dtype(x)
    if dtype == torch.float64:
        return smu_backward_from_slope(x, grad, k, alpha, need_mu)
    xc, gc = x.to(dtype), grad.to(dtype)
    one_minus = 1.0 - alpha
    u = k * xc
    bell = torch.exp(-u * u)
    live = bell > 0.0
    gate = (0.5 * (1.0 + alpha)) + (0.5 * one_minus) * _erf_with_bell(u, bell)
    dx = (gc * (gate + (one_minus * _INV_SQRT_PI) * torch.where(live, u * bell, 0.0))).to(x.dtype)
    if not need_mu:
        return dx, None
    term = torch.where(live, xc * xc * bell, 0.0) * (one_minus * one_minus * _INV_SQRT_PI)
    return dx, reduce_to(gc * term, k)
