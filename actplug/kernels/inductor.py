"""An elementwise declaration's math as Inductor kernels, on any device: what the compiled paths run.

Eager PyTorch runs a formula like SMU's as five or six passes over memory; Inductor fuses it into
one loop that moves the bytes ``torch.relu`` moves (C++ on the CPU, Triton on CUDA). The forward
kernel runs the given form of the forward; the backward kernel the given form of the analytic
backward, or for a formula without one the vjp of its forward. Parameters enter as 0-d tensors
(one kernel serves every value) and sizes are dynamic (one kernel serves every size). Kernels
compile in the background (:mod:`.compiler`): until one is ready, :func:`forward` and
:func:`backward` return None and the caller runs the eager math.

With ``block``, flat inputs whose length is a multiple of it run as a (rows, block) matrix with only
the row count symbolic: the inner loop then has a fixed trip count and no tail, and its reductions
a fixed chunking: faster than a fully dynamic 1-D loop (docs/bench-cpu.json measures the kernels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..activations._precision import compute_dtype
from . import layout
from .compiler import MISS, Job, compiler
from .scalars import scalars

if TYPE_CHECKING:
    from .autograd.elementwise import Elementwise, Grads, Value


@dataclass(frozen=True)
class Form:
    """One pass of a declaration as a kernel runs it: ``fn`` (None for the vjp of ``forward``) and the
    scalar preparation it takes (see :class:`actplug.declaration.Fused`)."""

    fn: Callable[..., Any] | None
    prepare: Callable[..., dict[str, torch.Tensor]] | None = None


def forward(op: Elementwise, x: torch.Tensor, values: Sequence[Value], form: Form, block: int | None) -> Any:
    """y from the compiled kernel of ``form``, or None if it is not ready."""
    flat, strides = layout.flatten(x)
    blocked = _blocked(flat.numel(), block)
    args = _scalar_args(op, form, values, x)
    key = (op, form, "forward", x.dtype, block if blocked else None)
    label = f"{op.name}_forward_{_dtype_name(x.dtype)}{'_blocked' if blocked else ''}"
    call_args = (_arg(flat, block if blocked else None), *args.values())
    kernel = compiler.get(key, lambda: _job(label, _forward_kernel(form.fn, tuple(args)), call_args))
    result = compiler.run(key, kernel, call_args) if kernel is not None else MISS
    if result is MISS:
        return None
    return layout.unflatten(result[0].view(-1), x.shape, strides)


def backward(
    op: Elementwise,
    x: torch.Tensor,
    grad: torch.Tensor,
    values: Sequence[Value],
    needs: tuple[str, ...],
    form: Form,
    block: int | None,
) -> tuple[torch.Tensor, Grads] | None:
    """``(dL/dx, parameter gradients)`` from the compiled kernel of ``form``, or None if it is not ready."""
    flat, strides = layout.flatten(x)
    grad_flat = layout.flatten_like(grad, x.shape, strides)
    blocked = _blocked(flat.numel(), block)
    args = _scalar_args(op, form, values, x)
    key = (op, form, "backward", needs, x.dtype, grad.dtype, block if blocked else None)
    label = f"{op.name}_backward_{_dtype_name(x.dtype)}{''.join('_' + n for n in needs)}"
    label += "_blocked" if blocked else ""
    rows = block if blocked else None
    call_args = (_arg(flat, rows), _arg(grad_flat, rows), *args.values())
    kernel = compiler.get(key, lambda: _job(label, _backward_kernel(op, form.fn, tuple(args), needs), call_args))
    result = compiler.run(key, kernel, call_args) if kernel is not None else MISS
    if result is MISS:
        return None
    dx, *grads = result
    return layout.unflatten(dx.view(-1), x.shape, strides), dict(zip(needs, grads, strict=True))


# --------------------------------------------------------------------------------------------------


def _blocked(n: int, block: int | None) -> bool:
    return block is not None and n % block == 0 and n >= 2 * block


def _arg(flat: torch.Tensor, block: int | None) -> torch.Tensor:
    """The kernel's view of a flat tensor, detached."""
    flat = flat.detach()
    return flat.view(-1, block) if block is not None else flat


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _scalar_args(op: Elementwise, form: Form, values: Sequence[Value], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The parameters as 0-d tensors of the compute dtype, prepared as ``form`` takes them."""
    named = dict(zip(op.names, scalars(values, compute_dtype(x), x.device), strict=True))
    return form.prepare(**named) if form.prepare is not None else named


def _forward_kernel(fn: Callable[..., Any] | None, keys: tuple[str, ...]) -> Callable[..., tuple[torch.Tensor]]:
    def kernel(x: torch.Tensor, *scalar: torch.Tensor) -> tuple[torch.Tensor]:
        return (fn(x, **dict(zip(keys, scalar, strict=True))),)

    return kernel


def _backward_kernel(
    op: Elementwise, fn: Callable[..., Any] | None, keys: tuple[str, ...], needs: tuple[str, ...]
) -> Callable[..., tuple[torch.Tensor, ...]]:
    """``(dx, *gradients of needs)``: the form's backward, or the vjp of the plain forward."""
    from .autograd.elementwise import split_grads

    if fn is not None:

        def kernel(x: torch.Tensor, grad: torch.Tensor, *scalar: torch.Tensor) -> tuple[torch.Tensor, ...]:
            dx, grads = split_grads(fn(x, grad, needs=needs, **dict(zip(keys, scalar, strict=True))), op.name)
            return (dx, *(grads[n] for n in needs))

        return kernel
    plain = op.declaration.forward

    def vjp_kernel(x: torch.Tensor, grad: torch.Tensor, *scalar: torch.Tensor) -> tuple[torch.Tensor, ...]:
        def f(x_: torch.Tensor, *scalar_: torch.Tensor) -> torch.Tensor:
            return plain(x_, **dict(zip(keys, scalar_, strict=True)))

        _, pull = torch.func.vjp(f, x, *scalar)
        found = pull(grad)
        return (found[0], *(g for k, g in zip(keys, found[1:], strict=True) if k in needs))

    return vjp_kernel


def _job(label: str, fn: Callable[..., Any], args: tuple[torch.Tensor, ...]) -> Job:
    """Compile ``fn`` for calls like ``args``: the first dimension of every tensor varies, all one size."""
    return Job.like(fn, label, args, [(i, 0, 0) for i, a in enumerate(args) if a.ndim > 0])
