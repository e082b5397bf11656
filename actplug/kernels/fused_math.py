"""Formulas written for Inductor's fused CPU loops: the same functions, cheaper instructions.

The plain math of :mod:`actplug.functional` is also what autograd, ``torch.compile`` and export
differentiate, so it picks the ops with the safest gradients (``hypot``, ``expm1``). Inside a fused
kernel with an analytic backward, gradients of the formula itself never matter, and those two ops
are several times slower when vectorised than ``sqrt`` and ``exp``. For float32 (and the half
types, computed in float32) the functions below use the cheap ops with explicit guards, staying
within about one ulp of the plain math (the tests hold them to the float64 references); float64
keeps the plain math as it is.
"""

from __future__ import annotations

import math

import torch

from .. import functional as F
from ..functional._precision import as_compute, compute_dtype, reduce_to
from ..functional.smu import _ERF_SATURATION as _SMU_SATURATION
from ..functional.smu import _INV_SQRT_PI

# expm1(v) for v <= 0: the Taylor polynomial up to v^7/7! where v > -1/2 (exp(v) - 1 would cancel
# there), exp(v) - 1 further left (no cancellation: |exp(v) - 1| > 0.39). Both sides are within one
# float32 ulp of expm1; float64 uses torch.expm1 itself.
_EXPM1_TAYLOR_CUTOFF = 0.5
_EXPM1_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(2, 9))
# SMU-1's |(1-a) x| above which ((1-a) x)^2 would overflow float32: the slope is exactly +-1 there.
_SQUARE_SAFE = 1e18


def _expm1_nonpositive(v: torch.Tensor) -> torch.Tensor:
    """``expm1(v)`` for v <= 0 in float32 from one ``exp`` and a short polynomial."""
    acc = _EXPM1_TAYLOR[-1]
    for c in reversed(_EXPM1_TAYLOR[:-1]):
        acc = c + v * acc
    taylor = v + v * v * acc
    return torch.where(v > -_EXPM1_TAYLOR_CUTOFF, taylor, torch.exp(v) - 1.0)


def srelu(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """:func:`actplug.functional.srelu` with expm1 from exp and a polynomial."""
    dtype = compute_dtype(x)
    if dtype == torch.float64:
        return F.srelu(x, alpha, beta)
    xc = x.to(dtype)
    a, b = as_compute(alpha, dtype, x.device), as_compute(beta, dtype, x.device)
    right = xc > 0
    left = _expm1_nonpositive(torch.where(right, 0.0, xc))
    return torch.where(right, a * xc, b * left).to(x.dtype)


def srelu_backward(x, grad, alpha, beta, need_alpha=False, need_beta=False):
    """:func:`actplug.functional.srelu_backward` with expm1 from exp and a polynomial."""
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
_ERF_P = 0.3275911
_ERF_COEFFS = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def _erf_with_bell(u: torch.Tensor, bell: torch.Tensor) -> torch.Tensor:
    """erf(u) given ``bell = exp(-u^2)`` (float32 accuracy, see above)."""
    t = 1.0 / (1.0 + _ERF_P * u.abs())
    poly = _ERF_COEFFS[-1]
    for c in reversed(_ERF_COEFFS[:-1]):
        poly = c + t * poly
    return torch.copysign(1.0 - t * poly * bell, u)


def smu_backward(x, grad, alpha=0.25, mu=1e6, need_mu=False):
    """:func:`actplug.functional.smu_backward` with one exp shared by erf and erf's derivative."""
    dtype = compute_dtype(x)
    if dtype == torch.float64:
        return F.smu_backward(x, grad, alpha, mu, need_mu)
    xc, gc = x.to(dtype), grad.to(dtype)
    one_minus = 1.0 - alpha
    k = torch.nan_to_num(as_compute(mu, dtype, x.device) * one_minus)
    kx = k * xc
    u = kx.clamp(-_SMU_SATURATION, _SMU_SATURATION)
    bell = torch.exp(-u * u)
    gate = ((1.0 + alpha) + one_minus * _erf_with_bell(u, bell)) * 0.5
    unsaturated = kx.abs() < _SMU_SATURATION
    bell_inside = torch.where(unsaturated, bell, 0.0)
    dx = (gc * (gate + (one_minus * _INV_SQRT_PI) * u * bell_inside)).to(x.dtype)
    if not need_mu:
        return dx, None
    term = torch.where(unsaturated, xc * xc * bell, 0.0) * (one_minus * one_minus * _INV_SQRT_PI)
    return dx, reduce_to(gc * term, as_compute(mu, dtype, x.device))
