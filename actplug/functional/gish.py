"""Gish (Kaytan et al. 2023, "Gish: a novel activation function for image classification",
cited in lpflu.txt)."""

from __future__ import annotations

import torch

from ._precision import check_floating, compute_dtype

# exp(-exp(x)) == 0 exactly in float64 (and float32) once exp(x) > 745, i.e. x > 6.62; clamping
# exp's argument at 20 changes no value, while it keeps exp(x) finite so that the backward never
# computes 0 * inf (NaN) for large x.
_GISH_SATURATION = 20.0


def gish(x: torch.Tensor) -> torch.Tensor:
    """Gish: ``x ln(2 - exp(-exp(x)))``.

    Written as ``x log1p(-expm1(-exp(x)))``: the same value, but for very negative x the
    argument of the log is 1 + e^x, which the naive form rounds to 1 (giving 0 instead of x e^x).
    exp's argument is clamped at 20, where the log term is already exactly ln 2: the values are
    unchanged and the gradient stays finite (ln 2) for large x instead of 0 * inf = NaN.
    """
    check_floating(x, "gish")
    xc = x.to(compute_dtype(x))
    inner = torch.exp(xc.clamp_max(_GISH_SATURATION))
    return (xc * torch.log1p(-torch.expm1(-inner))).to(x.dtype)
