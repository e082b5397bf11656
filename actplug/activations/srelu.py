"""Smooth Rectified Linear Unit (srelu.txt, section III.A): the math and the declaration.

Not the S-shaped ReLU of Jin et al. 2015 (keras-contrib's ``SReLU``), which shares the name.
"""

from __future__ import annotations

import math

import torch

from ..declaration import Activation, Fused, Param
from . import _rational as rational
from ._precision import as_compute, check_floating, compute_dtype, reduce_to

# --------------------------------------------------------------------------------------------------
# The plain math.
# --------------------------------------------------------------------------------------------------


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
    *,
    needs: tuple[str, ...] = (),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Analytic gradients of :func:`srelu`: ``dy/dx`` is alpha for x > 0 and ``beta e^x`` for
    x <= 0; ``dy/dalpha = x [x > 0]``, ``dy/dbeta = (e^x - 1) [x <= 0]``, summed to their shapes."""
    dtype = compute_dtype(x)
    xc, gc = x.to(dtype), grad.to(dtype)
    a = as_compute(alpha, dtype, x.device)
    b = as_compute(beta, dtype, x.device)
    right = xc > 0
    left = torch.where(right, 0.0, xc)
    dx = (gc * torch.where(right, a, b * torch.exp(left))).to(x.dtype)
    grads = {}
    if "alpha" in needs:
        grads["alpha"] = reduce_to(gc * torch.where(right, xc, 0.0), a)
    if "beta" in needs:
        grads["beta"] = reduce_to(gc * torch.where(right, 0.0, torch.expm1(left)), b)
    return dx, grads


# --------------------------------------------------------------------------------------------------
# The fused CPU forms: expm1 from a rational function, not a library call.
# --------------------------------------------------------------------------------------------------

# expm1(v) for v <= 0 next to exp(v) (SReLU's backward needs both): the Taylor polynomial up to
# v^7/7! where v > -1/2 (exp(v) - 1 would cancel there), exp(v) - 1 further left (no cancellation:
# |exp(v) - 1| > 0.39). Both sides are within one float32 ulp of expm1.
_EXPM1_TAYLOR_CUTOFF = 0.5
_EXPM1_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(2, 9))


def srelu_fused(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """:func:`srelu` with expm1 from a rational function (no exp call)."""
    xc = x.to(compute_dtype(x))
    right = xc > 0
    left = rational.expm1_nonpositive(torch.where(right, 0.0, xc))
    return torch.where(right, alpha * xc, beta * left).to(x.dtype)


def _expm1_nonpositive(v: torch.Tensor) -> torch.Tensor:
    """``expm1(v)`` for v <= 0 in float32 from one ``exp`` and a short polynomial."""
    taylor = v + v * v * rational.horner(_EXPM1_TAYLOR, v)
    return torch.where(v > -_EXPM1_TAYLOR_CUTOFF, taylor, torch.exp(v) - 1.0)


def srelu_fused_backward(
    x: torch.Tensor, grad: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, *, needs: tuple[str, ...] = ()
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`srelu_backward` with expm1 from the exp that dy/dx needs anyway."""
    dtype = compute_dtype(x)
    xc, gc = x.to(dtype), grad.to(dtype)
    right = xc > 0
    left = torch.where(right, 0.0, xc)
    dx = (gc * torch.where(right, alpha, beta * torch.exp(left))).to(x.dtype)
    grads = {}
    if "alpha" in needs:
        grads["alpha"] = (gc * torch.where(right, xc, 0.0)).sum()
    if "beta" in needs:
        grads["beta"] = (gc * torch.where(right, 0.0, _expm1_nonpositive(left))).sum()
    return dx, grads


# --------------------------------------------------------------------------------------------------
# The declaration.
# --------------------------------------------------------------------------------------------------

SRELU = Activation(
    name="srelu",
    class_name="SReLU",
    forward=srelu,
    backward=srelu_backward,
    params=(Param("alpha", 1.0, trainable=True), Param("beta", 0.1, trainable=True)),
    trainable_default=False,
    paper="Smooth rectified linear unit (srelu.txt, section III.A); not the S-shaped ReLU of Jin et al. 2015",
    formula="a x if x > 0 else b (exp(x) - 1)",
    approximates="relu",
    doc="""Smooth Rectified Linear Unit (srelu.txt III.A): ``alpha x`` if x > 0, else ``beta (e^x - 1)``.

    Defaults alpha = 1.0, beta = 0.1 (the paper: "a small positive constant"; 0.1 is the authors'
    code). alpha = beta = 1 is ELU. The derivative jumps from beta to alpha at 0 unless
    alpha == beta: the paper's "fully differentiable" holds only then. ``trainable=True`` makes
    alpha and beta Parameters, else they are buffers. Not the S-shaped ReLU (Jin et al. 2015,
    keras-contrib) that shares the name.
    """,
    cpu=Fused(forward=srelu_fused, backward=srelu_fused_backward),
    triton="srelu",
)
