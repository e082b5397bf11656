"""Memory-lean autograd for the elementwise activations: save only x, differentiate analytically.

Naive autograd of SMU keeps four input-sized tensors per call (PFLU seven); these Functions keep
the input alone (plus scalar parameters) and compute every gradient from it with the
``*_backward`` formulas of :mod:`actplug.functional`, on the fast path of the input's device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import functional as F
from ..functional._precision import check_floating, compute_dtype
from . import compiled, dispatch, layout, pool
from .fused_math import gish as fused_gish
from .fused_math import pflu as fused_pflu
from .fused_math import smu as fused_smu
from .fused_math import srelu as fused_srelu


@dataclass(frozen=True)
class ElementwiseOp:
    """One activation's math in a uniform shape for the kernels.

    ``forward(x, *params, *consts)`` and ``backward(x, grad, *params, *consts, *needs)``, where
    params are tensors (that may need gradients), consts are Python floats, and backward returns
    ``(dx, *param_grads)`` with None for a gradient not needed. ``fused_forward`` and
    ``fused_backward``, where given, are the same functions written for Inductor's fused loops
    (:mod:`actplug.kernels.fused_math`), taking the parameters as ``fused_scalars(*params, *consts)``
    maps them where that is given (scalar work done once per call, not once per vector inside the
    loop); the compiled CPU path runs them, writing the output (and x's gradient, where no
    parameter needs one) into a buffer from :mod:`.pool`, and the plain math if compiling fails.
    """

    name: str
    forward: Callable[..., torch.Tensor]
    backward: Callable[..., tuple[torch.Tensor | None, ...]]
    fused_forward: Callable[..., torch.Tensor] | None = None
    fused_backward: Callable[..., tuple[torch.Tensor | None, ...]] | None = None
    fused_scalars: Callable[..., tuple[torch.Tensor, ...]] | None = None

    def _fused_params(self, params: tuple[torch.Tensor, ...], consts: tuple) -> tuple[torch.Tensor, ...]:
        return self.fused_scalars(*params, *consts) if self.fused_scalars else params

    def compiled_forward(self, x: torch.Tensor, params: tuple[torch.Tensor, ...], consts: tuple) -> torch.Tensor:
        """The forward on the compiled CPU path."""
        return compiled.run(
            self.fused_forward or self.forward,
            x,
            *self._fused_params(params, consts),
            *consts,
            plain=lambda: self.forward(x, *params, *consts),
            out=pool.empty(x.shape, x.dtype, x.device),
        )

    def compiled_backward(
        self, x: torch.Tensor, grad: torch.Tensor, params: tuple[torch.Tensor, ...], consts: tuple, needs: tuple
    ) -> tuple[torch.Tensor | None, ...]:
        """``(dx, *param_grads)`` on the compiled CPU path."""
        return compiled.run(
            self.fused_backward or self.backward,
            x,
            grad,
            *self._fused_params(params, consts),
            *consts,
            *needs,
            plain=lambda: self.backward(x, grad, *params, *consts, *needs),
            # A kernel that also sums a parameter's gradient keeps Inductor's own output: given a
            # buffer, Inductor schedules the store after the sum and splits the loop in two (a
            # second pass over x and grad: SMU-1's backward 8.4 -> 13.7 ms on memory it reuses)
            out=None if any(needs) else pool.empty(x.shape, x.dtype, x.device),
        )


def _smu_forward(x, mu, alpha):
    return F.smu(x, alpha, mu)


def _smu_backward(x, grad, mu, alpha, need_mu):
    return F.smu_backward(x, grad, alpha, mu, need_mu)


def _smu_fused_scalars(mu, alpha):
    return (fused_smu.smu_slope(mu, alpha),)


def _smu_fused_forward(x, k, alpha):
    return fused_smu.smu(x, k, alpha)


def _smu_fused_backward(x, grad, k, alpha, need_mu):
    return fused_smu.smu_backward(x, grad, k, alpha, need_mu)


def _smu1_forward(x, mu, alpha):
    return F.smu1(x, alpha, mu)


def _smu1_backward(x, grad, mu, alpha, need_mu):
    return F.smu1_backward(x, grad, alpha, mu, need_mu)


def _smu1_fused_forward(x, mu, alpha):
    return fused_smu.smu1(x, alpha, mu)


def _smu1_fused_backward(x, grad, mu, alpha, need_mu):
    return fused_smu.smu1_backward(x, grad, alpha, mu, need_mu)


def _pflu_backward(x, grad):
    return (F.pflu_backward(x, grad),)


def _pflu_fused_backward(x, grad):
    return (fused_pflu.pflu_backward(x, grad),)


def _fpflu_backward(x, grad):
    return (F.fpflu_backward(x, grad),)


def _fpflu_fused_backward(x, grad):
    return (fused_pflu.fpflu_backward(x, grad),)


def _gish_backward(x, grad):
    return (F.gish_backward(x, grad),)


def _gish_fused_backward(x, grad):
    return (fused_gish.gish_backward(x, grad),)


OPS = {
    op.name: op
    for op in (
        ElementwiseOp("smu", _smu_forward, _smu_backward, _smu_fused_forward, _smu_fused_backward, _smu_fused_scalars),
        ElementwiseOp("smu1", _smu1_forward, _smu1_backward, _smu1_fused_forward, _smu1_fused_backward),
        ElementwiseOp("pflu", F.pflu, _pflu_backward, fused_pflu.pflu, _pflu_fused_backward),
        ElementwiseOp("lpflu", F.lpflu, F.lpflu_backward, fused_pflu.lpflu, fused_pflu.lpflu_backward),
        ElementwiseOp("fpflu", F.fpflu, _fpflu_backward, F.fpflu, _fpflu_fused_backward),
        ElementwiseOp("gish", F.gish, _gish_backward, fused_gish.gish, _gish_fused_backward),
        ElementwiseOp("srelu", F.srelu, F.srelu_backward, fused_srelu.srelu, fused_srelu.srelu_backward),
    )
}


def _kernel_scalars(params: tuple[torch.Tensor, ...], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """The one-element parameters as detached 0-d tensors of the compute dtype (no op where they are)."""
    scalars = []
    for p in params:
        p = p.detach()
        if p.ndim:
            p = p.reshape(())
        scalars.append(p if p.dtype == dtype else p.to(dtype))
    return tuple(scalars)


def _forward(
    op: ElementwiseOp, path: str, x: torch.Tensor, params: tuple[torch.Tensor, ...], consts: tuple
) -> torch.Tensor:
    if path == "eager":
        return op.forward(x, *params, *consts)
    flat, strides = layout.flatten(x)
    scalars = _kernel_scalars(params, compute_dtype(x))
    if path == "compiled":
        y = op.compiled_forward(flat, scalars, consts)
    else:
        from .triton_kernels import elementwise_forward

        y = elementwise_forward(op.name, flat, scalars, consts)
    return layout.unflatten(y, x.shape, strides)


def _backward(
    op: ElementwiseOp,
    path: str,
    x: torch.Tensor,
    grad: torch.Tensor,
    params: tuple[torch.Tensor, ...],
    consts: tuple,
    needs: tuple[bool, ...],
) -> tuple[torch.Tensor | None, ...]:
    need_params = tuple(needs[1:])
    if path == "eager":
        dx, *param_grads = op.backward(x, grad, *params, *consts, *need_params)
    else:
        flat, strides = layout.flatten(x)
        grad_flat = layout.flatten_like(grad, x.shape, strides)
        scalars = _kernel_scalars(params, compute_dtype(x))
        if path == "compiled":
            dx, *param_grads = op.compiled_backward(flat, grad_flat, scalars, consts, need_params)
        else:
            from .triton_kernels import elementwise_backward

            dx, *param_grads = elementwise_backward(op.name, flat, grad_flat, scalars, consts, need_params)
        dx = layout.unflatten(dx, x.shape, strides)
    shaped = tuple(
        g.to(p.dtype).reshape(p.shape) if g is not None else None for g, p in zip(param_grads, params, strict=True)
    )
    return (dx if needs[0] else None, *shaped)


class _ElementwiseFunction(torch.autograd.Function):
    """Saves x and the scalar parameters; backward runs the analytic formulas on the same path."""

    @staticmethod
    def forward(ctx, op, consts, path, x, *params):
        ctx.op, ctx.consts, ctx.path = op, consts, path
        ctx.save_for_backward(x, *params)
        return _forward(op, path, x, params, consts)

    @staticmethod
    def backward(ctx, grad):
        x, *params = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[3:])
        op, consts = ctx.op, ctx.consts
        if torch.is_grad_enabled():  # create_graph=True: higher-order gradients of the plain math
            grads = dispatch.differentiate_plain(lambda: op.forward(x, *params, *consts), (x, *params), needs, grad)
        else:
            grads = _backward(op, ctx.path, x, grad, tuple(params), consts, needs)
        return (None, None, None, *grads)


def apply(
    name: str, x: torch.Tensor, params: tuple[torch.Tensor | float, ...] = (), consts: tuple = ()
) -> torch.Tensor:
    """Run activation ``name`` on ``x`` with its memory-lean autograd and the device's fast path."""
    check_floating(x, name)
    op = OPS[name]
    tensors = tuple(dispatch.scalar(p, compute_dtype(x), x.device) for p in params)
    if dispatch.plain_only():
        return op.forward(x, *tensors, *consts)
    path = dispatch.fast_path(x, tensors)
    if not dispatch.needs_graph(x, *tensors):
        return _forward(op, path, x, tensors, consts)
    return _ElementwiseFunction.apply(op, consts, path, x, *tensors)
