"""The CPU fast path: Inductor's fused C++ loops, one per pass, for tensors of at least
``cpu_min_numel`` elements (:mod:`actplug.kernels.settings`).

Elementwise activations run their declaration's fused CPU forms (:class:`actplug.declaration.Fused`:
the same functions in cheaper float32 instructions) where it has them and x is not float64, the plain
math otherwise, as (rows, :data:`BLOCK`) matrices where the length allows (:mod:`..inductor`). ASH,
whose statistics span a sample, is in :mod:`.ash`. Until a kernel is compiled (in the background,
:mod:`..compiler`) these return None and the caller runs the eager math.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .. import inductor

if TYPE_CHECKING:
    from ..autograd.elementwise import Elementwise, Grads, Value

#: Width of the rows a flat input is viewed as when its length is a multiple of it.
BLOCK = 4096


def forward(op: Elementwise, x: torch.Tensor, values: Sequence[Value], path: str = "compiled") -> torch.Tensor | None:
    """y of elementwise ``op`` from its compiled CPU kernel, or None if that is not ready."""
    return inductor.forward(op, x, values, _form(op, x.dtype, "forward"), BLOCK)


def backward(
    op: Elementwise,
    x: torch.Tensor,
    grad: torch.Tensor,
    values: Sequence[Value],
    needs: tuple[str, ...],
    path: str = "compiled",
) -> tuple[torch.Tensor, Grads] | None:
    """``(dL/dx, parameter gradients)`` of ``op`` from its compiled CPU kernel, or None if not ready."""
    return inductor.backward(op, x, grad, values, needs, _form(op, x.dtype, "backward"), BLOCK)


def _form(op: Elementwise, dtype: torch.dtype, which: str) -> inductor.Form:
    """The declaration's fused form of pass ``which`` for float32 and the half types, else its plain math
    (a backward of None is the vjp of the forward)."""
    fused = op.declaration.cpu
    chosen = getattr(fused, which) if fused is not None and dtype != torch.float64 else None
    if chosen is not None:
        return inductor.Form(chosen, fused.prepare)
    return inductor.Form(getattr(op.declaration, which))
