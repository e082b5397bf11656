"""Device math: float32 twins of the plain math of :mod:`actplug.activations`, as ``@triton.jit`` functions.

Every activation has a forward ``fn(x, p0, p1, c0) -> y`` and a backward
``fn(x, p0, p1, c0) -> (dy/dx, dy/dp0, dy/dp1)``, where x is a float32 block, p0 and p1 the scalar
parameters loaded from memory (unused ones are 0.0) and c0 the Python-float constant (SMU's and
SMU-1's alpha; unused elsewhere). The generic kernels in :mod:`._elementwise` receive them as
``tl.constexpr`` arguments, so each activation compiles to one fused loop.

Only operations that the Triton interpreter also runs are used (no libdevice): ``expm1`` and
``log1p`` are written out below with float32 errors of a few ulps, and so is ``exp``, whose GPU
``tl.exp`` loses accuracy for large arguments. Clamps are written as ``tl.where`` (or
``propagate_nan=ALL``) so that NaN propagates as in PyTorch, where a GPU ``min``/``max`` would drop it.

Speed: a memory-bound forward pass (read x, write y) leaves a GPU a budget of a few dozen instructions
per element (fewer in bfloat16; docs/h200/ measures it); every instruction past that budget is time
ReLU does not spend. So the cheap hardware approximations are used wherever their
error is provably small against the float32 tolerance: :func:`recip` instead of ``/`` (a GPU's ``/``
is ``div.full.f32``, seven instructions with its range guards), ``tl.math.rsqrt`` and ``tl.sqrt``
(within 2 ulps), and ``tl.exp`` where its relative error (:func:`fast_exp_error`) is shown at the
use to stay under the tolerance. Results below float32's smallest normal number may flush to 0.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ....activations.gish import GISH_SATURATION as _GISH_SATURATION
from ....activations.pflu import GATE_SATURATION as _GATE_SATURATION
from ....activations.smu import ERF_SATURATION as _ERF_SATURATION

FLT_MAX = tl.constexpr(3.4028234663852886e38)
# SMU-1's |mu| floor: 4 sqrt(float32 tiny) = 2**-61 exactly.
SMU1_MU_FLOOR = tl.constexpr(2.0**-61)
# Above this |(1-a)x| or |mu|, SMU-1 computes in units scaled by SMU1_SCALE (squares stay finite).
SMU1_BIG = tl.constexpr(2.0**60)
SMU1_SCALE = tl.constexpr(2.0**-70)
# The saturation points of the plain math (actplug.activations), taken from it so that both agree.
ERF_SATURATION = tl.constexpr(_ERF_SATURATION)
GISH_SATURATION = tl.constexpr(_GISH_SATURATION)
GATE_SATURATION = tl.constexpr(_GATE_SATURATION)
INV_SQRT_PI = tl.constexpr(0.5641895835477563)
LN2 = tl.constexpr(0.6931471805599453)
LOG2E = tl.constexpr(1.4426950408889634)
# ln 2 = LN2_HI + LN2_LO: LN2_HI has 15 significant bits, so n LN2_HI is exact for every |n| <= 151 used here
LN2_HI = tl.constexpr(0.693145751953125)
LN2_LO = tl.constexpr(1.4286068203094173e-06)


# ----------------------------------------------------------------------------- helpers


@triton.jit
def finite(x):
    """``x`` with +-inf clamped to +-FLT_MAX, NaN kept (``finite_max`` of the plain math)."""
    x = tl.where(x > FLT_MAX, FLT_MAX, x)
    return tl.where(x < -FLT_MAX, -FLT_MAX, x)


@triton.jit
def clamp(x, lo, hi):
    """``x`` clamped to [lo, hi]; NaN stays NaN (as torch.clamp)."""
    return tl.where(x < lo, lo, tl.where(x > hi, hi, x))


@triton.jit
def exp(x):
    """``e^x`` to a few ulps for every x. A GPU's ``tl.exp`` is ``ex2.approx(x log2 e)``, whose relative
    error grows like |x| ulps (the rounding of x log2 e); here x = n ln 2 + r with n an integer and
    |r| <= ln 2 / 2 (Cody-Waite, ln 2 in two parts), and e^x = e^r 2^n, 2^n being exact. x is first
    clamped to [-104, 89], where e^x already is 0 and inf in float32 (NaN stays NaN)."""
    xc = clamp(x, -104.0, 89.0)
    n = tl.floor(tl.math.fma(xc, LOG2E, 0.5))
    r = tl.math.fma(n, -LN2_HI, xc)
    r = tl.math.fma(n, -LN2_LO, r)
    # 2^128 overflows although e^x is finite up to x = 88.72 (n = 128, r < 0): take a factor 2 out then.
    positive = n > 0.0
    er = tl.exp(r)
    return tl.where(positive, 2.0 * er, er) * tl.exp2(tl.where(positive, n - 1.0, n))


def fast_exp_error(x: float) -> float:
    """A bound on the relative error of the GPU's ``tl.exp(x)`` = ``ex2.approx(x * log2(e))``, used where it,
    not a few ulps, is enough (documented at each use). Rounding the product and log2(e)'s own float32
    rounding give at most |x| (2^-24 + 2^-26.2) < |x| 2^-23; ex2.approx adds under 2 ulps, taken as 2^-21.
    """
    return abs(x) * 2.0**-23 + 2.0**-21


@triton.jit
def expm1_from(x, ex):
    """``exp(x) - 1`` given ``ex = exp(x)``: Taylor series to x^9/9! for |x| < ln 2 (truncation below
    0.2 ulp), ``ex - 1`` above, where the subtraction is exact and costs at most the ulp of exp."""
    p = tl.math.fma(x, 2.755731922398589e-06, 2.48015873015873e-05)
    p = tl.math.fma(p, x, 1.984126984126984e-04)
    p = tl.math.fma(p, x, 1.388888888888889e-03)
    p = tl.math.fma(p, x, 8.333333333333333e-03)
    p = tl.math.fma(p, x, 4.1666666666666664e-02)
    p = tl.math.fma(p, x, 0.16666666666666666)
    p = tl.math.fma(p, x, 0.5)
    # x + x^2 (1/2 + x/6 + ...): the leading term exact, the rest rounded at its own (smaller) scale.
    series = tl.where(x == 0.0, x, tl.math.fma(x * x, p, x))  # keeps the sign of -0
    return tl.where(tl.abs(x) < LN2, series, ex - 1.0)


@triton.jit
def log1p(x):
    """``log(1 + x)`` without cancellation near 0. With ``s = x / (2 + x)``, log1p(x) = 2 atanh(s) =
    ``x - s (x - R)``, ``R = 2 s^2 (1/3 + s^2/5 + ...)`` (as 2 s = x - s x): for -1/2 <= x <= 1 (|s| <= 1/3,
    series truncated below 1e-9) the leading term x is exact and the correction is about x^2 / 2;
    ``log(1 + x)`` outside (|log| >= 0.69 there, so rounding 1 + x costs under an ulp)."""
    s = x * recip(2.0 + x)  # 2 + x is in [1.5, 3] where the series is used
    s2 = s * s
    q = tl.math.fma(s2, 0.058823529411764705, 0.06666666666666667)
    q = tl.math.fma(q, s2, 0.07692307692307693)
    q = tl.math.fma(q, s2, 0.09090909090909091)
    q = tl.math.fma(q, s2, 0.1111111111111111)
    q = tl.math.fma(q, s2, 0.14285714285714285)
    q = tl.math.fma(q, s2, 0.2)
    q = tl.math.fma(q, s2, 0.3333333333333333)
    series = x - s * (x - 2.0 * s2 * q)
    small = (x >= -0.5) & (x <= 1.0)
    return tl.where(small, series, tl.log(1.0 + x))


@triton.jit
def recip(d):
    """``1 / d`` for d > 0 whose reciprocal is normal (or d = inf: 0): ``rsqrt(d)^2``, within 3 ulps, two
    instructions where a GPU's ``/`` takes seven."""
    q = tl.math.rsqrt(d)
    return q * q


@triton.jit
def sigmoid_pair(v):
    """``(sigmoid(v), 1 - sigmoid(v))``, each without cancellation (one exp of -|v|)."""
    e = exp(-tl.abs(v))
    big = recip(1.0 + e)
    small = e * big
    positive = v >= 0.0
    return tl.where(positive, big, small), tl.where(positive, small, big)


@triton.jit
def to_output(y, dtype: tl.constexpr, emulate_rtne: tl.constexpr):
    """float32 ``y`` as the output dtype, rounded to nearest even. The GPU's conversion does that; the
    interpreter's float32 -> bfloat16 cast truncates, so there (emulate_rtne) y is first rounded to the
    nearest bfloat16 in float32 bits, which then converts exactly (NaN kept as is)."""
    if emulate_rtne and dtype == tl.bfloat16:
        bits = y.to(tl.uint32, bitcast=True)
        rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) & 0xFFFF0000
        y = tl.where(y != y, y, rounded.to(tl.float32, bitcast=True))
    return y.to(dtype)


# ----------------------------------------------------------------------------- SMU, SMU-1


@triton.jit
def _smu_k(mu, alpha):
    """``nan_to_num(mu (1 - alpha))``: a mu that overflowed (inf) is the saturated limit."""
    k = mu * (1.0 - alpha)
    k = tl.where(k != k, 0.0, k)
    return finite(k)


@triton.jit
def smu_forward(x, mu, p1, alpha):
    """SMU: ``x ((1+a) + (1-a) erf(u)) / 2``, ``u = clamp(mu (1-a) x, +-6)``."""
    u = clamp(_smu_k(mu, alpha) * x, -ERF_SATURATION, ERF_SATURATION)
    gate = ((1.0 + alpha) + (1.0 - alpha) * tl.math.erf(u)) * 0.5
    return x * gate


@triton.jit
def smu_backward(x, mu, p1, alpha):
    """dy/dx = gate + (1-a)/sqrt(pi) u exp(-u^2) and dy/dmu = (1-a)^2/sqrt(pi) x^2 exp(-u^2), both second
    terms taken where |mu (1-a) x| < 6 and 0 where erf saturates (the clamp's gradient)."""
    one_minus = 1.0 - alpha
    kx = _smu_k(mu, alpha) * x
    u = clamp(kx, -ERF_SATURATION, ERF_SATURATION)
    unsaturated = tl.abs(kx) < ERF_SATURATION
    bell = tl.where(unsaturated, exp(-u * u), 0.0)
    gate = ((1.0 + alpha) + one_minus * tl.math.erf(u)) * 0.5
    dx = gate + (one_minus * INV_SQRT_PI) * u * bell
    dmu = tl.where(unsaturated, x * x * bell, 0.0) * (one_minus * one_minus * INV_SQRT_PI)
    return dx, dmu, tl.zeros_like(x)


@triton.jit
def _smu1_mu_safe(mu):
    mu_abs = tl.abs(mu)
    return tl.where(mu_abs < SMU1_MU_FLOOR, SMU1_MU_FLOOR, mu_abs)


@triton.jit
def _smu1_scale(a, mu_safe):
    """``(k, 1 / k)``: a power of two k that keeps the squares of ``a k`` and ``mu k`` in float32's range.
    k = 1 while |a| and mu are at most 2^60 (and mu >= 2^-61 keeps mu^2 normal), else 2^-70, so that
    |a| k <= 2^58 even for a = FLT_MAX. Then ``r k = hypot(a k, mu k)`` takes one square root."""
    big = tl.maximum(tl.abs(a), mu_safe) > SMU1_BIG  # a NaN a stays NaN whatever k is
    return tl.where(big, SMU1_SCALE, 1.0), tl.where(big, 1.0 / SMU1_SCALE, 1.0)


@triton.jit
def smu1_forward(x, mu, p1, alpha):
    """SMU-1: ``max(x, a x) + mu^2 / (2 (r + |(1-a) x|))``, ``r = hypot((1-a) x, |mu|)``, |mu| floored at
    4 sqrt(tiny); |(1-a)x| and max(x, a x) take the side x >= 0 at 0 itself (see the plain math). In
    scaled units the divisor lies in [2^-60, 2^61], where :func:`recip` holds."""
    mu_safe = _smu1_mu_safe(mu)
    a = (1.0 - alpha) * x
    right_side = x >= 0.0
    at_most_one = alpha <= 1.0
    a_abs = tl.where(at_most_one, tl.where(right_side, a, -a), tl.where(right_side, -a, a))
    k, inv_k = _smu1_scale(a, mu_safe)
    ak = a * k
    mk = mu_safe * k
    rk = tl.sqrt(tl.math.fma(ak, ak, mk * mk))
    # mu (mu / d) rather than mu^2 / d: the same number, without overflow for a huge mu.
    gap = (mk * (mk * recip(2.0 * (rk + a_abs * k)))) * inv_k
    ax = alpha * x
    base = tl.where(at_most_one, tl.where(right_side, x, ax), tl.where(right_side, ax, x))
    return base + gap


@triton.jit
def smu1_backward(x, mu, p1, alpha):
    """dy/dx = ((1+a) + (1-a) A / r) / 2, A = (1-a) x (inf clamped); dy/dmu = sign(mu) |mu| / (2 r), 0 where
    |mu| sits on its floor. A / r and |mu| / r are ratios, the same in scaled units."""
    mu_safe = _smu1_mu_safe(mu)
    a = finite((1.0 - alpha) * x)
    k, _ = _smu1_scale(a, mu_safe)
    ak = a * k
    mk = mu_safe * k
    inv_rk = tl.math.rsqrt(tl.math.fma(ak, ak, mk * mk))
    dx = 0.5 * (1.0 + alpha) + (0.5 * (1.0 - alpha)) * (ak * inv_rk)
    scale = tl.where(tl.abs(mu) >= SMU1_MU_FLOOR, tl.where(mu > 0.0, 0.5, -0.5), 0.0)
    dmu = (mk * inv_rk) * scale
    return dx, dmu, tl.zeros_like(x)


# ----------------------------------------------------------------------------- PFLU family


@triton.jit
def _pflu_parts(x):
    """The pieces of the PFLU gate g(x) = (1 + x / sqrt(1 + x^2)) / 2, as in the plain math: ``(g(|x|),
    g(-|x|), r, t)`` with r = 1 / sqrt(1 + x^2) and t = |x| r. |x| is clamped at 1e8 for the rsqrt (t is
    1 there already, and 1 + x^2 = x^2 to the last bit) and r = 1 / |x| beyond. g(|x|) = (1 + t) / 2 and
    g(-|x|) = r^2 / (2 (1 + t)): no cancellation, no overflow, one rsqrt and one division by 1 + t."""
    ax = tl.abs(x)
    beyond = ax > GATE_SATURATION
    xc = tl.where(beyond, GATE_SATURATION, ax)
    rc = tl.math.rsqrt(tl.math.fma(xc, xc, 1.0))
    t = xc * rc
    r = tl.where(beyond, recip(ax), rc)
    positive = tl.math.fma(0.5, t, 0.5)
    negative = (0.5 * r * r) * recip(1.0 + t)
    return positive, negative, r, t


@triton.jit
def _pflu_gate(x):
    positive, negative, _, _ = _pflu_parts(x)
    return tl.where(x >= 0.0, positive, negative)


@triton.jit
def _pflu_slope(x):
    """PFLU'(x) = g(x) + sign(x) t r^2 / 2 (every factor bounded)."""
    positive, negative, r, t = _pflu_parts(x)
    right = x >= 0.0
    return tl.where(right, positive, negative) + (0.5 * tl.where(right, t, -t)) * (r * r)


@triton.jit
def pflu_forward(x, p0, p1, c0):
    """PFLU: ``x g(x)``."""
    return x * _pflu_gate(x)


@triton.jit
def pflu_backward(x, p0, p1, c0):
    zero = tl.zeros_like(x)
    return _pflu_slope(x), zero, zero


@triton.jit
def lpflu_forward(x, slope, p1, c0):
    """LPFLU: ``x ((1 - a) g(x) + a)``."""
    return x * ((1.0 - slope) * _pflu_gate(x) + slope)


@triton.jit
def lpflu_backward(x, slope, p1, c0):
    """dy/dx = (1 - a) PFLU'(x) + a; dy/da = x (1 - g(x)) = x g(-x)."""
    positive, negative, r, t = _pflu_parts(x)
    right = x >= 0.0
    gate = tl.where(right, positive, negative)
    dx = (1.0 - slope) * (gate + (0.5 * tl.where(right, t, -t)) * (r * r)) + slope
    gate_of_minus = tl.where(-x >= 0.0, positive, negative)
    return dx, x * gate_of_minus, tl.zeros_like(x)


@triton.jit
def fpflu_forward(x, p0, p1, c0):
    """FPFLU: x for x >= 0, ``x / (1 + x^2)`` below."""
    return tl.where(x >= 0.0, x, x * recip(1.0 + x * x))


@triton.jit
def fpflu_backward(x, p0, p1, c0):
    """1 for x >= 0, ``(1 - x^2) / (1 + x^2)^2 = ((1 - x) w) ((1 + x) w)``, w = 1 / (1 + x^2), below: both
    factors bounded (no overflow for large |x|) and 1 +- x exact near x = -1 (no cancellation)."""
    xf = finite(x)
    w = recip(1.0 + xf * xf)
    slope = ((1.0 - xf) * w) * ((1.0 + xf) * w)
    zero = tl.zeros_like(x)
    return tl.where(x >= 0.0, 1.0, slope), zero, zero


# ----------------------------------------------------------------------------- Gish


@triton.jit
def gish_forward(x, p0, p1, c0):
    """Gish: ``x log1p(-expm1(-exp(min(x, 20))))`` (= x ln(2 - exp(-exp(x)))).

    The two exponentials are the GPU's ``tl.exp`` (see :func:`fast_exp_error`): y = x e^x (1 + O(e^x))
    for x -> -inf takes e's relative error, under the float32 tolerance (4e-6) for x > -25, below
    which |y| < 4e-10; exp(-e) enters through expm1 only where e >= ln 2, as b - 1 with b <= 1/2,
    whose absolute error b fast_exp_error(e) is at most 3e-7 (against log1p(-m) >= ln 1.5).
    """
    e = tl.exp(tl.where(x > GISH_SATURATION, GISH_SATURATION, x))
    return x * log1p(-expm1_from(-e, tl.exp(-e)))


@triton.jit
def gish_backward(x, p0, p1, c0):
    """``L + x e^x e^(-e^x) / (2 - e^(-e^x))``, L = ln(2 - e^(-e^x)), exp's argument clamped at 20, x's
    inf clamped. ``e^x e^(-e^x)`` is formed first (it is 0 past the clamp), so that the term is exactly
    0 there even for the largest x (the slope is ln 2, never inf * 0)."""
    xf = finite(x)
    e = tl.exp(tl.where(xf > GISH_SATURATION, GISH_SATURATION, xf))
    # The second term carries both exps' errors, fast_exp_error(x) + fast_exp_error(e); it is most of dx
    # only as x -> -inf (e -> 0), where that stays under the float32 tolerance for x > -25.
    b = tl.exp(-e)
    m = expm1_from(-e, b)
    zero = tl.zeros_like(x)
    return log1p(-m) + xf * (e * b) * recip(1.0 - m), zero, zero


# ----------------------------------------------------------------------------- SReLU


@triton.jit
def srelu_forward(x, alpha, beta, c0):
    """SReLU: ``alpha x`` for x > 0, ``beta expm1(x)`` for x <= 0. expm1 takes its series below ln 2 in
    size and e^x - 1 (with e^x <= 1/2) beyond, so the GPU's ``tl.exp`` is exact enough there."""
    right = x > 0.0
    left = tl.where(right, 0.0, x)
    return tl.where(right, alpha * x, beta * expm1_from(left, tl.exp(left)))


@triton.jit
def srelu_backward(x, alpha, beta, c0):
    """dy/dx = alpha (x > 0) or beta e^x; dy/dalpha = x [x > 0]; dy/dbeta = expm1(x) [x <= 0]. e^x is the
    GPU's ``tl.exp`` (:func:`fast_exp_error`: under the float32 tolerance for x > -25, and beta e^x <
    2e-11 |beta| below)."""
    right = x > 0.0
    left = tl.where(right, 0.0, x)
    ex = tl.exp(left)
    dx = tl.where(right, alpha, beta * ex)
    d_alpha = tl.where(right, x, 0.0)
    d_beta = tl.where(right, 0.0, expm1_from(left, ex))
    return dx, d_alpha, d_beta
