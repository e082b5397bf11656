"""The power-function family: PFLU and FPFLU (Zhu et al. 2021, "PFLU and FPFLU: two novel
non-monotonic activation functions in convolutional neural networks", cited in lpflu.txt)
and LPFLU (lpflu.txt eq. 8), the leaky PFLU whose slope the module samples and averages.
"""

from __future__ import annotations

import torch

from ._precision import as_compute, check_floating, compute_dtype


def _pflu_gate(x: torch.Tensor) -> torch.Tensor:
    """g(x) = (1 + x / sqrt(1 + x^2)) / 2, so that PFLU(x) = x g(x), without cancellation.

    For x < 0, 1 + t = (1 - t^2) / (1 - t) = 1 / ((1 + x^2)(1 + |t|)) with t = x / sqrt(1 + x^2);
    both branches only ever divide by numbers >= 1, so neither branch (and neither gradient
    that torch.where evaluates) can overflow for any finite x.
    """
    s = torch.hypot(x, torch.ones((), dtype=x.dtype, device=x.device))
    t_abs = x.abs() / s
    positive = 0.5 * (1.0 + t_abs)
    negative = 0.5 / ((1.0 + x * x) * (1.0 + t_abs))
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
