"""The CUDA fast path: the hand-written Triton kernels (:mod:`.triton`) where a declaration names one,
Inductor's Triton of the plain math otherwise (a plugin's formula; :mod:`..inductor`).

The hand-written kernels also run CPU tensors under ``TRITON_INTERPRET=1`` (``cpu="triton"``), which
is how the tests check them without a GPU. ASH's kernels are in :mod:`.ash`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .. import inductor, layout
from ..scalars import scalars

if TYPE_CHECKING:
    from ..autograd.elementwise import Elementwise, Grads, Value


def forward(op: Elementwise, x: torch.Tensor, values: Sequence[Value], path: str) -> torch.Tensor | None:
    """y of elementwise ``op`` on ``path`` (``"triton"`` or ``"compiled"``), or None if not ready."""
    if path != "triton":
        return inductor.forward(op, x, values, inductor.Form(op.declaration.forward), None)
    from .triton import elementwise_forward

    flat, strides = layout.flatten(x)
    params, consts = _triton_args(op, values, x)
    return layout.unflatten(elementwise_forward(op.declaration.triton, flat, params, consts), x.shape, strides)


def backward(
    op: Elementwise,
    x: torch.Tensor,
    grad: torch.Tensor,
    values: Sequence[Value],
    needs: tuple[str, ...],
    path: str,
) -> tuple[torch.Tensor, Grads] | None:
    """``(dL/dx, parameter gradients)`` of ``op`` on ``path``, or None if not ready."""
    if path != "triton":
        form = inductor.Form(op.declaration.backward)
        return inductor.backward(op, x, grad, values, needs, form, None)
    from .triton import ACTIVATIONS, elementwise_backward

    flat, strides = layout.flatten(x)
    grad_flat = layout.flatten_like(grad, x.shape, strides)
    params, consts = _triton_args(op, values, x)
    kernel_params = ACTIVATIONS[op.declaration.triton].params
    flags = tuple(n in needs for n in kernel_params)
    dx, *found = elementwise_backward(op.declaration.triton, flat, grad_flat, params, consts, flags)
    grads = {n: g for n, g, flag in zip(kernel_params, found, flags, strict=True) if flag}
    return layout.unflatten(dx, x.shape, strides), grads


def _triton_args(
    op: Elementwise, values: Sequence[Value], x: torch.Tensor
) -> tuple[tuple[torch.Tensor, ...], tuple[float, ...]]:
    """The parameters the Triton kernel reads from memory (0-d float32 tensors) and its float constants."""
    from .triton import ACTIVATIONS

    kernel = ACTIVATIONS[op.declaration.triton]
    named = dict(zip(op.names, values, strict=True))
    params = tuple(scalars([named[n] for n in kernel.params], torch.float32, x.device))
    consts = tuple(float(named[n]) for n in kernel.consts)
    return params, consts
