"""Smooth Rectified Linear Unit (srelu.txt, section III.A).

Not the S-shaped ReLU of Jin et al. 2015 (keras-contrib's ``SReLU``), which shares the name.
"""

from __future__ import annotations

import torch

from ._precision import as_compute, check_floating, compute_dtype, reduce_to


def srelu(x: torch.Tensor, alpha: torch.Tensor | float = 1.0, beta: torch.Tensor | float = 0.1) -> torch.Tensor:
    """SReLU (srelu.txt III.A): ``alpha x`` for x > 0, ``beta (exp(x) - 1)`` for x <= 0.

    alpha = beta = 1 is exactly ELU. The derivative is alpha on the right of 0 and beta on the
    left, so the function is differentiable at 0 only when alpha == beta (the paper's "fully
    differentiable" claim holds only then); autograd uses beta at exactly 0.
    """
    check_floating(x, "srelu")
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    a = as_compute(alpha, dtype, x.device)
    b = as_compute(beta, dtype, x.device)
    # expm1 of x where x <= 0 (of 0 elsewhere): the unused branch never overflows, so its gradient
    # never turns into NaN. (Not clamp_max(0): its gradient is 0 at x = 0 itself, which would make
    # the slope at 0 zero instead of beta.)
    left = torch.where(xc > 0, 0.0, xc)
    return torch.where(xc > 0, a * xc, b * torch.expm1(left)).to(x.dtype)


def srelu_backward(
    x: torch.Tensor,
    grad: torch.Tensor,
    alpha: torch.Tensor | float = 1.0,
    beta: torch.Tensor | float = 0.1,
    need_alpha: bool = False,
    need_beta: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Analytic gradients of :func:`srelu`: ``dy/dx`` is alpha for x > 0 and ``beta e^x`` for
    x <= 0; ``dy/dalpha = x [x > 0]``, ``dy/dbeta = (e^x - 1) [x <= 0]``, summed to their shapes."""
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    gc = grad.to(dtype)
    a = as_compute(alpha, dtype, x.device)
    b = as_compute(beta, dtype, x.device)
    right = xc > 0
    left = torch.where(right, 0.0, xc)
    dx = (gc * torch.where(right, a, b * torch.exp(left))).to(x.dtype)
    d_alpha = reduce_to(gc * torch.where(right, xc, 0.0), a) if need_alpha else None
    d_beta = reduce_to(gc * torch.where(right, 0.0, torch.expm1(left)), b) if need_beta else None
    return dx, d_alpha, d_beta
