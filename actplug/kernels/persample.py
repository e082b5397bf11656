"""Memory-lean autograd for ASH: save x and the per-sample statistics, two passes each way.

Forward: per-sample mean and std, then the elementwise gate. Backward: per-sample sums of the
gradient terms, then the elementwise dx (:func:`actplug.functional.ash_backward`). On the compiled
CPU path (:mod:`actplug.kernels.fused_math.ash`) the backward's passes are two kernels. Naive
autograd keeps five input-sized tensors per call; this keeps x, two numbers per sample, z and alpha.
"""

from __future__ import annotations

import torch

from .. import functional as F
from ..functional._precision import check_floating, compute_dtype
from ..functional.ash import Dims
from . import compiled, dispatch, layout, pool
from .fused_math import ash as fused_ash


def _plain(x, dims, z, alpha, eps):
    """ASH with the plain math over ``dims``; returns y and the statistics."""
    mean, std = F.ash_stats(x, dims, eps)
    return F.ash_apply(x, mean, std, z, alpha), mean, std


def _forward(path, x, dims, z, alpha, eps):
    if path == "eager":
        return _plain(x, dims, z, alpha, eps)
    x2d, perm = layout.rows(x, dims)
    dtype = compute_dtype(x)
    z0, a0 = z.detach().reshape(()).to(dtype), alpha.detach().reshape(()).to(dtype)
    if path == "compiled":
        plain = lambda: _plain(x2d, 1, z0, a0, eps)  # noqa: E731
        out = pool.empty(x2d.shape, x.dtype, x.device)
        y2d, mean, std = compiled.run(fused_ash.rows_forward, x2d, z0, a0, eps, plain=plain, out=out)
    else:
        from .triton_kernels import ash_forward

        y2d, mean, std = ash_forward(x2d.contiguous(), z0, a0, eps)
    y = layout.unrows(y2d, x, perm)
    if not layout.same_layout(y, x) and layout.is_dense(x.shape, x.stride()):
        # rows() copied x (its reduced dims are not the innermost in memory): give the result x's
        # layout all the same, as the eager path and PyTorch's elementwise ops do
        y = torch.empty_like(x).copy_(y)
    return y, mean, std


def _backward(path, x, grad, mean, std, z, alpha, dims, needs):
    need_x, need_z, need_alpha = needs
    if path == "eager":
        dx, dz, da = F.ash_backward(x, grad, mean, std, z, alpha, dims, need_z, need_alpha)
    else:
        x2d, perm = layout.rows(x, dims)
        grad2d = grad.permute(perm).reshape(x2d.shape)
        dtype = compute_dtype(x)
        z0, a0 = z.detach().reshape(()).to(dtype), alpha.detach().reshape(()).to(dtype)
        if path == "compiled":
            args = (x2d, grad2d, mean, std, z0, a0)
            d_mean, d_std, dz, da = compiled.run(
                fused_ash.rows_backward_sums,
                *args,
                need_z,
                need_alpha,
                plain=lambda: F.ash_backward_sums(*args, 1, need_z, need_alpha),
            )
            dx2d = compiled.run(
                fused_ash.rows_backward_dx,
                x2d,
                grad2d,
                mean,
                std,
                d_mean,
                d_std,
                z0,
                a0,
                plain=lambda: F.ash_backward_dx(x2d, grad2d, mean, std, d_mean, d_std, z0, a0, 1),
                out=pool.empty(x2d.shape, x.dtype, x.device),
            )
        else:
            from .triton_kernels import ash_backward

            dx2d, dz, da = ash_backward(x2d.contiguous(), grad2d.contiguous(), mean, std, z0, a0, (need_z, need_alpha))
        dx = layout.unrows(dx2d, x, perm)
    dz = dz.to(z.dtype).reshape(z.shape) if dz is not None else None
    da = da.to(alpha.dtype).reshape(alpha.shape) if da is not None else None
    return (dx if need_x else None, dz, da)


class _AshFunction(torch.autograd.Function):
    """Saves x, the per-sample mean and std, z and alpha."""

    @staticmethod
    def forward(ctx, dims, eps, path, x, z, alpha):
        y, mean, std = _forward(path, x, dims, z, alpha, eps)
        ctx.dims, ctx.eps, ctx.path = dims, eps, path
        ctx.save_for_backward(x, mean, std, z, alpha)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, mean, std, z, alpha = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[3:])
        dims, eps = ctx.dims, ctx.eps
        if torch.is_grad_enabled():  # create_graph=True: higher-order gradients of the plain math
            grads = dispatch.differentiate_plain(lambda: F.ash(x, z, alpha, dims, eps), (x, z, alpha), needs, grad)
        else:
            grads = _backward(ctx.path, x, grad, mean, std, z, alpha, dims, needs)
        return (None, None, None, *grads)


def ash(
    x: torch.Tensor,
    z: torch.Tensor | float = 0.0,
    alpha: torch.Tensor | float = 1.0,
    dim: Dims = None,
    eps: float = 0.0,
) -> torch.Tensor:
    """ASH (ash.txt eq. 10) with memory-lean autograd; the same values as :func:`actplug.functional.ash`."""
    check_floating(x, "ash")
    dims = F.ash_dims(x.ndim, dim)
    dtype = compute_dtype(x)
    z_t = dispatch.scalar(z, dtype, x.device)
    a_t = dispatch.scalar(alpha, dtype, x.device)
    if dispatch.plain_only() or not dims or x.numel() == 0:
        return F.ash(x, z_t, a_t, dims, eps)
    path = dispatch.fast_path(x, (z_t, a_t))
    if not dispatch.needs_graph(x, z_t, a_t):
        return _forward(path, x, dims, z_t, a_t, eps)[0]
    return _AshFunction.apply(dims, eps, path, x, z_t, a_t)
