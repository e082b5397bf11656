"""Adaptive SwisH (Lee et al., "ASH: adaptive Swish", ash.txt eqs. 7-10): the math and the declaration.

ASH keeps the elements above ``mu_X + z sigma_X`` of each sample (its top-k percentile under a
normal assumption), smoothed by a sigmoid. The paper's eq. 11 writes sigmoid(-2 alpha ...): a sign
typo, since eq. 10 (and "large x is kept") needs sigmoid(+2 alpha ...). The statistics are per
sample, never over the batch (unlike the authors' TF2 code).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from ..declaration import Activation, Param
from . import _rational as rational
from ._precision import as_compute, check_floating, compute_dtype, reduce_to

Dims = int | Sequence[int] | None


def ash_dims(ndim: int, dim: Dims = None) -> tuple[int, ...]:
    """Dimensions that ASH's statistics reduce over for an input with ``ndim`` dimensions.

    Default: (C, H, W, ...) of an (N, C, H, W, ...) input, as in the paper; the last dimension
    of (B, D) and (B, T, D) inputs, so position t of a sequence never sees positions after t;
    everything for 0-D and 1-D inputs.
    """
    if dim is None:
        if ndim >= 4:
            return tuple(range(1, ndim))
        if ndim >= 1:
            return (ndim - 1,)
        return ()
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if ndim == 0:
        if dims in ((), (0,), (-1,)):
            return ()
        raise ValueError(f"ash: dim={dim!r} is out of range for a 0-dimensional input")
    normalised = []
    for d in dims:
        if not isinstance(d, int) or not -ndim <= d < ndim:
            raise ValueError(
                f"ash: dim={dim!r} is out of range for a {ndim}-dimensional input; "
                f"use dimensions in [{-ndim}, {ndim - 1}]"
            )
        normalised.append(d % ndim)
    if len(set(normalised)) != len(normalised):
        raise ValueError(f"ash: dim={dim!r} names a dimension twice")
    return tuple(sorted(normalised))


def ash_stats(x: torch.Tensor, dim: Dims = None, eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample mean and population standard deviation ``sqrt(var + eps)`` (keepdim shapes).

    Computed in float32 for half inputs. The variance is floored at the dtype's smallest normal
    number so that a constant sample (sigma = 0) has a finite gradient; this moves sigma by at most
    1e-19 in float32.
    """
    check_floating(x, "ash")
    dims = ash_dims(x.ndim, dim)
    xc = x.to(compute_dtype(x))
    if x.numel() == 0:
        shape = [1 if i in dims else s for i, s in enumerate(x.shape)]
        empty = xc.new_zeros(shape)
        return empty, empty
    if not dims:  # a 0-D input is its own sample: mean x, deviation 0
        var, mean = torch.zeros_like(xc), xc
    else:
        var, mean = torch.var_mean(xc, dim=dims, correction=0, keepdim=True)
    std = torch.sqrt((var + eps).clamp_min(torch.finfo(xc.dtype).tiny))
    return mean, std


def ash_apply(
    x: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    z: torch.Tensor | float = 0.0,
    alpha: torch.Tensor | float = 1.0,
    *,
    sigmoid: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid,
) -> torch.Tensor:
    """The elementwise half of ASH given the statistics: ``x sigmoid(2 alpha (x - mean - z std))``.

    ``sigmoid`` computes the gate's sigmoid (the fused CPU kernels pass one without a library exp).
    """
    dtype = compute_dtype(x)
    xc = x.to(dtype)
    z_c = as_compute(z, dtype, x.device)
    a_c = as_compute(alpha, dtype, x.device)
    threshold = mean.to(dtype) + z_c * std.to(dtype)
    return (xc * sigmoid(2.0 * a_c * (xc - threshold))).to(x.dtype)


def ash(
    x: torch.Tensor,
    z: torch.Tensor | float = 0.0,
    alpha: torch.Tensor | float = 1.0,
    dim: Dims = None,
    eps: float = 0.0,
) -> torch.Tensor:
    """ASH (ash.txt eq. 10): ``x sigmoid(2 alpha (x - mu_X - z sigma_X))``, statistics per sample.

    ``mu_X`` and ``sigma_X`` (population std) are over ``dim`` (see :func:`ash_dims`); gradients
    flow through them, so the backward is not elementwise (like LayerNorm's). z = 0, alpha = 1/2 on
    a zero-mean input is SiLU; large alpha tends to ``x H(x - mu - z sigma)``, the top-k% keep.
    """
    mean, std = ash_stats(x, dim, eps)
    return ash_apply(x, mean, std, z, alpha)


class _Backward(NamedTuple):
    """ASH's backward inputs in the compute dtype, and the per-element terms every part needs."""

    dims: tuple[int, ...]
    n: int
    x: torch.Tensor
    grad: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    z: torch.Tensor
    alpha: torch.Tensor
    t: torch.Tensor  # mean + z std
    s: torch.Tensor  # sigmoid(2 alpha (x - t))
    q: torch.Tensor  # grad x s (1 - s)
    w: torch.Tensor  # 2 alpha q


def _backward_terms(x, grad, mean, std, z, alpha, dim, sigmoid) -> _Backward:
    dims = ash_dims(x.ndim, dim)
    dtype = compute_dtype(x)
    xc, gc = x.to(dtype), grad.to(dtype)
    mean, std = mean.to(dtype), std.to(dtype)
    z_c, a_c = as_compute(z, dtype, x.device), as_compute(alpha, dtype, x.device)
    t = mean + z_c * std
    s = sigmoid(2.0 * a_c * (xc - t))
    q = gc * xc * s * (1.0 - s)
    n = math.prod([x.shape[d] for d in dims])
    return _Backward(dims, n, xc, gc, mean, std, z_c, a_c, t, s, q, 2.0 * a_c * q)


def _sums(b: _Backward, need_z: bool, need_alpha: bool):
    # One per-sample reduction pass: sum w (for mean, std and z) and, if wanted, sum q (x - t) (for
    # alpha). A single-valued z or alpha then sums per-sample values, not the elements again.
    dims, w = b.dims, b.w
    d_mean = -w.sum(dims, keepdim=True) if dims else -w
    z_single, a_single = b.z.numel() == 1, b.alpha.numel() == 1
    floor = torch.sqrt(torch.tensor(torch.finfo(b.x.dtype).tiny, dtype=b.x.dtype, device=b.x.device))
    d_std = d_mean * b.z if z_single else (-(w * b.z).sum(dims, keepdim=True) if dims else -(w * b.z))
    d_std = torch.where(b.std > floor, d_std, 0.0)
    d_z = d_alpha = None
    if need_z:
        d_z = reduce_to(d_mean * b.std, b.z) if z_single else reduce_to(-w * b.std, b.z)
    if need_alpha:
        qt = b.q * (b.x - b.t)
        if a_single:
            qt = qt.sum(dims, keepdim=True) if dims else qt
        d_alpha = reduce_to(2.0 * qt, b.alpha)
    return d_mean, d_std, d_z, d_alpha


def _dx(b: _Backward, d_mean: torch.Tensor, d_std: torch.Tensor) -> torch.Tensor:
    return b.grad * b.s + b.w + d_mean / b.n + d_std * (b.x - b.mean) / (b.n * b.std)


def ash_backward(
    x: torch.Tensor,
    grad: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    z: torch.Tensor | float = 0.0,
    alpha: torch.Tensor | float = 1.0,
    dim: Dims = None,
    need_z: bool = False,
    need_alpha: bool = False,
    *,
    sigmoid: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Analytic gradients of :func:`ash` from x and its statistics (as :func:`ash_stats` returns them).

    With ``t = mean + z std``, ``s = sigmoid(2 alpha (x - t))``, ``q = grad x s (1 - s)`` and
    ``w = 2 alpha q``, over the N elements of each sample:
    ``dL/dx = grad s + w + dL/dmean / N + dL/dstd (x - mean) / (N std)`` with
    ``dL/dmean = -sum w`` and ``dL/dstd = -sum w z`` (the std term is 0 where the variance sits on
    its floor, as the clamp's gradient is); ``dL/dz = -sum w std``, ``dL/dalpha = 2 sum q (x - t)``.
    Like LayerNorm's, it needs one per-sample reduction before the elementwise pass: the two halves
    are also :func:`ash_backward_sums` and :func:`ash_backward_dx`. ``sigmoid`` as in :func:`ash_apply`.
    """
    b = _backward_terms(x, grad, mean, std, z, alpha, dim, sigmoid)
    d_mean, d_std, d_z, d_alpha = _sums(b, need_z, need_alpha)
    return _dx(b, d_mean, d_std).to(x.dtype), d_z, d_alpha


def ash_backward_sums(
    x: torch.Tensor,
    grad: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    z: torch.Tensor | float = 0.0,
    alpha: torch.Tensor | float = 1.0,
    dim: Dims = None,
    need_z: bool = False,
    need_alpha: bool = False,
    *,
    sigmoid: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The reduction half of :func:`ash_backward`: ``(dL/dmean, dL/dstd, dL/dz, dL/dalpha)``."""
    return _sums(_backward_terms(x, grad, mean, std, z, alpha, dim, sigmoid), need_z, need_alpha)


def ash_backward_dx(
    x: torch.Tensor,
    grad: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    d_mean: torch.Tensor,
    d_std: torch.Tensor,
    z: torch.Tensor | float = 0.0,
    alpha: torch.Tensor | float = 1.0,
    dim: Dims = None,
    *,
    sigmoid: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid,
) -> torch.Tensor:
    """The elementwise half of :func:`ash_backward`: dL/dx given :func:`ash_backward_sums`' first two."""
    return _dx(_backward_terms(x, grad, mean, std, z, alpha, dim, sigmoid), d_mean, d_std).to(x.dtype)


# --------------------------------------------------------------------------------------------------
# The fused CPU forms, on the rows of a (samples, elements) matrix.
#
# The sigmoid, most of the elementwise cost, is :func:`._rational.sigmoid` (no library exp) in
# float32. The backward's two passes, the per-row sums and then the elementwise dx, compile as two
# kernels: as one graph, Inductor's loops ran longer (the forward's two passes fuse well).
# --------------------------------------------------------------------------------------------------


def _sigmoid_for(x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return torch.sigmoid if compute_dtype(x) == torch.float64 else rational.sigmoid


def rows_stats(x2d: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each float32 (or half) row's mean and std as :func:`ash_stats` gives them,
    from float64 sums.

    The sums of x and x^2 in float64 take one cheap pass: Welford's update, Inductor's fused
    var_mean, costs a multiply and a division-free update per element and runs markedly longer.
    Their difference, var = E[x^2] - mean^2, loses log10(mean^2 / var) of float64's 16
    digits, which leaves the variance exact to float32 unless |mean| > 1e4 std (where float32 holds
    x itself to no better than 1e-3 std); and x^2 cannot overflow.
    """
    wide = x2d.to(torch.float64)
    n = x2d.shape[1]
    mean = wide.sum(1, keepdim=True) / n
    var = (wide * wide).sum(1, keepdim=True) / n - mean * mean
    std = torch.sqrt((var + eps).clamp_min(torch.finfo(torch.float32).tiny))
    return mean.to(torch.float32), std.to(torch.float32)


def rows_forward(x2d: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, eps: float):
    """ASH of each row; returns y and the (samples, 1) mean and std. float64 keeps the plain math."""
    if compute_dtype(x2d) == torch.float64:
        mean, std = ash_stats(x2d, 1, eps)
        return ash_apply(x2d, mean, std, z, alpha), mean, std
    mean, std = rows_stats(x2d, eps)
    # 2 alpha (x - mean - z std) as one multiply-add per element: a2 x - a2 t
    a2 = 2.0 * alpha
    xc = x2d.to(torch.float32)
    y = xc * rational.sigmoid(xc * a2 - a2 * (mean + z * std))
    return y.to(x2d.dtype), mean, std


def rows_backward_sums(x2d, grad2d, mean, std, z, alpha, need_z: bool, need_alpha: bool):
    """``(dL/dmean, dL/dstd, dL/dz, dL/dalpha)`` per row (see :func:`ash_backward_sums`)."""
    return ash_backward_sums(x2d, grad2d, mean, std, z, alpha, 1, need_z, need_alpha, sigmoid=_sigmoid_for(x2d))


def rows_backward_dx(x2d, grad2d, mean, std, d_mean, d_std, z, alpha) -> torch.Tensor:
    """dL/dx of each row given the row sums."""
    return ash_backward_dx(x2d, grad2d, mean, std, d_mean, d_std, z, alpha, 1, sigmoid=_sigmoid_for(x2d))


# --------------------------------------------------------------------------------------------------
# The declaration: per-sample statistics make ASH more than an elementwise formula, so its module
# (dim, eps) and its lean function (statistics saved with x) are written by hand.
# --------------------------------------------------------------------------------------------------

ASH = Activation(
    name="ash",
    class_name="ASH",
    forward=ash,
    backward=None,
    params=(Param("z", 0.0, trainable=True), Param("alpha", 1.0, trainable=True)),
    paper="Lee et al., ASH: adaptive Swish with stochastic percentile sampling (ash.txt, eq. 10)",
    formula="x sigmoid(2 a (x - mean_X - z std_X)), statistics per sample",
    approximates="relu",
    triton="ash",
    elementwise=False,
    module="actplug.nn.ash:ASH",
    function="actplug.kernels.autograd.persample:ash",
)
