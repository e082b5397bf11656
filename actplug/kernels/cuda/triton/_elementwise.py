"""One generic forward and one generic backward kernel for every elementwise activation.

The activation's math (:mod:`._math`) is a ``tl.constexpr`` argument, so each activation compiles
to its own fused kernel. Inputs load in their dtype, compute in float32 and store in the output
dtype. Parameter gradients are per-program partial sums written to a small buffer and summed by
torch afterwards: deterministic, no atomics, and skipped entirely (a constexpr flag) when no
parameter gradient is wanted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl

from . import _math as M
from ._common import (
    MAX_BLOCK,
    check_block,
    check_input,
    device_context,
    emulate_rtne,
    needs_int64,
    num_warps,
    scalar_param,
)


@dataclass(frozen=True)
class Activation:
    """One activation's device math (``@triton.jit`` functions, interpreted ones under the interpreter)
    and which of its declaration's parameters the kernels read from memory (``params``, up to two) and
    which they take as a float argument (``consts``, up to one)."""

    forward: Any
    backward: Any
    params: tuple[str, ...] = ()
    consts: tuple[str, ...] = ()

    @property
    def num_params(self) -> int:
        return len(self.params)

    @property
    def num_consts(self) -> int:
        return len(self.consts)


#: The hand-written kernels, by the name a declaration gives in its ``triton=`` field.
ACTIVATIONS: dict[str, Activation] = {
    "smu": Activation(M.smu_forward, M.smu_backward, ("mu",), ("alpha",)),
    "smu1": Activation(M.smu1_forward, M.smu1_backward, ("mu",), ("alpha",)),
    "pflu": Activation(M.pflu_forward, M.pflu_backward),
    "lpflu": Activation(M.lpflu_forward, M.lpflu_backward, ("negative_slope",)),
    "fpflu": Activation(M.fpflu_forward, M.fpflu_backward),
    "gish": Activation(M.gish_forward, M.gish_backward),
    "srelu": Activation(M.srelu_forward, M.srelu_backward, ("alpha", "beta")),
}


@triton.jit
def _offsets(n, BLOCK: tl.constexpr, INT64: tl.constexpr):
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    return pid, offs, offs < n


@triton.jit
def _load_params(p0_ptr, p1_ptr, NP: tl.constexpr):
    p0 = tl.load(p0_ptr).to(tl.float32) if NP >= 1 else 0.0
    p1 = tl.load(p1_ptr).to(tl.float32) if NP >= 2 else 0.0
    return p0, p1


@triton.jit
def _forward_kernel(
    x_ptr,
    y_ptr,
    p0_ptr,
    p1_ptr,
    c0,
    n,
    FN: tl.constexpr,
    NP: tl.constexpr,
    BLOCK: tl.constexpr,
    INT64: tl.constexpr,
    RTNE: tl.constexpr,
):
    _, offs, mask = _offsets(n, BLOCK, INT64)
    p0, p1 = _load_params(p0_ptr, p1_ptr, NP)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = FN(x, p0, p1, c0)
    tl.store(y_ptr + offs, M.to_output(y, y_ptr.dtype.element_ty, RTNE), mask=mask)


@triton.jit
def _backward_kernel(
    x_ptr,
    g_ptr,
    dx_ptr,
    part_ptr,
    p0_ptr,
    p1_ptr,
    c0,
    n,
    n_programs,
    FN: tl.constexpr,
    NP: tl.constexpr,
    NEED0: tl.constexpr,
    NEED1: tl.constexpr,
    BLOCK: tl.constexpr,
    INT64: tl.constexpr,
    RTNE: tl.constexpr,
):
    pid, offs, mask = _offsets(n, BLOCK, INT64)
    p0, p1 = _load_params(p0_ptr, p1_ptr, NP)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    dydx, dp0, dp1 = FN(x, p0, p1, c0)
    tl.store(dx_ptr + offs, M.to_output(g * dydx, dx_ptr.dtype.element_ty, RTNE), mask=mask)
    if NEED0:
        tl.store(part_ptr + pid, tl.sum(tl.where(mask, g * dp0, 0.0), axis=0))
    if NEED1:
        tl.store(part_ptr + n_programs + pid, tl.sum(tl.where(mask, g * dp1, 0.0), axis=0))


def _prepare(
    name: str, x: torch.Tensor, params: tuple[torch.Tensor, ...], consts: tuple[float, ...]
) -> tuple[Activation, list[torch.Tensor], float]:
    """Validate a call; return the activation, two parameter pointers (x stands in for unused ones)
    and the constant (0.0 if none)."""
    try:
        act = ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"no Triton kernel for activation {name!r}; known: {sorted(ACTIVATIONS)}") from None
    check_input(x, name, 1)
    if len(params) != act.num_params or len(consts) != act.num_consts:
        raise ValueError(
            f"{name}: expected {act.num_params} parameter(s) and {act.num_consts} constant(s), "
            f"got {len(params)} and {len(consts)}"
        )
    pointers = [scalar_param(p, x.device) for p in params]
    pointers += [x] * (2 - len(pointers))
    return act, pointers, float(consts[0]) if consts else 0.0


def elementwise_forward(
    name: str,
    x: torch.Tensor,
    params: tuple[torch.Tensor, ...],
    consts: tuple[float, ...],
    *,
    block_size: int | None = None,
) -> torch.Tensor:
    """Activation ``name`` of a flat tensor by a Triton kernel.

    Args:
        name: a key of :data:`ACTIVATIONS` (``"smu"``, ``"smu1"``, ``"pflu"``,
            ``"lpflu"``, ``"fpflu"``, ``"gish"``, ``"srelu"``).
        x: 1-D contiguous float32/float16/bfloat16 tensor, on CUDA (or CPU under ``TRITON_INTERPRET=1``).
        params: the scalar parameters as 0-d float32 tensors (smu/smu1 ``(mu,)``, lpflu
            ``(negative_slope,)``, srelu ``(alpha, beta)``, else ``()``); read by the kernel from memory,
            so no host synchronisation.
        consts: the Python-float constants (smu/smu1 ``(alpha,)``, else ``()``).
        block_size: elements per program (a power of two); for tests, default 4096.

    Returns:
        y with x's shape and dtype, computed in float32.
    """
    act, (p0, p1), c0 = _prepare(name, x, params, consts)
    y = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        return y
    block = check_block(block_size or MAX_BLOCK)
    grid = (triton.cdiv(n, block),)
    with device_context(x):
        _forward_kernel[grid](
            x,
            y,
            p0,
            p1,
            c0,
            n,
            FN=act.forward,
            NP=act.num_params,
            BLOCK=block,
            INT64=needs_int64(n, block),
            RTNE=emulate_rtne(),
            num_warps=num_warps(block),
        )
    return y


def elementwise_backward(
    name: str,
    x: torch.Tensor,
    grad: torch.Tensor,
    params: tuple[torch.Tensor, ...],
    consts: tuple[float, ...],
    needs: tuple[bool, ...],
    *,
    block_size: int | None = None,
) -> tuple[torch.Tensor | None, ...]:
    """Gradients of activation ``name`` from its input alone, by a Triton kernel.

    Args:
        name, x, params, consts: as for :func:`elementwise_forward`.
        grad: dL/dy, 1-D contiguous with x's numel (any of the three dtypes).
        needs: one flag per parameter: whether its gradient is wanted.
        block_size: elements per program (a power of two); for tests, default 4096.

    Returns:
        ``(dx, *param_grads)``: dx in x's dtype and shape; per parameter a float32 0-d tensor
        (the sum over all elements of grad * dy/dparam) if wanted, else None.
    """
    act, (p0, p1), c0 = _prepare(name, x, params, consts)
    check_input(grad, name, 1)
    if grad.numel() != x.numel():
        raise ValueError(f"{name}: grad has {grad.numel()} elements, x has {x.numel()}")
    if len(needs) != act.num_params:
        raise ValueError(f"{name}: expected {act.num_params} gradient flag(s), got {len(needs)}")
    need0 = bool(act.num_params >= 1 and needs[0])
    need1 = bool(act.num_params >= 2 and needs[1])
    dx = torch.empty_like(x)
    n = x.numel()
    if n == 0:
        zero = torch.zeros((), dtype=torch.float32, device=x.device)
        return (dx, *(zero.clone() if need else None for need in needs))
    block = check_block(block_size or MAX_BLOCK)
    programs = triton.cdiv(n, block)
    partials = torch.empty((2, programs), dtype=torch.float32, device=x.device) if need0 or need1 else dx
    with device_context(x):
        _backward_kernel[(programs,)](
            x,
            grad,
            dx,
            partials,
            p0,
            p1,
            c0,
            n,
            programs,
            FN=act.backward,
            NP=act.num_params,
            NEED0=need0,
            NEED1=need1,
            BLOCK=block,
            INT64=needs_int64(n, block),
            RTNE=emulate_rtne(),
            num_warps=num_warps(block),
        )
    grads = tuple(partials[i].sum() if need else None for i, need in enumerate(needs))
    return (dx, *grads)
