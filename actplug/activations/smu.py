"""Smooth Maximum Unit and SMU-1 (Biswas et al., "SMU: smooth activation function for deep
networks using smoothing maximum technique", smu.txt): the math and the declarations.

Both smooth max(x, alpha x), i.e. Leaky ReLU with slope alpha. The plain math comes first, then
the same functions written for Inductor's fused CPU loops (a rational erf, sqrt for hypot, one exp
shared by erf and its derivative), then the two declarations.
"""

from __future__ import annotations

import math

import torch

from ..declaration import Activation, Fused, Param
from . import _rational as rational
from ._precision import as_compute, check_floating, compute_dtype, finite_max, reduce_to

# erf(u) rounds to exactly +-1 in float64 (and float32) for |u| >= 6, so clamping u at +-6 changes no
# value while it keeps u*exp(-u^2) (erf's derivative times u) away from inf*0 when mu is huge (or inf
# after .half()). Not a larger bound: exp(-u^2) must stay a normal float32 number (exp(-36) = 2e-16),
# since subnormal arithmetic is many times slower on CPUs and mu = 1e6 saturates nearly every element.
ERF_SATURATION = 6.0
INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
SMU_MU = 1e6
SMU1_MU = 4.352665993287951e-09


# --------------------------------------------------------------------------------------------------
# SMU: the plain math.
# --------------------------------------------------------------------------------------------------


def smu(x: torch.Tensor, alpha: torch.Tensor | float = 0.25, mu: torch.Tensor | float = SMU_MU) -> torch.Tensor:
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
    u = (k * xc).clamp(-ERF_SATURATION, ERF_SATURATION)
    return (xc * (((1.0 + alpha) + (1.0 - alpha) * torch.erf(u)) * 0.5)).to(x.dtype)


def smu_backward(
    x: torch.Tensor,
    grad: torch.Tensor,
    alpha: torch.Tensor | float = 0.25,
    mu: torch.Tensor | float = SMU_MU,
    *,
    needs: tuple[str, ...] = (),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Analytic gradients of :func:`smu` from x alone: ``(dL/dx, {"mu": dL/dmu} if wanted)``.

    With ``u = clamp(k x, +-6)``, ``k = mu (1-a)``:
    ``dy/dx = gate + (1-a)/sqrt(pi) u exp(-u^2)`` (``k x`` written as u, so a huge mu never meets
    a huge x) and ``dy/dmu = (1-a)^2/sqrt(pi) x^2 exp(-u^2)``, both second terms taken where erf is
    not saturated and 0 where it is (the clamp's own gradient). dL/dmu is summed to mu's shape, in
    the compute dtype.
    """
    dtype = compute_dtype(x)
    xc, gc = x.to(dtype), grad.to(dtype)
    mu_c = as_compute(mu, dtype, x.device)
    k = torch.nan_to_num(mu_c * (1.0 - alpha))
    one_minus = 1.0 - alpha
    kx = k * xc
    u = kx.clamp(-ERF_SATURATION, ERF_SATURATION)
    unsaturated = kx.abs() < ERF_SATURATION
    bell = torch.where(unsaturated, torch.exp(-u * u), 0.0)
    gate = ((1.0 + alpha) + one_minus * torch.erf(u)) * 0.5
    dx = (gc * (gate + (one_minus * INV_SQRT_PI) * u * bell)).to(x.dtype)
    if "mu" not in needs:
        return dx, {}
    term = torch.where(unsaturated, xc * xc * bell, 0.0) * (one_minus * one_minus * INV_SQRT_PI)
    return dx, {"mu": reduce_to(gc * term, mu_c)}


# --------------------------------------------------------------------------------------------------
# SMU-1: the plain math.
# --------------------------------------------------------------------------------------------------


def _smu1_floor(dtype: torch.dtype) -> float:
    """|mu|'s floor: sqrt(tiny) of the compute dtype (times 4), so that mu = 0 has finite gradients."""
    return math.sqrt(torch.finfo(dtype).tiny) * 4.0


def smu1(x: torch.Tensor, alpha: torch.Tensor | float = 0.25, mu: torch.Tensor | float = SMU1_MU) -> torch.Tensor:
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
    mu_safe = as_compute(mu, dtype, x.device).abs().clamp_min(_smu1_floor(dtype))
    a = (1.0 - alpha) * xc
    right_side = xc >= 0
    # |(1-a)x| as a where on the same side test as max(x, a x) below: abs() has gradient 0 at 0,
    # which would leave the kink of max(x, a x) uncancelled (gradient 1 instead of (1 + a) / 2).
    wide = bool(alpha <= 1.0)
    a_abs = torch.where(right_side, a, -a) if wide else torch.where(right_side, -a, a)
    r = torch.hypot(a, mu_safe)
    gap = mu_safe * mu_safe / (2.0 * (r + a_abs))
    # max(x, a x): x on the right of 0 when alpha <= 1, the other way round when alpha > 1.
    right, left = (xc, alpha * xc) if wide else (alpha * xc, xc)
    return (torch.where(right_side, right, left) + gap).to(x.dtype)


def smu1_backward(
    x: torch.Tensor,
    grad: torch.Tensor,
    alpha: torch.Tensor | float = 0.25,
    mu: torch.Tensor | float = SMU1_MU,
    *,
    needs: tuple[str, ...] = (),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Analytic gradients of :func:`smu1` from x alone: ``(dL/dx, {"mu": dL/dmu} if wanted)``.

    With ``A = (1-a) x`` and ``r = hypot(A, |mu|)``: ``dy/dx = ((1+a) + (1-a) A / r) / 2`` (A / r is
    in [-1, 1], r >= the floor of |mu|, so it is finite everywhere; (1+a)/2 at x = 0) and
    ``dy/dmu = sign(mu) |mu| / (2 r)``, 0 where |mu| sits on its floor (the clamp's gradient).
    """
    dtype = compute_dtype(x)
    xc, gc = x.to(dtype), grad.to(dtype)
    mu_c = as_compute(mu, dtype, x.device)
    floor = _smu1_floor(dtype)
    mu_safe = mu_c.abs().clamp_min(floor)
    a = finite_max((1.0 - alpha) * xc)
    r = torch.hypot(a, mu_safe)
    dx = (gc * (0.5 * (1.0 + alpha) + (0.5 * (1.0 - alpha)) * (a / r))).to(x.dtype)
    if "mu" not in needs:
        return dx, {}
    scale = torch.where(mu_c.abs() >= floor, 0.5 * torch.sign(mu_c), 0.0)
    return dx, {"mu": reduce_to(gc * (mu_safe / r), mu_c) * scale}


# --------------------------------------------------------------------------------------------------
# The fused CPU forms (float32 and the half types; float64 keeps the plain math).
# --------------------------------------------------------------------------------------------------

# SMU-1's |(1-a) x| above which ((1-a) x)^2 would overflow float32: the slope is exactly +-1 there.
_SQUARE_SAFE = 1e18

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


def smu_scalars(alpha: torch.Tensor, mu: torch.Tensor) -> dict[str, torch.Tensor]:
    """SMU's scalars for the fused loops, computed once per call outside them: the scale of erf's
    argument ``k = mu (1 - alpha)`` (a mu that overflowed, 1e6 in float16, is the saturated limit,
    the largest float), the gate's two halves and the backward's constants. Inside the loop the
    compiler cannot hoist them (an output might alias a parameter) and redoes them for every vector."""
    one_minus = 1.0 - alpha
    return {
        "k": torch.nan_to_num(mu * one_minus),
        "plus": 0.5 * (1.0 + alpha),
        "minus": 0.5 * one_minus,
        "bell_scale": one_minus * INV_SQRT_PI,
        "mu_scale": one_minus * one_minus * INV_SQRT_PI,
    }


def smu_fused(
    x: torch.Tensor, k: torch.Tensor, plus: torch.Tensor, minus: torch.Tensor, **_: torch.Tensor
) -> torch.Tensor:
    """:func:`smu` from :func:`smu_scalars`, erf from a rational function."""
    xc = x.to(compute_dtype(x))
    return (xc * (plus + minus * rational.erf(k * xc))).to(x.dtype)


def smu_fused_backward(
    x: torch.Tensor,
    grad: torch.Tensor,
    k: torch.Tensor,
    plus: torch.Tensor,
    minus: torch.Tensor,
    bell_scale: torch.Tensor,
    mu_scale: torch.Tensor,
    *,
    needs: tuple[str, ...] = (),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`smu_backward` from :func:`smu_scalars`, with one exp shared by erf and its derivative.

    u = k x is not clamped: where u^2 overflows, ``exp(-u^2)`` is 0 and the terms that multiply it
    by u or x^2 are taken as 0 (their limit) instead of inf * 0. dy/dmu does not depend on mu.
    """
    dtype = compute_dtype(x)
    xc, gc = x.to(dtype), grad.to(dtype)
    u = k * xc
    bell = torch.exp(-u * u)
    live = bell > 0.0
    gate = plus + minus * _erf_with_bell(u, bell)
    dx = (gc * (gate + bell_scale * torch.where(live, u * bell, 0.0))).to(x.dtype)
    if "mu" not in needs:
        return dx, {}
    return dx, {"mu": (gc * torch.where(live, xc * xc * bell, 0.0)).sum() * mu_scale}


def smu1_fused(x: torch.Tensor, alpha: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """:func:`smu1` with ``sqrt(A^2 + mu^2)`` for ``hypot(A, mu)`` and ``max(x, a x)`` as one maximum.

    Where A^2 overflows, r = inf makes the gap ``mu^2 / (2 (r + |A|))`` exactly 0, its true
    limit in float32, so no guard is needed.
    """
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    mu_safe = mu.abs().clamp_min(_smu1_floor(dtype))
    mu2 = mu_safe * mu_safe
    a = (1.0 - alpha) * xc
    gap = mu2 / (2.0 * (torch.sqrt(a * a + mu2) + a.abs()))
    return (torch.maximum(xc, alpha * xc) + gap).to(x.dtype)


def smu1_fused_backward(
    x: torch.Tensor, grad: torch.Tensor, alpha: torch.Tensor, mu: torch.Tensor, *, needs: tuple[str, ...] = ()
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`smu1_backward` with ``rsqrt(A^2 + mu^2)`` for ``1 / hypot(A, mu)``.

    A is clamped to +-1e18 first: A / r is exactly +-1 there in float32, and A^2 stays finite.
    """
    dtype = compute_dtype(x)
    xc, gc = x.to(dtype), grad.to(dtype)
    floor = _smu1_floor(dtype)
    mu_safe = mu.abs().clamp_min(floor)
    a = ((1.0 - alpha) * xc).clamp(-_SQUARE_SAFE, _SQUARE_SAFE)
    inv_r = torch.rsqrt(a * a + mu_safe * mu_safe)
    dx = (gc * (0.5 * (1.0 + alpha) + (0.5 * (1.0 - alpha)) * (a * inv_r))).to(x.dtype)
    if "mu" not in needs:
        return dx, {}
    scale = torch.where(mu.abs() >= floor, 0.5 * torch.sign(mu), 0.0)
    return dx, {"mu": (gc * (mu_safe * inv_r)).sum() * scale}


# --------------------------------------------------------------------------------------------------
# The declarations.
# --------------------------------------------------------------------------------------------------

SMU = Activation(
    name="smu",
    class_name="SMU",
    forward=smu,
    backward=smu_backward,
    params=(Param("alpha", 0.25), Param("mu", SMU_MU, trainable=True)),
    paper=(
        "Biswas et al., SMU: smooth activation function for deep networks using smoothing maximum "
        "technique (smu.txt, eq. 6)"
    ),
    formula="((1+a)x + (1-a) x erf(mu (1-a) x)) / 2",
    approximates="leaky_relu",
    negative_slope="alpha",
    doc="""Smooth Maximum Unit (Biswas et al., smu.txt eq. 6).

    ``f(x) = ((1+alpha) x + (1-alpha) x erf(mu (1-alpha) x)) / 2``, smoothing max(x, alpha x).
    alpha is fixed (default 0.25, paper 2.2); mu is a trainable scalar initialised to 1e6 (paper).
    The authors later recommended ``alpha=0.01, mu=2.5``: at 1e6 erf saturates and mu barely trains.
    ``trainable=False`` keeps mu as a buffer. alpha = 0, mu = 1/sqrt(2) is GELU.
    """,
    cpu=Fused(forward=smu_fused, backward=smu_fused_backward, prepare=smu_scalars),
    triton="smu",
)

SMU1 = Activation(
    name="smu1",
    class_name="SMU1",
    aliases=("smu-1", "smu_1"),
    forward=smu1,
    backward=smu1_backward,
    params=(Param("alpha", 0.25), Param("mu", SMU1_MU, trainable=True)),
    paper="Biswas et al., SMU (smu.txt, eq. 3 with x1 = x, x2 = a x)",
    formula="((1+a)x + sqrt(((1-a)x)^2 + mu^2)) / 2",
    approximates="leaky_relu",
    negative_slope="alpha",
    doc="""SMU-1 (Biswas et al., smu.txt, from eq. 3 with x1 = x, x2 = alpha x).

    ``f(x) = ((1+alpha) x + sqrt(((1-alpha) x)^2 + mu^2)) / 2``, smoothing max(x, alpha x).
    alpha is fixed (default 0.25); mu is a trainable scalar initialised to 4.352665993287951e-09.
    """,
    cpu=Fused(forward=smu1_fused, backward=smu1_fused_backward),
    triton="smu1",
)
