"""ASH on a (samples, elements) matrix: two passes forward, two passes backward.

Each program of a pass handles one chunk (one block) of one row, the programs of a row lying next to
each other on a flat grid of rows x chunks (a flat grid has no 65535 limit on either count). Between
the passes one small kernel per row combines the row's chunks (its statistics forward, its gradient
coefficients backward): one launch where torch would take some twenty small operations, whose host
time (not their GPU time) is what bounds ASH at the sizes of a network.
"""

from __future__ import annotations

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

TINY = tl.constexpr(torch.finfo(torch.float32).tiny)
STD_FLOOR = tl.constexpr(2.0**-63)  # sqrt(TINY): where the variance sits on its floor, std's gradient is 0
_MIN_BLOCK = 128
_MAX_TILE = 1024  # chunks a row kernel loads at a time


@triton.jit
def _chunk(K, C, BLOCK: tl.constexpr, INT64: tl.constexpr):
    """This program's row, chunk, element offsets into the matrix and mask."""
    pid = tl.program_id(0)
    if INT64:
        pid = pid.to(tl.int64)
    row = pid // C
    chunk = pid - row * C
    cols = chunk * BLOCK + tl.arange(0, BLOCK)
    mask = cols < K
    return pid, row, chunk, row * K + cols, mask


@triton.jit
def _chunk_counts(idx, K, C, BLOCK: tl.constexpr):
    """Elements in chunks ``idx`` of a row of K: BLOCK each, the last one the rest."""
    return tl.where(idx == C - 1, (K - (C - 1) * BLOCK) * 1.0, BLOCK * 1.0)


@triton.jit
def _row_stats_kernel(
    chunk_mean_ptr, chunk_m2_ptr, mean_ptr, std_ptr, K, C, eps, BLOCK: tl.constexpr, TILE: tl.constexpr
):
    """One row's mean and std from its chunks' by Chan et al.'s parallel combination, shifted by the row's
    first chunk mean (so that a constant row's mean is exact and its variance 0): mean = ref + sum n_i
    (m_i - ref) / K, M2 = sum (M2_i + n_i (m_i - mean)^2), std = sqrt(max(M2 / K + eps, tiny))."""
    row = tl.program_id(0).to(tl.int64)
    base = row * C
    ref = tl.load(chunk_mean_ptr + base)
    ref = tl.where(tl.abs(ref) <= M.FLT_MAX, ref, 0.0)
    acc = tl.zeros([TILE], dtype=tl.float32)
    for start in range(0, C, TILE):
        idx = start + tl.arange(0, TILE)
        mask = idx < C
        m = tl.load(chunk_mean_ptr + base + idx, mask=mask, other=0.0)
        acc += tl.where(mask, (m - ref) * _chunk_counts(idx, K, C, BLOCK), 0.0)
    mean = ref + tl.math.div_rn(tl.sum(acc, axis=0), K * 1.0)
    acc = tl.zeros([TILE], dtype=tl.float32)
    for start in range(0, C, TILE):
        idx = start + tl.arange(0, TILE)
        mask = idx < C
        m = tl.load(chunk_mean_ptr + base + idx, mask=mask, other=0.0)
        m2 = tl.load(chunk_m2_ptr + base + idx, mask=mask, other=0.0)
        d = m - mean
        acc += tl.where(mask, m2 + _chunk_counts(idx, K, C, BLOCK) * (d * d), 0.0)
    var = tl.math.div_rn(tl.sum(acc, axis=0), K * 1.0) + eps
    tl.store(mean_ptr + row, mean)
    tl.store(std_ptr + row, tl.sqrt_rn(tl.where(var < TINY, TINY, var)))  # NaN stays NaN


@triton.jit
def _row_grads_kernel(
    sq_ptr,
    sqd_ptr,
    std_ptr,
    z_ptr,
    alpha_ptr,
    cm_ptr,
    cs_ptr,
    dz_ptr,
    da_ptr,
    K,
    C,
    NEED_Z: tl.constexpr,
    NEED_ALPHA: tl.constexpr,
    TILE: tl.constexpr,
):
    """One row's backward coefficients from its chunks' sums: w = 2 alpha sum q, dL/dmean = -w, dL/dstd =
    -z w (0 where std sits on its floor), cm = dL/dmean / K, cs = dL/dstd / (K std); and the row's terms
    of dz (w std, negated in the sum) and dalpha (sum q (x - t), doubled in the sum)."""
    row = tl.program_id(0).to(tl.int64)
    base = row * C
    acc = tl.zeros([TILE], dtype=tl.float32)
    for start in range(0, C, TILE):
        idx = start + tl.arange(0, TILE)
        acc += tl.load(sq_ptr + base + idx, mask=idx < C, other=0.0)
    z = tl.load(z_ptr)
    w = (2.0 * tl.load(alpha_ptr)) * tl.sum(acc, axis=0)
    std = tl.load(std_ptr + row)
    k = K * 1.0
    d_std = tl.where(std > STD_FLOOR, -(z * w), 0.0)
    tl.store(cm_ptr + row, tl.math.div_rn(-w, k))
    tl.store(cs_ptr + row, tl.math.div_rn(d_std, k * std))
    if NEED_Z:
        tl.store(dz_ptr + row, w * std)
    if NEED_ALPHA:
        acc = tl.zeros([TILE], dtype=tl.float32)
        for start in range(0, C, TILE):
            idx = start + tl.arange(0, TILE)
            acc += tl.load(sqd_ptr + base + idx, mask=idx < C, other=0.0)
        tl.store(da_ptr + row, tl.sum(acc, axis=0))


@triton.jit
def _stats_kernel(x_ptr, mean_ptr, m2_ptr, K, C, BLOCK: tl.constexpr, INT64: tl.constexpr, RTNE: tl.constexpr):
    """Count, mean and M2 = sum (x - mean)^2 of one chunk, by the corrected two-pass algorithm: a first
    mean m0, then the deviations d = x - m0 give mean = m0 + sum d / n and M2 = sum d^2 - (sum d)^2 / n
    (exact for a constant chunk: its M2 is 0)."""
    pid, _, chunk, offs, mask = _chunk(K, C, BLOCK, INT64)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    count = tl.minimum(K - chunk * BLOCK, BLOCK).to(tl.float32)
    m0 = tl.sum(x, axis=0) / count
    d = tl.where(mask, x - m0, 0.0)
    sd = tl.sum(d, axis=0)
    m2 = tl.sum(d * d, axis=0) - sd * (sd / count)
    m2 = tl.where(m2 < 0.0, 0.0, m2)
    # An infinite m0 leaves d NaN: keep m0 (the plain mean, inf) and let M2 be NaN, as var_mean does.
    mean = tl.where(tl.abs(m0) <= M.FLT_MAX, m0 + sd / count, m0)
    tl.store(mean_ptr + pid, mean)
    tl.store(m2_ptr + pid, m2)


@triton.jit
def _apply_kernel(
    x_ptr,
    y_ptr,
    mean_ptr,
    std_ptr,
    z_ptr,
    alpha_ptr,
    K,
    C,
    BLOCK: tl.constexpr,
    INT64: tl.constexpr,
    RTNE: tl.constexpr,
):
    """y = x sigmoid(2 alpha (x - mean - z std)), the row's statistics loaded once."""
    _, row, _, offs, mask = _chunk(K, C, BLOCK, INT64)
    mean = tl.load(mean_ptr + row)
    std = tl.load(std_ptr + row)
    z = tl.load(z_ptr).to(tl.float32)
    alpha = tl.load(alpha_ptr).to(tl.float32)
    t = mean + z * std
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    s, _ = M.sigmoid_pair((2.0 * alpha) * (x - t))
    tl.store(y_ptr + offs, M.to_output(x * s, y_ptr.dtype.element_ty, RTNE), mask=mask)


@triton.jit
def _grad_sums_kernel(
    x_ptr,
    g_ptr,
    mean_ptr,
    std_ptr,
    z_ptr,
    alpha_ptr,
    sq_ptr,
    sqd_ptr,
    K,
    C,
    NEED_ALPHA: tl.constexpr,
    BLOCK: tl.constexpr,
    INT64: tl.constexpr,
    RTNE: tl.constexpr,
):
    """Per chunk: sum q and (if alpha's gradient is wanted) sum q (x - t), q = g x s (1 - s)."""
    pid, row, _, offs, mask = _chunk(K, C, BLOCK, INT64)
    mean = tl.load(mean_ptr + row)
    std = tl.load(std_ptr + row)
    z = tl.load(z_ptr).to(tl.float32)
    alpha = tl.load(alpha_ptr).to(tl.float32)
    t = mean + z * std
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    s, sc = M.sigmoid_pair((2.0 * alpha) * (x - t))
    q = tl.where(mask, g * x * s * sc, 0.0)
    tl.store(sq_ptr + pid, tl.sum(q, axis=0))
    if NEED_ALPHA:
        tl.store(sqd_ptr + pid, tl.sum(tl.where(mask, q * (x - t), 0.0), axis=0))


@triton.jit
def _dx_kernel(
    x_ptr,
    g_ptr,
    dx_ptr,
    mean_ptr,
    std_ptr,
    cm_ptr,
    cs_ptr,
    z_ptr,
    alpha_ptr,
    K,
    C,
    BLOCK: tl.constexpr,
    INT64: tl.constexpr,
    RTNE: tl.constexpr,
):
    """dx = g s + w + dL/dmean / N + dL/dstd (x - mean) / (N std), w = 2 alpha q; the two per-row
    coefficients cm = dL/dmean / N and cs = dL/dstd / (N std) come precomputed."""
    _, row, _, offs, mask = _chunk(K, C, BLOCK, INT64)
    mean = tl.load(mean_ptr + row)
    std = tl.load(std_ptr + row)
    cm = tl.load(cm_ptr + row)
    cs = tl.load(cs_ptr + row)
    z = tl.load(z_ptr).to(tl.float32)
    alpha = tl.load(alpha_ptr).to(tl.float32)
    t = mean + z * std
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    s, sc = M.sigmoid_pair((2.0 * alpha) * (x - t))
    w = (2.0 * alpha) * (g * x * s * sc)
    dx = g * s + w + cm + cs * (x - mean)
    tl.store(dx_ptr + offs, M.to_output(dx, dx_ptr.dtype.element_ty, RTNE), mask=mask)


def _layout(rows: int, cols: int, block_size: int | None) -> tuple[int, int, dict]:
    """Block (a power of two, at most 4096, no larger than the row needs), chunks per row, and the
    launch options."""
    if block_size is None:
        block = min(MAX_BLOCK, max(_MIN_BLOCK, triton.next_power_of_2(cols)))
    else:
        block = check_block(block_size)
    chunks = triton.cdiv(cols, block)
    if rows * chunks > 2**31 - 1:
        raise ValueError(f"ash: {rows} rows x {chunks} chunks is more programs than a grid holds")
    return (
        block,
        chunks,
        {
            "BLOCK": block,
            "INT64": needs_int64(rows * cols, block),
            "RTNE": emulate_rtne(),
            "num_warps": num_warps(block),
        },
    )


def _tile(chunks: int) -> int:
    """Chunks a row kernel loads at a time: the count rounded up to a power of two, at most 1024."""
    return min(_MAX_TILE, triton.next_power_of_2(chunks))


def _row_vector(t: torch.Tensor, rows: int, device: torch.device) -> torch.Tensor:
    return t.reshape(rows).to(device=device, dtype=torch.float32).contiguous()


def ash_forward(
    x2d: torch.Tensor,
    z: torch.Tensor,
    alpha: torch.Tensor,
    eps: float,
    *,
    block_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ASH of every row of a matrix (one sample per row), by Triton kernels.

    Args:
        x2d: (R, K) contiguous float32/float16/bfloat16 matrix.
        z, alpha: 0-d float32 tensors (read by the kernels from memory: no host synchronisation).
        eps: added to the variance.
        block_size: elements per program (a power of two); for tests. Default: the row length rounded
            up to a power of two, between 128 and 4096.

    Returns:
        ``(y2d, mean, std)``: y in x's dtype and shape; float32 (R, 1) mean and population
        ``std = sqrt(max(var + eps, tiny))`` (:func:`actplug.activations.ash.ash_stats`).
    """
    check_input(x2d, "ash", 2)
    rows, cols = x2d.shape
    device = x2d.device
    z, alpha = scalar_param(z, device), scalar_param(alpha, device)
    y = torch.empty_like(x2d)
    if x2d.numel() == 0:
        empty = torch.zeros((rows, 1), dtype=torch.float32, device=device)
        return y, empty, empty.clone()
    block, chunks, options = _layout(rows, cols, block_size)
    grid = (rows * chunks,)
    chunk_mean = torch.empty((rows, chunks), dtype=torch.float32, device=device)
    chunk_m2 = torch.empty_like(chunk_mean)
    with device_context(x2d):
        _stats_kernel[grid](x2d, chunk_mean, chunk_m2, cols, chunks, **options)
        mean = torch.empty((rows, 1), dtype=torch.float32, device=device)
        std = torch.empty_like(mean)
        _row_stats_kernel[(rows,)](
            chunk_mean, chunk_m2, mean, std, cols, chunks, float(eps), BLOCK=block, TILE=_tile(chunks), num_warps=4
        )
        _apply_kernel[grid](x2d, y, mean, std, z, alpha, cols, chunks, **options)
    return y, mean, std


def ash_backward(
    x2d: torch.Tensor,
    g2d: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    z: torch.Tensor,
    alpha: torch.Tensor,
    needs: tuple[bool, bool],
    *,
    block_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Gradients of :func:`ash_forward` (:func:`actplug.activations.ash.ash_backward` for scalar z, alpha).

    A reduction pass gives per row ``sum q`` and ``sum q (x - t)`` (q = g x s (1 - s), t = mean + z std);
    an elementwise pass gives dx. The std term is 0 where std sits on its floor (std <= sqrt(tiny)).

    Args:
        x2d: the forward's (R, K) input; g2d: dL/dy, (R, K) contiguous.
        mean, std: the statistics :func:`ash_forward` returned ((R, 1) float32).
        z, alpha: 0-d float32 tensors.
        needs: whether dz and dalpha are wanted.
        block_size: elements per program (a power of two); for tests.

    Returns:
        ``(dx2d, dz, dalpha)``: dx in x's dtype; dz and dalpha float32 0-d tensors, or None.
    """
    check_input(x2d, "ash", 2)
    check_input(g2d, "ash", 2)
    if g2d.shape != x2d.shape:
        raise ValueError(f"ash: grad has shape {tuple(g2d.shape)}, x has {tuple(x2d.shape)}")
    need_z, need_alpha = (bool(n) for n in needs)
    rows, cols = x2d.shape
    device = x2d.device
    z, alpha = scalar_param(z, device), scalar_param(alpha, device)
    dx = torch.empty_like(x2d)
    if x2d.numel() == 0:
        zero = torch.zeros((), dtype=torch.float32, device=device)
        return dx, zero.clone() if need_z else None, zero.clone() if need_alpha else None
    mean, std = _row_vector(mean, rows, device), _row_vector(std, rows, device)
    _, chunks, options = _layout(rows, cols, block_size)
    grid = (rows * chunks,)
    sq = torch.empty((rows, chunks), dtype=torch.float32, device=device)
    sqd = torch.empty_like(sq) if need_alpha else sq
    with device_context(x2d):
        _grad_sums_kernel[grid](x2d, g2d, mean, std, z, alpha, sq, sqd, cols, chunks, NEED_ALPHA=need_alpha, **options)
        cm = torch.empty(rows, dtype=torch.float32, device=device)
        cs = torch.empty_like(cm)
        dz_rows = torch.empty_like(cm) if need_z else cm
        da_rows = torch.empty_like(cm) if need_alpha else cm
        _row_grads_kernel[(rows,)](
            sq, sqd, std, z, alpha, cm, cs, dz_rows, da_rows, cols, chunks,
            NEED_Z=need_z, NEED_ALPHA=need_alpha, TILE=_tile(chunks), num_warps=4,
        )  # fmt: skip
        _dx_kernel[grid](x2d, g2d, dx, mean, std, cm, cs, z, alpha, cols, chunks, **options)
    dz = -dz_rows.sum() if need_z else None
    d_alpha = 2.0 * da_rows.sum() if need_alpha else None
    return dx, dz, d_alpha
