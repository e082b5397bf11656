"""Smooth Maximum Unit and SMU-1 (Biswas et al., "SMU: smooth activation function for deep
networks using smoothing maximum technique", smu.txt).

Both smooth max(x, alpha*x), i.e. Leaky ReLU with slope alpha.
"""

from __future__ import annotations

import math

import torch

from ._precision import as_compute, check_floating, compute_dtype, finite_max, reduce_to

# erf(u) rounds to exactly +-1 in float64 (and float32) for |u| >= 6, so clamping u at +-6 changes no
# value while it keeps u*exp(-u^2) (erf's derivative times u) away from inf*0 when mu is huge (or inf
# after .half()). Not a larger bound: exp(-u^2) must stay a normal float32 number (exp(-36) = 2e-16),
# since subnormal arithmetic is many times slower on CPUs and mu = 1e6 saturates nearly every element.
_ERF_SATURATION = 6.0
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)


def smu(x: torch.Tensor, alpha: float = 0.25, mu: torch.Tensor | float = 1e6) -> torch.Tensor:
    """SMU (smu.txt eq. 6): ``((1+a)x + (1-a) x erf(mu (1-a) x)) / 2``.

    Computed as ``x * ((1+a) + (1-a) erf(u)) / 2`` with ``u = mu (1-a) x``: one product with x,
    so x = -inf gives -inf (like Leaky ReLU) instead of -inf + inf. alpha = 0 and mu = 1/sqrt(2)
    give GELU exactly; mu -> inf gives Leaky ReLU with slope alpha.
    """
    check_floating(x, "smu")
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    # A mu that overflowed (e.g. 1e6 cast to float16) is the saturated limit: use the largest float.
    k = torch.nan_to_num(as_compute(mu, dtype, x.device) * (1.0 - alpha))
    return smu_from_slope(xc, k, alpha).to(x.dtype)


def smu_from_slope(x: torch.Tensor, k: torch.Tensor, alpha: float = 0.25) -> torch.Tensor:
    """:func:`smu` of x (in its compute dtype) given ``k = mu (1-a)`` (finite) instead of mu."""
    u = (k * x).clamp(-_ERF_SATURATION, _ERF_SATURATION)
    return x * (((1.0 + alpha) + (1.0 - alpha) * torch.erf(u)) * 0.5)


def smu1(x: torch.Tensor, alpha: float = 0.25, mu: torch.Tensor | float = 4.352665993287951e-09) -> torch.Tensor:
    """SMU-1 (smu.txt, eq. 3 with x1 = x, x2 = a x): ``((1+a)x + sqrt(((1-a)x)^2 + mu^2)) / 2``.

    Computed as ``max(x, a x) + mu^2 / (2 (r + |(1-a)x|))`` with ``r = hypot((1-a)x, mu)``, which is
    the same function without cancellation for large negative x and with a finite gradient at 0.
    Both max(x, a x) and |(1-a)x| take the side x >= 0 at x = 0 itself, so that their kinks cancel
    and the gradient at 0 is the true slope (1 + a) / 2. |mu| is floored at sqrt(tiny) of the
    compute dtype so that mu = 0 (SMU-1's init underflows to 0 in float16) still gives a finite
    gradient at x = 0, the subgradient (1 + a) / 2 of max(x, a x), instead of 0/0.
    """
    check_floating(x, "smu1")
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    mu_c = as_compute(mu, dtype, x.device)
    floor = math.sqrt(torch.finfo(dtype).tiny) * 4.0
    mu_safe = mu_c.abs().clamp_min(floor)
    a = (1.0 - alpha) * xc
    right_side = xc >= 0
    # |(1-a)x| as a where on the same side test as max(x, a x) below: abs() has gradient 0 at 0,
    # which would leave the kink of max(x, a x) uncancelled (gradient 1 instead of (1 + a) / 2).
    a_abs = torch.where(right_side, a, -a) if alpha <= 1.0 else torch.where(right_side, -a, a)
    r = torch.hypot(a, mu_safe)
    gap = mu_safe * mu_safe / (2.0 * (r + a_abs))
    # max(x, a x): x on the right of 0 when alpha <= 1, the other way round when alpha > 1.
    right, left = (xc, alpha * xc) if alpha <= 1.0 else (alpha * xc, xc)
    base = torch.where(right_side, right, left)
    return (base + gap).to(x.dtype)


def smu_backward(
    x: torch.Tensor,
    grad: torch.Tensor,
    alpha: float = 0.25,
    mu: torch.Tensor | float = 1e6,
    need_mu: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Analytic gradients of :func:`smu` from x alone: ``(dL/dx, dL/dmu or None)``.

    With ``u = clamp(k x, +-6)``, ``k = mu (1-a)``:
    ``dy/dx = gate + (1-a)/sqrt(pi) u exp(-u^2)`` (``k x`` written as u, so a huge mu never meets
    a huge x) and ``dy/dmu = (1-a)^2/sqrt(pi) x^2 exp(-u^2)``, both second terms taken where erf is
    not saturated and 0 where it is (the clamp's own gradient). dL/dmu is summed to mu's shape, in
    the compute dtype.
    """
    dtype = compute_dtype(x)
    k = torch.nan_to_num(as_compute(mu, dtype, x.device) * (1.0 - alpha))
    return smu_backward_from_slope(x, grad, k, alpha, need_mu)


def smu_backward_from_slope(
    x: torch.Tensor, grad: torch.Tensor, k: torch.Tensor, alpha: float = 0.25, need_mu: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`smu_backward` given ``k = mu (1-a)`` (finite) instead of mu; dL/dmu has k's shape."""
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    gc = grad.to(dtype)
    one_minus = 1.0 - alpha
    kx = k * xc
    u = kx.clamp(-_ERF_SATURATION, _ERF_SATURATION)
    unsaturated = kx.abs() < _ERF_SATURATION
    bell = torch.where(unsaturated, torch.exp(-u * u), 0.0)
    gate = ((1.0 + alpha) + one_minus * torch.erf(u)) * 0.5
    dx = (gc * (gate + (one_minus * _INV_SQRT_PI) * u * bell)).to(x.dtype)
    if not need_mu:
        return dx, None
    term = torch.where(unsaturated, xc * xc * bell, 0.0) * (one_minus * one_minus * _INV_SQRT_PI)
    return dx, reduce_to(gc * term, k)


def smu1_backward(
    x: torch.Tensor,
    grad: torch.Tensor,
    alpha: float = 0.25,
    mu: torch.Tensor | float = 4.352665993287951e-09,
    need_mu: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Analytic gradients of :func:`smu1` from x alone: ``(dL/dx, dL/dmu or None)``.

    With ``A = (1-a) x`` and ``r = hypot(A, |mu|)``: ``dy/dx = ((1+a) + (1-a) A / r) / 2`` (A / r is
    in [-1, 1], r >= the floor of |mu|, so it is finite everywhere; (1+a)/2 at x = 0) and
    ``dy/dmu = sign(mu) |mu| / (2 r)``, 0 where |mu| sits on its floor (the clamp's gradient).
    """
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    gc = grad.to(dtype)
    mu_c = as_compute(mu, dtype, x.device)
    floor = math.sqrt(torch.finfo(dtype).tiny) * 4.0
    mu_safe = mu_c.abs().clamp_min(floor)
    a = finite_max((1.0 - alpha) * xc)
    r = torch.hypot(a, mu_safe)
    dx = (gc * (0.5 * (1.0 + alpha) + (0.5 * (1.0 - alpha)) * (a / r))).to(x.dtype)
    if not need_mu:
        return dx, None
    scale = torch.where(mu_c.abs() >= floor, 0.5 * torch.sign(mu_c), 0.0)
    return dx, reduce_to(gc * (mu_safe / r), mu_c) * scale
