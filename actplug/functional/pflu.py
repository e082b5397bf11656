"""The power-function family: PFLU and FPFLU (Zhu et al. 2021, "PFLU and FPFLU: two novel
non-monotonic activation functions in convolutional neural networks", cited in lpflu.txt)
and LPFLU (lpflu.txt eq. 8), the leaky PFLU whose slope the module samples and averages.
"""

from __future__ import annotations

import torch

from ._precision import as_compute, check_floating, compute_dtype, finite_max, reduce_to

# For |x| >= 1e8, x / sqrt(1 + x^2) rounds to exactly 1 in float64 (and float32) and 1 + x^2 to x^2:
# clamping |x| there changes no value, while 1e8^2 stays far from overflow in float32.
_GATE_SATURATION = 1e8


def _pflu_gate(x: torch.Tensor) -> torch.Tensor:
    """g(x) = (1 + x / sqrt(1 + x^2)) / 2, so that PFLU(x) = x g(x), without cancellation or overflow.

    With r = 1 / sqrt(1 + x^2) and t = |x| r: g = (1 + t) / 2 for x >= 0 and, since
    1 - t = (1 - t^2) / (1 + t) = r^2 / (1 + t), g = r^2 / (2 (1 + t)) for x < 0 (no cancellation).
    r is an rsqrt of 1 + x^2 with |x| clamped at 1e8 (where t is already 1 and 1 + x^2 = x^2 to the
    last bit), and 1 / |x| beyond, so nothing overflows; rsqrt, where and products vectorise well
    (two hypot calls made the fused CPU kernel twice as slow as ReLU). The gate takes its limits at
    +-inf (1 and 0).
    """
    xa = x.abs()
    xc = xa.clamp_max(_GATE_SATURATION)
    rc = torch.rsqrt(1.0 + xc * xc)
    t = xc * rc
    r = torch.where(xa > _GATE_SATURATION, torch.reciprocal(xa.clamp_min(_GATE_SATURATION)), rc)
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
    xc = xa.clamp_max(_GATE_SATURATION)
    rc = torch.rsqrt(1.0 + xc * xc)
    r = torch.where(xa > _GATE_SATURATION, torch.reciprocal(xa.clamp_min(_GATE_SATURATION)), rc)
    t = xc * rc
    gate = torch.where(x >= 0, 0.5 * (1.0 + t), 0.5 * r * r / (1.0 + t))
    return gate + 0.5 * torch.copysign(t, x) * (r * r)


def pflu_backward(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """dL/dx of :func:`pflu` from x alone: ``grad (g(x) + x g'(x))``, g'(x) = (1 + x^2)^(-3/2) / 2."""
    dtype = compute_dtype(x)
    return (grad.to(dtype) * _pflu_slope(x.to(dtype))).to(x.dtype)


def lpflu_backward(
    x: torch.Tensor,
    grad: torch.Tensor,
    negative_slope: torch.Tensor | float = 0.01,
    need_slope: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Analytic gradients of :func:`lpflu`: ``dy/dx = (1-a) PFLU'(x) + a``, ``dy/da = x (1 - g(x))``.

    ``1 - g(x) = g(-x)`` (the gate is symmetric about 1/2), which keeps dy/da free of cancellation.
    The module never trains its slope; the slope's gradient is there for functional callers.
    """
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    gc = grad.to(dtype)
    a = as_compute(negative_slope, dtype, x.device)
    dx = (gc * ((1.0 - a) * _pflu_slope(xc) + a)).to(x.dtype)
    if not need_slope:
        return dx, None
    return dx, reduce_to(gc * xc * _pflu_gate(-xc), a)


def fpflu_backward(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """dL/dx of :func:`fpflu`: 1 for x >= 0, ``(1 - x^2) / (1 + x^2)^2 = ((1 - x) w) ((1 + x) w)`` with
    ``w = 1 / (1 + x^2)`` for x < 0 (bounded factors, so nothing overflows for large |x|, and the
    zero at x = -1 keeps its relative precision)."""
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    xf = finite_max(xc)
    w = torch.reciprocal(1.0 + xf * xf)
    return (grad.to(dtype) * torch.where(xc >= 0, 1.0, ((1.0 - xf) * w) * ((1.0 + xf) * w))).to(x.dtype)
