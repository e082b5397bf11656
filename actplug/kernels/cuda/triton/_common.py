"""Launch helpers shared by the elementwise and ASH kernels."""

from __future__ import annotations

import contextlib

import torch
import triton

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# The largest block one program handles, and the block of the elementwise kernels (H100: 16 elements
# per thread with 8 warps, 16-byte vector loads for float32).
MAX_BLOCK = 4096
_INT32_MAX = 2**31 - 1


def device_context(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Launch on x's GPU (a no-op for CPU tensors under the interpreter)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def emulate_rtne() -> bool:
    """True under the interpreter, whose float32 -> bfloat16 cast truncates (see ``_math.to_output``)."""
    return bool(triton.knobs.runtime.interpret)


def num_warps(block: int) -> int:
    """Warps for a block: 8 for 2048 and more, fewer for small blocks (at least 8 elements a thread)."""
    return max(1, min(8, block // 256))


def needs_int64(numel: int, block: int) -> bool:
    """True if an offset (up to numel + block, the masked tail included) may not fit in int32."""
    return numel + block > _INT32_MAX


def check_block(block: int) -> int:
    """A block size must be a power of two (tl.arange needs it)."""
    if block < 1 or block & (block - 1):
        raise ValueError(f"block size must be a power of two, got {block}")
    return block


def check_input(x: torch.Tensor, what: str, ndim: int) -> None:
    """x must be a contiguous float32/float16/bfloat16 tensor of ``ndim`` dimensions."""
    if x.dtype not in DTYPES:
        raise TypeError(f"{what}: Triton kernels take float32, float16 or bfloat16, got {x.dtype}")
    if x.ndim != ndim or not x.is_contiguous():
        raise ValueError(f"{what}: expected a contiguous {ndim}-D tensor, got shape {tuple(x.shape)}")


def scalar_param(p: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A scalar parameter as a float32 0-d tensor on ``device`` (a no-op when it already is one)."""
    if p.numel() != 1:
        raise ValueError(f"Triton kernels take scalar parameters, got shape {tuple(p.shape)}")
    return p.detach().reshape(()).to(device=device, dtype=torch.float32)
