"""Views that let a kernel walk a tensor as flat memory (elementwise) or as rows (ASH), in any layout.

An elementwise kernel does not care about the order of elements, so any dense tensor (contiguous,
channels_last, any permutation) is processed as the flat run of memory it occupies, and the result
gets the input's own strides, as PyTorch's own elementwise ops do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def is_dense(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """True if the elements fill a block of memory with no gap and no overlap (any dimension order)."""
    expected = 1
    for size, stride in sorted(((s, st) for s, st in zip(shape, strides, strict=True) if s != 1), key=lambda p: p[1]):
        if stride != expected:
            return False
        expected *= size
    return True


def same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True if ``a`` and ``b`` have the same shape and strides (strides of size-1 dimensions ignored)."""
    if a.shape != b.shape:
        return False
    return all(s == 1 or sa == sb for s, sa, sb in zip(a.shape, a.stride(), b.stride(), strict=True))


def flatten(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``x`` as a 1-D contiguous tensor in memory order, and the strides to give a result back.

    Dense tensors are viewed without a copy (their own strides come back); others are copied to
    contiguous memory (and contiguous strides come back).
    """
    if x.is_contiguous():
        return x.view(-1), x.stride()
    if is_dense(x.shape, x.stride()):
        return x.as_strided((x.numel(),), (1,), x.storage_offset()), x.stride()
    x = x.contiguous()
    return x.view(-1), x.stride()


def flatten_like(t: torch.Tensor, shape: torch.Size, strides: tuple[int, ...]) -> torch.Tensor:
    """``t`` (e.g. an incoming gradient) as the flat run of memory that ``flatten`` gave for its input."""
    if t.shape == shape:
        own = t.stride()
        same = own == strides or all(s == 1 or a == b for s, a, b in zip(shape, own, strides, strict=True))
        if same and (own == strides or is_dense(shape, strides)):  # equal strides are dense already
            return t.as_strided((t.numel(),), (1,), t.storage_offset())
    arranged = torch.empty_strided(shape, strides, dtype=t.dtype, device=t.device)
    arranged.copy_(t)
    return arranged.as_strided((t.numel(),), (1,), 0)


def unflatten(flat: torch.Tensor, shape: torch.Size, strides: tuple[int, ...]) -> torch.Tensor:
    """The result of a flat kernel with the layout its input had."""
    return flat.as_strided(shape, strides)


def rows(x: torch.Tensor, dims: Sequence[int]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``x`` as a (samples, elements per sample) matrix: kept dims first, reduced dims last.

    Each group is taken in memory order (by decreasing stride), so that a contiguous or
    channels_last (N, C, H, W) tensor reduced over (C, H, W) is a view, not a copy. Returns the
    matrix and the permutation that ``unrows`` undoes.
    """
    reduced = set(dims)
    by_stride = sorted(range(x.ndim), key=lambda d: -x.stride(d))
    perm = tuple(d for d in by_stride if d not in reduced) + tuple(d for d in by_stride if d in reduced)
    kept = math.prod(x.shape[d] for d in range(x.ndim) if d not in reduced)
    per_row = math.prod(x.shape[d] for d in reduced)
    return x.permute(perm).reshape(kept, per_row), perm


def unrows(matrix: torch.Tensor, like: torch.Tensor, perm: tuple[int, ...]) -> torch.Tensor:
    """Undo :func:`rows`: the matrix back in ``like``'s shape (a view)."""
    permuted_shape = [like.shape[d] for d in perm]
    inverse = [0] * len(perm)
    for position, d in enumerate(perm):
        inverse[d] = position
    return matrix.reshape(permuted_shape).permute(inverse)
