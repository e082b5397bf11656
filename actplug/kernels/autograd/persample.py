"""Memory-lean autograd for ASH: save x and the per-sample statistics, two passes each way.

Forward: per-sample mean and std, then the elementwise gate. Backward: per-sample sums of the
gradient terms, then the elementwise dx (:func:`actplug.activations.ash.ash_backward`), on the CPU
as compiled kernels (:mod:`actplug.kernels.cpu.ash`) and on CUDA as Triton's
(:mod:`actplug.kernels.cuda.ash`). Naive autograd keeps five input-sized tensors per call; this keeps
x, two numbers per sample, z and alpha.
"""

from __future__ import annotations

import numbers

import torch

from ...activations import ash as math
from ...activations._precision import check_floating, compute_dtype
from ...activations.ash import Dims
from .. import dispatch, layout
from ..cpu import ash as cpu_ash
from ..cuda import ash as cuda_ash
from ..scalars import scalar


def _plain(x, dims, z, alpha, eps):
    """ASH with the plain math over ``dims``; returns y and the statistics."""
    mean, std = math.ash_stats(x, dims, eps)
    return math.ash_apply(x, mean, std, z, alpha), mean, std


def _rows(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:
    x2d, perm = layout.rows(x, dims)
    return x2d.contiguous(), perm


def _keepdim(stat: torch.Tensor, x: torch.Tensor, dims: tuple[int, ...], perm: tuple[int, ...]) -> torch.Tensor:
    """A (samples, 1) statistic of the row path in :func:`actplug.activations.ash.ash_stats`' keepdim shape."""
    shape = [1 if d in dims else x.shape[d] for d in range(x.ndim)]
    return layout.unrows(stat, torch.empty(shape, device="meta"), perm)


def _as_rows(stat: torch.Tensor, perm: tuple[int, ...]) -> torch.Tensor:
    """A keepdim statistic as the (samples, 1) column the row kernels take, contiguous."""
    return stat.permute(perm).reshape(-1, 1).contiguous()


def _forward(path, x, dims, z, alpha, eps):
    if path == "eager":
        return _plain(x, dims, z, alpha, eps)
    x2d, perm = _rows(x, dims)
    dtype = compute_dtype(x)
    z0, a0 = scalar(z, dtype, x.device), scalar(alpha, dtype, x.device)
    if path == "compiled":
        found = cpu_ash.forward(x2d, z0, a0, scalar(eps, dtype, x.device)) if min(x2d.shape) >= 2 else None
        if found is None:
            return _plain(x, dims, z, alpha, eps)
        y2d, mean, std = found
    else:
        y2d, mean, std = cuda_ash.forward(x2d, z0, a0, eps)
    y = layout.unrows(y2d, x, perm)
    if not layout.same_layout(y, x) and layout.is_dense(x.shape, x.stride()):
        # rows() copied x (its reduced dims are not the innermost in memory): give the result x's
        # layout all the same, as the eager path and PyTorch's elementwise ops do
        y = torch.empty_like(x).copy_(y)
    # saved in the eager path's shape, so that either path's backward can take them
    return y, _keepdim(mean, x, dims, perm), _keepdim(std, x, dims, perm)


def _backward(path, x, grad, mean, std, z, alpha, dims, needs):
    need_x, need_z, need_alpha = needs
    found = None
    if path != "eager":
        x2d, perm = _rows(x, dims)
        grad2d = grad.permute(perm).reshape(x2d.shape).contiguous()
        dtype = compute_dtype(x)
        z0, a0 = scalar(z, dtype, x.device), scalar(alpha, dtype, x.device)
        backend = cpu_ash if path == "compiled" else cuda_ash
        if path != "compiled" or min(x2d.shape) >= 2:
            rows_mean, rows_std = _as_rows(mean, perm), _as_rows(std, perm)
            found = backend.backward(x2d, grad2d, rows_mean, rows_std, z0, a0, need_z, need_alpha)
        if found is not None:
            dx2d, dz, da = found
            dx = layout.unrows(dx2d, x, perm)
    if found is None:
        dx, dz, da = math.ash_backward(x, grad, mean, std, z, alpha, dims, need_z, need_alpha)
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
            grads = dispatch.differentiate_plain(lambda: math.ash(x, z, alpha, dims, eps), (x, z, alpha), needs, grad)
        else:
            grads = _backward(ctx.path, x, grad, mean, std, z, alpha, dims, needs)
        return (None, None, None, *grads)


def _parameter(name: str, value: object, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"ash({name}=...) expects a real number or a floating-point tensor, got {value.dtype}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"ash({name}=...) expects a real number or a floating-point tensor, got {type(value).__name__} {value!r}"
        )
    return torch.full((), float(value), dtype=dtype, device=device)


def ash(
    x: torch.Tensor,
    z: torch.Tensor | float = 0.0,
    alpha: torch.Tensor | float = 1.0,
    dim: Dims = None,
    eps: float = 0.0,
) -> torch.Tensor:
    """ASH (ash.txt eq. 10): ``x sigmoid(2 alpha (x - mu_X - z sigma_X))``, statistics per sample.

    ``mu_X`` and ``sigma_X`` (population std) are over ``dim`` (see
    :func:`actplug.activations.ash.ash_dims`); gradients flow through them. Memory-lean: autograd
    keeps x and two numbers per sample; the fast path of x's device where it is ready.
    """
    check_floating(x, "ash")
    dims = math.ash_dims(x.ndim, dim)
    dtype = compute_dtype(x)
    z_t = _parameter("z", z, dtype, x.device)
    a_t = _parameter("alpha", alpha, dtype, x.device)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"ash(eps=...) expects a real number, got {type(eps).__name__} {eps!r}")
    if dispatch.plain_only() or not dims or x.numel() == 0:
        return math.ash(x, z_t, a_t, dims, eps)
    path = dispatch.fast_path(x, (z_t, a_t), triton=True)
    if path == "compiled" and x.device.type != "cpu":  # no Triton on this CUDA machine: no fused ASH either
        path = "eager"
    if not dispatch.needs_graph(x, z_t, a_t):
        return _forward(path, x, dims, z_t, a_t, eps)[0]
    return _AshFunction.apply(dims, eps, path, x, z_t, a_t)
