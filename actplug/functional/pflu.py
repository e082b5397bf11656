"""The power-function family: PFLU and FPFLU (Zhu et al. 2021, "PFLU and FPFLU: two novel
non-monotonic activation functions in convolutional neural networks", cited in lpflu.txt)
and LPFLU (lpflu.txt eq. 8), the leaky PFLU whose slope the module samples and averages.
"""

from __future__ import annotations

import torch

from ._precision import as_compute, check_floating, compute_dtype

# For |x| >= 1e8, x / sqrt(1 + x^2) rounds to exactly 1 in float64 (and float32): clamping |x| there
# in the gate's x >= 0 branch changes no value, while it keeps that branch's backward from
# multiplying a large upstream gradient (x dL/dout) by a large |x| (inf, then NaN).
_GATE_SATURATION = 1e8


def _pflu_gate(x: torch.Tensor) -> torch.Tensor:
    """g(x) = (1 + x / sqrt(1 + x^2)) / 2, so that PFLU(x) = x g(x), without cancellation or overflow.

    For x >= 0, g = (1 + t) / 2 with t = |x| / hypot(x, 1), |x| clamped at 1e8 where t is already 1.
    For x < 0, with r = 1 / hypot(x, 1), 1 - t = (1 - t^2) / (1 + t) = r^2 / (1 + t), so
    g = r^2 / (2 (1 + t)): nothing squares x or divides by a number that can overflow. Neither branch
    (nor either gradient that torch.where evaluates) turns into inf or NaN for any finite x. +-inf are
    clamped to the largest finite number first, so the gate takes its limits (1 at +inf, 0 at -inf)
    and PFLU(+inf) = +inf.
    """
    one = torch.ones((), dtype=x.dtype, device=x.device)
    big = torch.finfo(x.dtype).max
    xf = x.clamp(-big, big)
    r = torch.reciprocal(torch.hypot(xf, one))
    negative = 0.5 * r * r / (1.0 + xf.abs() * r)
    x_pos = xf.abs().clamp_max(_GATE_SATURATION)
    positive = 0.5 * (1.0 + x_pos / torch.hypot(x_pos, one))
    return torch.where(x >= 0, positive, negative)


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
