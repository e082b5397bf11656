"""Gish (Kaytan et al. 2023, "Gish: a novel activation function for image classification", cited in
lpflu.txt): the math and the declaration."""

from __future__ import annotations

import torch

from ..declaration import Activation, Fused
from . import _rational as rational
from ._precision import check_floating, compute_dtype, finite_max

# exp(-exp(x)) == 0 exactly in float64 (and float32) once exp(x) > 745, i.e. x > 6.62; clamping
# exp's argument at 20 changes no value, while it keeps exp(x) finite so that the backward never
# computes 0 * inf (NaN) for large x.
GISH_SATURATION = 20.0

# Taylor coefficients of ln(2 - exp(-e)) = e - e^2 + e^3 - 13/12 e^4 + ... at e = 0 (through e^8).
_SERIES = (1.0, -1.0, 1.0, -13.0 / 12.0, 5.0 / 4.0, -541.0 / 360.0, 223.0 / 120.0, -47293.0 / 20160.0)
# Below this e = exp(x) the series is used: ln(2 - exp(-e)) loses about eps / e of relative precision
# to the rounding of 2 - exp(-e), the series' truncation error is about 3 e^8; the cutoffs balance the two
# (about 4e-7 relative in float32, 1e-14 in float64).
_SERIES_CUTOFF = {torch.float64: 0.01}
_SERIES_CUTOFF_DEFAULT = 0.125


def _log_term(e: torch.Tensor) -> torch.Tensor:
    """ln(2 - exp(-e)) for e = exp(x) >= 0, accurate for small e (very negative x) too."""
    cutoff = _SERIES_CUTOFF.get(e.dtype, _SERIES_CUTOFF_DEFAULT)
    small = e.clamp_max(cutoff)  # the unused branch must not overflow: its gradient would be 0 * inf
    poly = torch.full_like(e, _SERIES[-1])
    for c in reversed(_SERIES[:-1]):
        poly = poly * small + c
    return torch.where(e < cutoff, small * poly, torch.log(2.0 - torch.exp(-e)))


def gish(x: torch.Tensor) -> torch.Tensor:
    """Gish: ``x ln(2 - exp(-exp(x)))``.

    For very negative x the argument of the log is 1 + e^x, which the naive form rounds to 1 (giving 0
    instead of x e^x); below a small e^x the log is its Taylor series instead. exp's argument is
    clamped at 20, where the log term is already exactly ln 2: the values are unchanged and the
    gradient stays finite (ln 2) for large x instead of 0 * inf = NaN.
    """
    check_floating(x, "gish")
    xc = x.to(compute_dtype(x))
    return (xc * _log_term(torch.exp(xc.clamp_max(GISH_SATURATION)))).to(x.dtype)


def gish_backward(x: torch.Tensor, grad: torch.Tensor, *, needs: tuple[str, ...] = ()) -> torch.Tensor:
    """dL/dx of :func:`gish`: ``L + x e^x e^(-e^x) / (2 - e^(-e^x))`` with ``L = ln(2 - e^(-e^x))``.

    The second term is exactly 0 past the clamp at 20 (``e^(-e^x)`` is 0 there), matching the
    clamp's gradient, and x = -inf is clamped to the largest finite number so that ``x e^x`` is 0,
    not -inf * 0. The denominator is in [1, 2].
    """
    dtype = compute_dtype(x)
    xf = finite_max(x.to(dtype))
    e = torch.exp(xf.clamp_max(GISH_SATURATION))
    v = torch.exp(-e)
    slope = _log_term(e) + xf * (e * v) / (2.0 - v)  # e v first: 0 past the clamp, so no inf * 0
    return (grad.to(dtype) * slope).to(x.dtype)


# --------------------------------------------------------------------------------------------------
# The fused CPU forms: one exp and a rational function instead of three calls.
# --------------------------------------------------------------------------------------------------


def gish_fused(x: torch.Tensor) -> torch.Tensor:
    """:func:`gish` with its log term from a rational function of exp(x)."""
    xc = x.to(compute_dtype(x))
    return (xc * rational.log_two_minus_exp_neg(torch.exp(xc))).to(x.dtype)


def gish_fused_backward(x: torch.Tensor, grad: torch.Tensor, *, needs: tuple[str, ...] = ()) -> torch.Tensor:
    """:func:`gish_backward` with the log term from the rational function; the second term
    x e v / (2 - v), v = exp(-e), is taken as 0 where e v is 0 (x = -inf gives -inf * 0 otherwise)."""
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    e = torch.exp(xc.clamp_max(GISH_SATURATION))
    v = torch.exp(-e)
    ev = e * v
    slope = rational.log_two_minus_exp_neg(e) + torch.where(ev > 0.0, xc * ev / (2.0 - v), 0.0)
    return (grad.to(dtype) * slope).to(x.dtype)


# --------------------------------------------------------------------------------------------------
# The declaration.
# --------------------------------------------------------------------------------------------------

GISH = Activation(
    name="gish",
    class_name="Gish",
    forward=gish,
    backward=gish_backward,
    paper="Kaytan et al. 2023, Gish (cited in lpflu.txt)",
    formula="x ln(2 - exp(-exp(x)))",
    approximates="relu",
    doc="Gish (Kaytan et al. 2023, cited in lpflu.txt): ``x ln(2 - exp(-exp(x)))``.",
    cpu=Fused(forward=gish_fused, backward=gish_fused_backward),
    triton="gish",
)
