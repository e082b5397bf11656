"""Smooth Rectified Linear Unit (srelu.txt, section III.A).

Not the S-shaped ReLU of Jin et al. 2015 (keras-contrib's ``SReLU``), which shares the name.
"""

from __future__ import annotations

import torch

from ._precision import as_compute, check_floating, compute_dtype


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
