"""The power-function family: PFLU and FPFLU (Zhu et al. 2021, "PFLU and FPFLU: two novel
non-monotonic activation functions in convolutional neural networks", cited in lpflu.txt) and LPFLU
(lpflu.txt eq. 8), the leaky PFLU whose slope its module samples and averages.

The plain math first, then the fused CPU forms (each gate and slope from one quotient), then the
three declarations.
"""

from __future__ import annotations

import torch

from ..declaration import Activation, Fused, Param
from ._precision import as_compute, check_floating, compute_dtype, finite_max, reduce_to

# For |x| >= 1e8, x / sqrt(1 + x^2) rounds to exactly 1 in float64 (and float32) and 1 + x^2 to x^2:
# clamping |x| there changes no value, while 1e8^2 stays far from overflow in float32.
GATE_SATURATION = 1e8


# --------------------------------------------------------------------------------------------------
# The plain math.
# --------------------------------------------------------------------------------------------------


def _pflu_gate(x: torch.Tensor) -> torch.Tensor:
    """g(x) = (1 + x / sqrt(1 + x^2)) / 2, so that PFLU(x) = x g(x), without cancellation or overflow.

    With r = 1 / sqrt(1 + x^2) and t = |x| r: g = (1 + t) / 2 for x >= 0 and, since
    1 - t = (1 - t^2) / (1 + t) = r^2 / (1 + t), g = r^2 / (2 (1 + t)) for x < 0 (no cancellation).
    r is an rsqrt of 1 + x^2 with |x| clamped at 1e8 (where t is already 1 and 1 + x^2 = x^2 to the
    last bit), and 1 / |x| beyond, so nothing overflows. The gate takes its limits at +-inf (1 and 0).
    """
    xa = x.abs()
    xc = xa.clamp_max(GATE_SATURATION)
    rc = torch.rsqrt(1.0 + xc * xc)
    t = xc * rc
    r = torch.where(xa > GATE_SATURATION, torch.reciprocal(xa.clamp_min(GATE_SATURATION)), rc)
    return torch.where(x >= 0, 0.5 * (1.0 + t), 0.5 * r * r / (1.0 + t))


def pflu(x: torch.Tensor) -> torch.Tensor:
    """PFLU (Zhu et al. 2021; lpflu.txt eq. 8 with a = 0): ``x (1 + x / sqrt(1 + x^2)) / 2``."""
    check_floating(x, "pflu")
    xc = x.to(compute_dtype(x))
    return (xc * _pflu_gate(xc)).to(x.dtype)


def lpflu(x: torch.Tensor, negative_slope: torch.Tensor | float = 0.01) -> torch.Tensor:
    """LPFLU (lpflu.txt eq. 8): ``(1 - a) PFLU(x) + a x`` for a given slope ``a``.

    This is the deterministic function; :class:`actplug.nn.LPFLU` draws ``a ~ U(l, u)`` in
    training and uses the moving average of the draws in evaluation (eqs. 10-11).
    """
    check_floating(x, "lpflu")
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    a = as_compute(negative_slope, dtype, x.device)
    return (xc * ((1.0 - a) * _pflu_gate(xc) + a)).to(x.dtype)


def fpflu(x: torch.Tensor) -> torch.Tensor:
    """FPFLU (Zhu et al. 2021, eq. 13 of the PFLU paper): ``max(x, x / (1 + x^2))``.

    Equals x for x >= 0 and x / (1 + x^2) for x < 0; written as a where so that the
    gradient at 0 is 1 (both branches have slope 1 there).
    """
    check_floating(x, "fpflu")
    xc = x.to(compute_dtype(x))
    return torch.where(xc >= 0, xc, xc / (1.0 + xc * xc)).to(x.dtype)


def _pflu_slope(x: torch.Tensor) -> torch.Tensor:
    """PFLU'(x) = g(x) + x g'(x), with x g'(x) = (x r) r^2 / 2 and r = 1 / sqrt(1 + x^2): every factor
    is bounded, so the derivative is finite for all x (and 1 at +inf, 0 at -inf)."""
    xa = x.abs()
    xc = xa.clamp_max(GATE_SATURATION)
    rc = torch.rsqrt(1.0 + xc * xc)
    r = torch.where(xa > GATE_SATURATION, torch.reciprocal(xa.clamp_min(GATE_SATURATION)), rc)
    t = xc * rc
    gate = torch.where(x >= 0, 0.5 * (1.0 + t), 0.5 * r * r / (1.0 + t))
    return gate + 0.5 * torch.copysign(t, x) * (r * r)


def pflu_backward(x: torch.Tensor, grad: torch.Tensor, *, needs: tuple[str, ...] = ()) -> torch.Tensor:
    """dL/dx of :func:`pflu` from x alone: ``grad (g(x) + x g'(x))``, g'(x) = (1 + x^2)^(-3/2) / 2."""
    dtype = compute_dtype(x)
    return (grad.to(dtype) * _pflu_slope(x.to(dtype))).to(x.dtype)


def lpflu_backward(
    x: torch.Tensor,
    grad: torch.Tensor,
    negative_slope: torch.Tensor | float = 0.01,
    *,
    needs: tuple[str, ...] = (),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Analytic gradients of :func:`lpflu`: ``dy/dx = (1-a) PFLU'(x) + a``, ``dy/da = x (1 - g(x))``.

    ``1 - g(x) = g(-x)`` (the gate is symmetric about 1/2), which keeps dy/da free of cancellation.
    The module never trains its slope; the slope's gradient is there for functional callers.
    """
    dtype = compute_dtype(x)
    xc, gc = x.to(dtype), grad.to(dtype)
    a = as_compute(negative_slope, dtype, x.device)
    dx = (gc * ((1.0 - a) * _pflu_slope(xc) + a)).to(x.dtype)
    if "negative_slope" not in needs:
        return dx, {}
    return dx, {"negative_slope": reduce_to(gc * xc * _pflu_gate(-xc), a)}


def fpflu_backward(x: torch.Tensor, grad: torch.Tensor, *, needs: tuple[str, ...] = ()) -> torch.Tensor:
    """dL/dx of :func:`fpflu`: 1 for x >= 0, ``(1 - x^2) / (1 + x^2)^2 = ((1 - x) w) ((1 + x) w)`` with
    ``w = 1 / (1 + x^2)`` for x < 0 (bounded factors, so nothing overflows for large |x|, and the
    zero at x = -1 keeps its relative precision)."""
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    xf = finite_max(xc)
    w = torch.reciprocal(1.0 + xf * xf)
    return (grad.to(dtype) * torch.where(xc >= 0, 1.0, ((1.0 - xf) * w) * ((1.0 + xf) * w))).to(x.dtype)


# --------------------------------------------------------------------------------------------------
# The fused CPU forms: one sqrt, one division.
#
# PFLU and its slope each come from one quotient of a = |x| and s = sqrt(1 + a^2) that is exact to a
# few ulps on the side of 0 where x / s takes away from 1 (``1 - a / s = 1 / (s (s + a))``), and the
# other side is taken from it through ``g(x) = 1 - g(-x)``, where nothing cancels (the result is at
# least half the term it is taken from). Past the range where the quotient's denominator is finite,
# the quotient is 0 and the result its limit.
# --------------------------------------------------------------------------------------------------

# The slope's |x| clamp: there PFLU'(x) is 1 on the right to the last bit and -1 / (4 x^2), below
# 2.5e-19, on the left; the slope's terms, up to 4 |x|^4, stay finite in float32.
_SLOPE_MAX = 1e9
# FPFLU's slope left of 0 is finite and tends to 0 as x -> -inf; x is clamped there so that the
# factors below stay finite (x^2 would overflow to inf, and -inf * 0 is NaN).
_FPFLU_SQUARE_MAX = 1.8e19


def _twice_left_gate(a: torch.Tensor) -> torch.Tensor:
    """2 g(-a) = 1 - a / s = 1 / (s (s + a)) for a = |x|, s = sqrt(1 + a^2): no cancellation.

    Where a^2 overflows (|x| > 1.8e19), s and the product are inf and the gate is 0, its limit: no
    clamp is needed. Twice the gate, because Inductor computes a constant over a tensor as a
    reciprocal and a multiply: the 1/2 is folded into the caller's scalars.
    """
    q = 1.0 + a * a
    return 1.0 / (q + a * torch.sqrt(q))  # s (s + a) = q + a s: one multiply-add


def _gate(x: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """g(x), or g(-x) = 1 - g(x) with ``flip``: h = g(-|x|) where x / s takes away from 1, 1 - h where it adds."""
    h = 0.5 * _twice_left_gate(x.abs())
    adds = (x < 0) if flip else (x >= 0)
    return torch.where(adds, 1.0 - h, h)


def _left_slope(x: torch.Tensor) -> torch.Tensor:
    """k = PFLU'(-|x|) = (1 - a s) / (2 q s (s + a)), a = |x|, q = 1 + a^2, s = sqrt(q): one quotient.
    PFLU'(x) is k left of 0 and 1 - k right of 0 (g(a) = 1 - g(-a)); |x| is clamped at 1e9 by a compare
    and a blend (Inductor's NaN-propagating minimum takes three vector instructions)."""
    a = x.abs()
    a = torch.where(a > _SLOPE_MAX, _SLOPE_MAX, a)  # NaN > limit is false: NaN stays NaN
    q = 1.0 + a * a
    s = torch.sqrt(q)
    return (1.0 - a * s) / ((2.0 * q) * (q + a * s))  # s (s + a) = q + a s


def _leaky(x: torch.Tensor, left: torch.Tensor, a: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """a + (1 - a) f(x) for f = g or PFLU', given ``left`` = f(-|x|) / ``scale`` (f(|x|) = 1 - f(-|x|)):
    one blend, ``1 - c left`` right of 0 and ``a + c left`` left of it, c = scale (1 - a) a scalar."""
    c = scale * (1.0 - a)
    return torch.where(x >= 0, 1.0 - c * left, a + c * left)


def pflu_fused(x: torch.Tensor) -> torch.Tensor:
    """:func:`pflu`: ``x g(x)``, g from one sqrt and one division."""
    xc = x.to(compute_dtype(x))
    return (xc * _gate(xc)).to(x.dtype)


def pflu_fused_backward(x: torch.Tensor, grad: torch.Tensor, *, needs: tuple[str, ...] = ()) -> torch.Tensor:
    """:func:`pflu_backward`, the slope from one sqrt and one division."""
    dtype = compute_dtype(x)
    k = _left_slope(x.to(dtype))
    return (grad.to(dtype) * torch.where(x >= 0, 1.0 - k, k)).to(x.dtype)


def lpflu_fused(x: torch.Tensor, negative_slope: torch.Tensor) -> torch.Tensor:
    """:func:`lpflu`: ``x ((1 - a) g(x) + a)``."""
    xc = x.to(compute_dtype(x))
    return (xc * _leaky(xc, _twice_left_gate(xc.abs()), negative_slope, scale=0.5)).to(x.dtype)


def lpflu_fused_backward(
    x: torch.Tensor, grad: torch.Tensor, negative_slope: torch.Tensor, *, needs: tuple[str, ...] = ()
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`lpflu_backward`: ``dy/dx = a + (1 - a) PFLU'(x)``, ``dy/da = x g(-x)``."""
    dtype = compute_dtype(x)
    xc, gc = x.to(dtype), grad.to(dtype)
    dx = (gc * _leaky(xc, _left_slope(xc), negative_slope)).to(x.dtype)
    if "negative_slope" not in needs:
        return dx, {}
    return dx, {"negative_slope": (gc * xc * _gate(xc, flip=True)).sum()}


def fpflu_fused_backward(x: torch.Tensor, grad: torch.Tensor, *, needs: tuple[str, ...] = ()) -> torch.Tensor:
    """:func:`fpflu_backward`: ``(1 - x^2) w w`` left of 0, w = 1 / (1 + x^2); ``1 - x^2`` compiles to one
    fused multiply-add, exact before its one rounding, so the zero at x = -1 keeps its relative
    precision; a one-sided clamp (a compare and a blend) in place of the two-sided NaN-propagating one."""
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    xl = torch.where(xc < -_FPFLU_SQUARE_MAX, -_FPFLU_SQUARE_MAX, xc)  # NaN < limit is false
    w = 1.0 / (1.0 + xl * xl)
    return (grad.to(dtype) * torch.where(xc >= 0, 1.0, ((1.0 - xl * xl) * w) * w)).to(x.dtype)


# --------------------------------------------------------------------------------------------------
# The declarations.
# --------------------------------------------------------------------------------------------------

PFLU = Activation(
    name="pflu",
    class_name="PFLU",
    forward=pflu,
    backward=pflu_backward,
    paper="Zhu et al. 2021, PFLU and FPFLU (cited in lpflu.txt)",
    formula="x (1 + x / sqrt(1 + x^2)) / 2",
    approximates="relu",
    doc="Power Function Linear Unit (Zhu et al. 2021): ``x (1 + x / sqrt(1 + x^2)) / 2``.",
    cpu=Fused(forward=pflu_fused, backward=pflu_fused_backward),
    triton="pflu",
)

FPFLU = Activation(
    name="fpflu",
    class_name="FPFLU",
    forward=fpflu,
    backward=fpflu_backward,
    paper="Zhu et al. 2021, PFLU and FPFLU, eq. 13 (cited in lpflu.txt)",
    formula="max(x, x / (1 + x^2))",
    approximates="relu",
    doc="Faster PFLU (Zhu et al. 2021, eq. 13): ``max(x, x / (1 + x^2))``.",
    cpu=Fused(backward=fpflu_fused_backward),
    triton="fpflu",
)

LPFLU = Activation(
    name="lpflu",
    class_name="LPFLU",
    forward=lpflu,
    backward=lpflu_backward,
    params=(Param("negative_slope", 0.01, low=0.0, high=1.0, open_high=True, why="lpflu.txt eq. 10"),),
    paper="Leaky power function linear unit with EMA-trained slope (lpflu.txt, eqs. 8, 10, 11)",
    formula="(1-a) PFLU(x) + a x,  a ~ U(l, u) in training, EMA of a in evaluation",
    approximates="leaky_relu",
    negative_slope="negative_slope",
    cpu=Fused(forward=lpflu_fused, backward=lpflu_fused_backward),
    triton="lpflu",
    module="actplug.nn.lpflu:LPFLU",
)
