"""Gish (Kaytan et al. 2023, "Gish: a novel activation function for image classification",
cited in lpflu.txt)."""

from __future__ import annotations

import torch

from ._precision import check_floating, compute_dtype


def gish(x: torch.Tensor) -> torch.Tensor:
    """Gish: ``x ln(2 - exp(-exp(x)))``.

    Written as ``x log1p(-expm1(-exp(x)))``: the same value, but for very negative x the
    argument of the log is 1 + e^x, which the naive form rounds to 1 (giving 0 instead of x e^x).
    """
    check_floating(x, "gish")
    xc = x.to(compute_dtype(x))
    return (xc * torch.log1p(-torch.expm1(-torch.exp(xc)))).to(x.dtype)
