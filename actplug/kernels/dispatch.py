"""Choosing the fast path for a call, and the situations where only the plain math will do."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch

from . import settings

# Triton kernels compute in float32: float64 keeps its own precision on the plain path.
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@functools.cache
def triton_available() -> bool:
    """True if Triton imports (it ships with CUDA builds of PyTorch)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def plain_only() -> bool:
    """True while torch.compile / torch.export trace, or functorch transforms (vmap, grad) run.

    Those see the plain math, which they can trace and fuse themselves (Inductor saves only what
    its own partitioner chooses); our autograd Functions and kernels stay out of their way.
    """
    if torch.compiler.is_compiling():
        return True
    peek = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def fast_path(x: torch.Tensor, params: Sequence[torch.Tensor], *, triton: bool) -> str:
    """``"triton"``, ``"compiled"`` or ``"eager"`` for input ``x`` with tensor ``params``.

    ``triton``: a hand-written Triton kernel exists for the activation; without one, CUDA tensors take
    Inductor's (``"compiled"``). The fast paths walk memory flat, so they take scalar parameters only;
    a parameter that broadcasts (say one per channel) uses the plain math with its analytic backward.
    """
    if x.numel() < 2 or any(p.numel() != 1 for p in params):
        return "eager"
    chosen = settings.current()
    if x.device.type == "cuda":
        if chosen.cuda != "triton":
            return "eager"
        if triton and x.dtype in TRITON_DTYPES and triton_available():
            return "triton"
        return "compiled" if x.dtype != torch.float64 else "eager"
    if x.device.type == "cpu":
        if chosen.cpu == "compiled" and x.numel() >= chosen.cpu_min_numel:
            return "compiled"
        if chosen.cpu == "triton" and triton and x.dtype in TRITON_DTYPES and triton_available():
            return "triton"
    return "eager"


def needs_graph(*tensors: torch.Tensor) -> bool:
    """True if autograd will want a backward through this call."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def differentiate_plain(
    forward: Callable[[], torch.Tensor], inputs: Sequence[torch.Tensor], needs: Sequence[bool], grad: torch.Tensor
) -> tuple[torch.Tensor | None, ...]:
    """Gradients by autograd of the plain math, kept differentiable: the double-backward fallback.

    Used when a backward runs with ``create_graph=True``: the analytic kernels are not themselves
    differentiable, so the forward is recomputed from the saved input and differentiated again.
    """
    wanted = [t for t, need in zip(inputs, needs, strict=True) if need]
    with torch.enable_grad():
        output = forward()
        found = iter(torch.autograd.grad(output, wanted, grad, create_graph=True, allow_unused=True))
    return tuple(next(found) if need else None for need in needs)
