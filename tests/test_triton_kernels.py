"""The Triton kernels (actplug.kernels.cuda.triton) against the float64 plain math.

Without a GPU they run on CPU tensors under the Triton interpreter (conftest sets TRITON_INTERPRET=1),
which runs Python per program: tensors stay small and tests pass a small block size, so that tails and
several programs are still exercised.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
import triton
import triton.language as tl

import actplug
from actplug import kernels
from actplug.functional import reference as F

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# tests/conftest.py sets TRITON_INTERPRET=1 without a GPU, before anything imports triton
assert DEVICE == "cuda" or os.environ.get("TRITON_INTERPRET") == "1", "run the tests with TRITON_INTERPRET=1"

import actplug.kernels.cuda.triton as tk  # noqa: E402
from actplug.kernels.cuda.triton import _ash, _elementwise  # noqa: E402
from actplug.kernels.cuda.triton import _math as M  # noqa: E402

# The interpreter computes with numpy, which warns about the inf and NaN that the special-value tests
# feed in on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")

BLOCK = 128
# Error bound of the device helpers: numpy under the interpreter; a GPU's approximate ex2 and division
# add an ulp or two.
HELPER_ULPS = 4 if DEVICE == "cpu" else 8
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# (rtol, atol) of a value stored in the dtype; float32 results are within a few ulps, except near the
# zeros of a difference (e.g. a derivative's zero), which the absolute tolerance covers.
TOL = {torch.float32: (4e-6, 2e-6), torch.bfloat16: (8e-3, 1e-5), torch.float16: (1e-3, 1e-5)}
# of a float32 parameter gradient, relative to the sum of |terms|; SMU's dmu term has a factor exp(-u^2)
# with |u| up to 6, whose relative error in float32 is up to u^2 (36) times float32's.
SUM_RTOL = 2e-6
SUM_RTOL_SMU = 1e-5
INF, NAN = math.inf, math.nan
SPECIALS = (0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30, INF, -INF, NAN)
F32_MU_FLOOR = 2.0**-61  # SMU-1's |mu| floor in float32 (4 sqrt(tiny))

# name -> (params, consts) of a typical call
CASES = {
    "smu": ((1e6,), (0.25,)),
    "smu1": ((4.352665993287951e-09,), (0.25,)),
    "pflu": ((), ()),
    "lpflu": ((0.01,), ()),
    "fpflu": ((), ()),
    "gish": ((), ()),
    "srelu": ((1.0, 0.1), ()),
}
# parameters that give every gradient some weight
LIVELY = {"smu": ((2.5,), (0.01,)), "smu1": ((0.3,), (0.25,)), "lpflu": ((0.2,), ()), "srelu": ((1.3, 0.4), ())}


# name -> (forward(x, *params, *consts), backward(x, grad, *params, *consts)) of the plain math
# (actplug.functional.reference), in the kernels' argument order, every parameter's gradient wanted
PLAIN = {
    "smu": (lambda x, mu, a: F.smu(x, a, mu), lambda x, g, mu, a: F.smu_backward(x, g, a, mu, needs=("mu",))),
    "smu1": (lambda x, mu, a: F.smu1(x, a, mu), lambda x, g, mu, a: F.smu1_backward(x, g, a, mu, needs=("mu",))),
    "pflu": (F.pflu, F.pflu_backward),
    "lpflu": (F.lpflu, lambda x, g, a: F.lpflu_backward(x, g, a, needs=("negative_slope",))),
    "fpflu": (F.fpflu, F.fpflu_backward),
    "gish": (F.gish, F.gish_backward),
    "srelu": (F.srelu, lambda x, g, a, b: F.srelu_backward(x, g, a, b, needs=("alpha", "beta"))),
}


def _plain_backward(name, *args):
    """The plain backward of ``name`` as ``(dx, *parameter gradients)``, in the kernel's parameter order."""
    found = PLAIN[name][1](*args)
    if isinstance(found, torch.Tensor):
        return (found,)
    dx, grads = found
    return (dx, *(grads[p] for p in tk.ACTIVATIONS[name].params))


def _params(values):
    return tuple(torch.tensor(float(v), dtype=torch.float32, device=DEVICE) for v in values)


def _reference(name, x, g, params, consts):
    """float64 plain math: y, dx and the per-element terms of every parameter gradient."""
    forward = PLAIN[name][0]
    # on the CPU: CUDA's float64 hypot overflows where the CPU's does not (SMU-1 at +-inf)
    x64, g64 = x.double().cpu(), g.double().cpu()
    p64 = tuple(torch.as_tensor(p, dtype=torch.float64) for p in params)
    y = forward(x64, *p64, *consts)
    # each parameter expanded to x's shape: the plain backward then returns its per-element terms
    expanded = tuple(p.expand_as(x64).clone() for p in p64)
    dx, *terms = _plain_backward(name, x64, g64, *expanded, *consts)
    return y, dx, terms


def _close(actual, expected, rtol, atol, what):
    """NaN where expected, the same infinities, and |actual - expected| <= atol + rtol |expected| elsewhere."""
    a, e = actual.double().cpu(), expected.double().cpu()
    assert torch.equal(a.isnan(), e.isnan()), f"{what}: NaN pattern differs\n{a}\n{e}"
    inf = e.isinf()
    assert torch.equal(a[inf], e[inf]), f"{what}: infinities differ"
    fin = e.isfinite()
    err = (a[fin] - e[fin]).abs()
    bound = atol + rtol * e[fin].abs()
    if err.numel():
        worst = int((err - bound).argmax())
        assert bool((err <= bound).all()), (
            f"{what}: |{a[fin][worst].item()!r} - {e[fin][worst].item()!r}| > {bound[worst].item():.3g}"
        )


def _close_sum(actual, terms, what, rtol=SUM_RTOL):
    assert actual is not None and actual.dtype == torch.float32 and actual.shape == (), what
    expected = terms.sum()
    if not expected.isfinite():
        _close(actual, expected, 0.0, 0.0, what)
        return
    bound = rtol * terms.abs().sum().item() + 1e-30
    assert abs(actual.item() - expected.item()) <= bound, f"{what}: {actual.item()!r} vs {expected.item()!r}"


def _check_elementwise(name, x, g, params, consts, dtype, what=""):
    p = _params(params)
    y = tk.elementwise_forward(name, x, p, consts, block_size=BLOCK)
    dx, *grads = tk.elementwise_backward(name, x, g, p, consts, (True,) * len(p), block_size=BLOCK)
    assert y.dtype == dx.dtype == dtype and y.shape == dx.shape == x.shape
    ry, rdx, terms = _reference(name, x, g, params, consts)
    rtol, atol = TOL[dtype]
    _close(y, ry, rtol, atol, f"{name} {dtype} y {what}")
    _close(dx, rdx, rtol, atol, f"{name} {dtype} dx {what}")
    for i, (grad, term) in enumerate(zip(grads, terms, strict=True)):
        _close_sum(grad, term, f"{name} {dtype} dparam{i} {what}", SUM_RTOL_SMU if name == "smu" else SUM_RTOL)
    return y, dx, grads


# ----------------------------------------------------------------------------- device helpers


@triton.jit
def _unary_kernel(x_ptr, y_ptr, n, FN: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(y_ptr + offs, FN(tl.load(x_ptr + offs, mask=mask, other=0.0)), mask=mask)


@triton.jit
def _binary_kernel(a_ptr, b_ptr, y_ptr, n, FN: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    a = tl.load(a_ptr + offs, mask=mask, other=0.0)
    b = tl.load(b_ptr + offs, mask=mask, other=0.0)
    tl.store(y_ptr + offs, FN(a, b), mask=mask)


@triton.jit
def _sigmoid(v):
    s, _ = M.sigmoid_pair(v)
    return s


@triton.jit
def _one_minus_sigmoid(v):
    _, sc = M.sigmoid_pair(v)
    return sc


@triton.jit
def _expm1_fast(x):
    """expm1 as the kernels use it: the series near 0, the GPU's tl.exp(x) - 1 for x <= -ln 2."""
    return M.expm1_from(x, tl.exp(x))


def _run(fn, *args):
    args = tuple(a.to(DEVICE) for a in args)
    y = torch.empty_like(args[0])
    kernel = _unary_kernel if len(args) == 1 else _binary_kernel
    kernel[(triton.cdiv(y.numel(), 1024),)](*args, y, y.numel(), FN=fn, BLOCK=1024)
    return y.cpu()


def _error(actual, expected):
    """|actual - expected|, where a subnormal result flushed to 0 counts as exact: a GPU's exp2 flushes
    them (sigmoid(-90) is 8e-40)."""
    error = (actual.double() - expected).abs()
    return torch.where((expected.abs() < torch.finfo(torch.float32).tiny) & (actual == 0), 0.0, error)


def _ulps(actual, expected):
    """|actual - expected| in float32 ulps of expected (normal range; see _error for subnormals)."""
    scale = expected.abs().clamp_min(torch.finfo(torch.float32).tiny)
    return _error(actual, expected) / torch.exp2(torch.floor(torch.log2(scale)) - 23)


def _sweep(lo, hi, n=4000):
    magnitudes = torch.logspace(lo, hi, n, dtype=torch.float64)
    return torch.cat([magnitudes, -magnitudes]).float()


@pytest.mark.parametrize(
    ("fn", "reference", "x"),
    [
        (M.exp, torch.exp, torch.cat([torch.linspace(-87, 88.72, 8001), _sweep(-30, 0)])),
        (_expm1_fast, torch.expm1, -_sweep(-30, 1.9)[:4000]),
        (M.log1p, torch.log1p, torch.cat([_sweep(-30, 0)[:4000], _sweep(-30, 30)[:4000], -_sweep(-30, -0.31)[:4000]])),
        (_sigmoid, torch.sigmoid, torch.linspace(-90, 90, 8001)),
        (_one_minus_sigmoid, lambda t: torch.sigmoid(-t), torch.linspace(-90, 90, 8001)),
    ],
    ids=["exp", "expm1", "log1p", "sigmoid", "1-sigmoid"],
)
def test_helpers_are_accurate_to_a_few_ulps(fn, reference, x):
    x = x[x > -1] if reference is torch.log1p else x
    assert _ulps(_run(fn, x), reference(x.double())).max() <= HELPER_ULPS


@triton.jit
def _fast_exp(x):
    return tl.exp(x)


def test_fast_exp_stays_within_its_documented_bound():
    """tl.exp is used where M.fast_exp_error's bound suffices (SReLU, Gish): on a GPU this checks the bound
    against the hardware's ex2.approx (a result below float32's smallest normal may flush to 0)."""
    x = torch.cat([torch.linspace(-87, 88.7, 20001), _sweep(-30, 1.9)])
    expected = torch.exp(x.double())
    error = _error(_run(_fast_exp, x), expected) / expected
    bound = torch.tensor([M.fast_exp_error(v) for v in x.tolist()], dtype=torch.float64)
    assert bool((error <= bound).all()), f"worst at x = {x[int((error - bound).argmax())].item()}"


def test_helpers_keep_special_values():
    x = torch.tensor([-INF, INF, NAN, 0.0, -0.0, -1.0])
    ex = _run(M.exp, torch.tensor([-INF, INF, NAN, -104.0, 89.0, -1e30, 1e30]))
    assert torch.equal(ex[[0, 1, 3, 4, 5, 6]], torch.tensor([0.0, INF, 0.0, INF, 0.0, INF])) and ex[2].isnan()
    e = _run(_expm1_fast, x)
    assert torch.equal(e[:2], torch.tensor([-1.0, INF])) and e[2].isnan()
    assert torch.equal(e[3:5], x[3:5]) and torch.equal(e[3:5].signbit(), x[3:5].signbit())
    lg = _run(M.log1p, x)
    assert lg[0].isnan() and lg[1] == INF and lg[2].isnan() and lg[3] == 0.0 and lg[5] == -INF


# ----------------------------------------------------------------------------- elementwise


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_elementwise_matches_float64_math(name, dtype):
    gen = torch.Generator().manual_seed(2)
    for values in (CASES[name], LIVELY.get(name, CASES[name])):
        params, consts = values
        for n in (1, 3 * BLOCK + 45):  # one element; a tail after three full blocks
            x = (torch.randn(n, generator=gen) * 4).to(dtype).to(DEVICE)
            g = torch.randn(n, generator=gen).to(dtype).to(DEVICE)
            _check_elementwise(name, x, g, params, consts, dtype, f"n={n} params={params}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_elementwise_empty_input_and_unwanted_gradients(name):
    params, consts = CASES[name]
    p = _params(params)
    x = torch.empty(0, device=DEVICE)
    assert tk.elementwise_forward(name, x, p, consts).shape == (0,)
    dx, *grads = tk.elementwise_backward(name, x, x, p, consts, (True,) * len(p))
    assert dx.shape == (0,) and all(gr.shape == () and gr.item() == 0.0 for gr in grads)
    x = torch.randn(2 * BLOCK + 3, device=DEVICE)
    dx_all, *_ = tk.elementwise_backward(name, x, x, p, consts, (True,) * len(p), block_size=BLOCK)
    dx, *grads = tk.elementwise_backward(name, x, x, p, consts, (False,) * len(p), block_size=BLOCK)
    assert grads == [None] * len(p)
    assert torch.equal(dx, dx_all)


def _specials(dtype):
    return torch.tensor(SPECIALS).to(dtype).to(DEVICE)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ["smu", "smu1", "pflu", "lpflu", "fpflu", "srelu"])
def test_elementwise_special_values(name, dtype):
    x = _specials(dtype)
    g = torch.ones_like(x)
    for params, consts in (CASES[name], LIVELY.get(name, CASES[name])):
        y, dx, _ = _check_elementwise(name, x, g, params, consts, dtype, "specials")
        finite = x.isfinite()
        assert y[finite].isfinite().all() and dx[finite].isfinite().all()
        # parameter gradients of the finite inputs alone are finite too
        _, *grads = tk.elementwise_backward(name, x[finite], g[finite], _params(params), consts, (True,) * len(params))
        assert all(gr.isfinite() for gr in grads)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gish_special_values(dtype):
    """As the plain math, except gish'(x) for huge x: the plain float32 formula forms x e^x first, which
    overflows (then times 0: NaN) from x ~ 7e29 on, and at +inf in float64; the kernel gives the limit
    ln 2, the value its docstring promises."""
    x = _specials(dtype)
    g = torch.ones_like(x)
    y = tk.elementwise_forward("gish", x, (), (), block_size=BLOCK)
    (dx,) = tk.elementwise_backward("gish", x, g, (), (), (), block_size=BLOCK)
    ry, rdx, _ = _reference("gish", x, g, (), ())
    x, y, dx = x.cpu(), y.cpu(), dx.cpu()  # the reference is on the CPU
    rtol, atol = TOL[dtype]
    _close(y, ry, rtol, atol, "gish y")
    plus_inf = x == INF
    _close(dx[~plus_inf], rdx[~plus_inf], rtol, atol, "gish dx")
    _close(dx[plus_inf], torch.full_like(rdx[plus_inf], math.log(2)), rtol, atol, "gish dx(+inf)")
    assert dx[x.isfinite()].isfinite().all()
    big = torch.tensor([7e29, 1e30, 3e38], device=DEVICE)
    (dx_big,) = tk.elementwise_backward("gish", big, torch.ones_like(big), (), (), ())
    _close(dx_big, torch.full((3,), math.log(2), dtype=torch.float64), 1e-6, 0.0, "gish dx(big)")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_smu_huge_and_overflowed_mu(dtype):
    gen = torch.Generator().manual_seed(3)
    x = torch.cat(
        [torch.randn(200, generator=gen) * 1e-6, torch.randn(100, generator=gen), _specials(torch.float32).cpu()]
    )
    x = x.to(dtype).to(DEVICE)
    g = torch.randn(x.shape, generator=gen).to(dtype).to(DEVICE)
    _check_elementwise("smu", x, g, (1e6,), (0.25,), dtype, "mu=1e6")
    overflowed = float(torch.tensor(1e6).half())  # inf: SMU's default mu after .half()
    assert overflowed == INF
    _check_elementwise("smu", x, g, (overflowed,), (0.25,), dtype, "mu=inf")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_smu1_tiny_and_zero_mu(dtype):
    gen = torch.Generator().manual_seed(4)
    x = torch.cat(
        [torch.randn(200, generator=gen) * 1e-8, torch.randn(100, generator=gen), _specials(torch.float32).cpu()]
    )
    x = x.to(dtype).to(DEVICE)
    g = torch.randn(x.shape, generator=gen).to(dtype).to(DEVICE)
    _check_elementwise("smu1", x, g, (4.352665993287951e-09,), (0.25,), dtype, "mu=4.35e-9")
    # mu = 0 (the default mu after .half()) sits on float32's floor 2**-61: the float64 math with mu at
    # that floor gives the same values and dx; mu's gradient is 0 there (the floor's gradient).
    p = _params((0.0,))
    y = tk.elementwise_forward("smu1", x, p, (0.25,), block_size=BLOCK)
    dx, dmu = tk.elementwise_backward("smu1", x, g, p, (0.25,), (True,), block_size=BLOCK)
    ry, rdx, _ = _reference("smu1", x, g, (F32_MU_FLOOR,), (0.25,))
    rtol, atol = TOL[dtype]
    _close(y, ry, rtol, atol, "smu1 mu=0 y")
    _close(dx, rdx, rtol, atol, "smu1 mu=0 dx")
    assert dmu.isnan()  # the NaN input
    _, dmu = tk.elementwise_backward("smu1", x[:300], g[:300], p, (0.25,), (True,), block_size=BLOCK)
    assert dmu.item() == 0.0
    at_zero = x == 0
    assert torch.equal(dx[at_zero], (g[at_zero].float() * 0.625).to(dtype))  # the slope (1 + alpha) / 2 at 0


def test_int64_offsets(monkeypatch):
    """The int64 path (numel near 2**31) computes the same as the int32 one."""
    x = torch.randn(BLOCK + 7, device=DEVICE)
    x2d = torch.randn(3, 70, device=DEVICE)
    z, alpha = _params((0.3, 0.9))
    expected = (
        tk.elementwise_forward("smu", x, _params((2.0,)), (0.25,), block_size=BLOCK),
        tk.elementwise_backward("srelu", x, x, _params((1.0, 0.1)), (), (True, True), block_size=BLOCK),
        tk.ash_forward(x2d, z, alpha, 0.0, block_size=32),
    )
    monkeypatch.setattr(_elementwise, "needs_int64", lambda numel, block: True)
    monkeypatch.setattr(_ash, "needs_int64", lambda numel, block: True)
    actual = (
        tk.elementwise_forward("smu", x, _params((2.0,)), (0.25,), block_size=BLOCK),
        tk.elementwise_backward("srelu", x, x, _params((1.0, 0.1)), (), (True, True), block_size=BLOCK),
        tk.ash_forward(x2d, z, alpha, 0.0, block_size=32),
    )
    for a, e in zip(actual, expected, strict=True):
        for ta, te in zip(a if isinstance(a, tuple) else (a,), e if isinstance(e, tuple) else (e,), strict=True):
            assert torch.equal(ta, te)


def test_rejects_bad_calls():
    x = torch.randn(8, device=DEVICE)
    with pytest.raises(ValueError, match="no Triton kernel"):
        tk.elementwise_forward("relu", x, (), ())
    with pytest.raises(ValueError, match="parameter"):
        tk.elementwise_forward("smu", x, (), (0.25,))
    with pytest.raises(TypeError, match="float32"):
        tk.elementwise_forward("pflu", x.double(), (), ())
    with pytest.raises(ValueError, match="power of two"):
        tk.elementwise_forward("pflu", x, (), (), block_size=100)


# ----------------------------------------------------------------------------- ASH


def _ash_reference(x, g, z, alpha, eps):
    """float64 statistics (variance floored at float32's tiny, as the kernels' float32 compute) and the
    float64 plain math of ASH and its gradients, with per-element terms of dz and dalpha (on the CPU, as
    :func:`_reference`)."""
    x64, g64 = x.double().cpu(), g.double().cpu()
    var, mean = torch.var_mean(x64, 1, correction=0, keepdim=True)
    std = torch.sqrt((var + eps).clamp_min(torch.finfo(torch.float32).tiny))
    z64 = torch.full_like(x64, z)
    a64 = torch.full_like(x64, alpha)
    y = F.ash_apply(x64, mean, std, z64, a64)
    dx, dz, da = F.ash_backward(x64, g64, mean, std, z64, a64, 1, True, True)
    return y, mean, std, dx, dz, da


# (rows, cols, eps, block): cols not a multiple of the block, a single element, two chunks of a row
ASH_SHAPES = [(3, 300, 0.0, 128), (2, 777, 0.0, 128), (2, 5, 1e-3, 32), (1, 1, 0.0, 32), (4, 64, 0.5, 32)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("rows", "cols", "eps", "block"), ASH_SHAPES)
def test_ash_matches_float64_math(rows, cols, eps, block, dtype):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(rows, cols, generator=gen) * 2 + 0.5
    if rows > 1:
        x[1] = 0.1  # a constant row: variance 0, std on its floor
    x = x.to(dtype).to(DEVICE)
    g = torch.randn(rows, cols, generator=gen).to(dtype).to(DEVICE)
    rtol, atol = TOL[dtype]
    for z, alpha in ((0.7, 1.3), (-1.2, 0.4)):
        zt, at = _params((z, alpha))
        y, mean, std = tk.ash_forward(x, zt, at, eps, block_size=block)
        assert y.dtype == dtype and y.shape == x.shape
        assert mean.shape == std.shape == (rows, 1) and mean.dtype == std.dtype == torch.float32
        dx, dz, da = tk.ash_backward(x, g, mean, std, zt, at, (True, True), block_size=block)
        ry, rmean, rstd, rdx, rdz, rda = _ash_reference(x, g, z, alpha, eps)
        what = f"{rows}x{cols} eps={eps} z={z} alpha={alpha}"
        _close(mean, rmean, 2e-6, 2e-6, f"ash mean {what}")
        _close(std, rstd, 4e-6, 0.0, f"ash std {what}")
        _close(y, ry, rtol, atol, f"ash y {what}")
        _close(dx, rdx, rtol, 4 * atol, f"ash dx {what}")
        _close_sum(dz, rdz, f"ash dz {what}")
        _close_sum(da, rda, f"ash dalpha {what}")
    dx_only, none_z, none_a = tk.ash_backward(x, g, mean, std, zt, at, (False, False), block_size=block)
    assert none_z is None and none_a is None and torch.equal(dx_only, dx)
    # the default block (the row length rounded up to a power of two) gives the same results
    y_default, *_ = tk.ash_forward(x, zt, at, eps)
    _close(y_default, ry, rtol, atol, f"ash y default block {rows}x{cols}")


def test_ash_row_kernels_take_the_chunks_a_tile_at_a_time(monkeypatch):
    """A row of more chunks than its combining kernel loads at once (1024) loops over tiles: 25 chunks, 4 a
    time, the last tile partial."""
    monkeypatch.setattr(_ash, "_MAX_TILE", 4)
    test_ash_matches_float64_math(2, 777, 1e-3, 32, torch.float32)


def test_ash_constant_rows_and_special_values():
    x = torch.tensor([[0.1] * 70, [3.0] * 35 + [-3.0] * 35, [1.0] * 69 + [INF], [2.0] * 69 + [NAN]], device=DEVICE)
    z, alpha = _params((0.5, 1.5))
    y, mean, std = tk.ash_forward(x, z, alpha, 0.0, block_size=32)
    assert mean[0].item() == torch.tensor(0.1).item() and std[0].item() == 2.0**-63  # exact
    assert mean[1].item() == 0.0 and std[1].item() == 3.0
    # The plain math on the CPU: CUDA's var_mean gives a NaN mean for the row holding inf (CPU's: inf).
    xc, zc, ac = x.cpu(), z.cpu(), alpha.cpu()
    ref_mean, ref_std = F.ash_stats(xc, 1)
    _close(mean, ref_mean, 0.0, 1e-6, "mean")
    _close(std, ref_std, 1e-6, 0.0, "std")
    _close(y, F.ash_apply(xc, ref_mean, ref_std, zc, ac), 1e-6, 1e-7, "y")
    g = torch.ones_like(x)
    dx, dz, da = tk.ash_backward(x, g, mean, std, z, alpha, (True, True), block_size=32)
    rdx, *_ = F.ash_backward(xc, g.cpu(), ref_mean, ref_std, zc, ac, 1, True, True)
    _close(dx, rdx, 1e-5, 1e-6, "dx")
    assert dx[:2].isfinite().all() and dz.isnan() and da.isnan()


def test_ash_empty():
    z, alpha = _params((0.0, 1.0))
    for shape in ((0, 5), (3, 0)):
        x = torch.empty(shape, device=DEVICE)
        y, mean, std = tk.ash_forward(x, z, alpha, 0.0)
        assert y.shape == shape and mean.shape == std.shape == (shape[0], 1)
        dx, dz, da = tk.ash_backward(x, x, mean, std, z, alpha, (True, True))
        assert dx.shape == shape and dz.item() == 0.0 and da.item() == 0.0


# ----------------------------------------------------------------------------- end to end


def _path(kind):
    return kernels.use(cpu=kind) if DEVICE == "cpu" else kernels.use(cuda=kind)


def _run_module(module, x, g, seed):
    x = x.detach().clone().requires_grad_(True)
    for p in module.parameters():
        p.grad = None
    torch.manual_seed(seed)  # LPFLU draws its slope in training
    y = module(x)
    y.backward(g)
    return y.detach(), x.grad, [p.grad.clone() for p in module.parameters()]


def _inputs():
    gen = torch.Generator().manual_seed(6)
    base = torch.randn(2, 3, 5, 6, generator=gen) * 2
    return {
        "contiguous": base,
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "sliced": torch.randn(2, 3, 5, 12, generator=gen)[..., ::2],
    }


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
@pytest.mark.parametrize("name", ["ash", "fpflu", "gish", "lpflu", "pflu", "smu", "smu1", "srelu"])
def test_modules_take_the_triton_path(name, layout, monkeypatch):
    calls = []
    for fn in ("elementwise_forward", "elementwise_backward", "ash_forward", "ash_backward"):
        original = getattr(tk, fn)

        def spy(*args, _original=original, _fn=fn, **kwargs):
            calls.append(_fn)
            return _original(*args, **kwargs)

        monkeypatch.setattr(tk, fn, spy)
    kwargs = {"srelu": {"trainable": True, "alpha": 1.2, "beta": 0.3}, "smu": {"mu": 2.5}, "smu1": {"mu": 0.3}}
    kwargs["ash"] = {"z": 0.4, "alpha": 1.5}
    module = actplug.create(name, **kwargs.get(name, {})).to(DEVICE)
    x = _inputs()[layout].to(DEVICE)
    g = torch.randn(x.shape).to(DEVICE)
    with _path("eager"):
        expected = _run_module(module, x, g, seed=7)
    assert not calls
    with _path("triton"):
        actual = _run_module(module, x, g, seed=7)
    kind = "ash" if name == "ash" else "elementwise"
    assert calls == [f"{kind}_forward", f"{kind}_backward"]
    y, dx, grads = actual
    ey, edx, egrads = expected
    assert y.shape == ey.shape and dx.shape == x.shape
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)
    _close(y, ey, 1e-5, 1e-6, f"{name} y")
    _close(dx, edx, 1e-5, 1e-6, f"{name} dx")
    assert len(grads) == len(egrads)
    for a, e in zip(grads, egrads, strict=True):
        _close(a, e, 1e-4, 1e-5, f"{name} param grad")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_modules_take_the_triton_path(dtype):
    x = (torch.randn(4, 40) * 2).to(dtype).to(DEVICE)
    g = torch.randn(4, 40).to(dtype).to(DEVICE)
    for name in ("smu", "ash"):
        module = actplug.create(name).to(DEVICE).to(dtype)
        with _path("eager"):
            ey, edx, egrads = _run_module(module, x, g, seed=0)
        with _path("triton"):
            y, dx, grads = _run_module(module, x, g, seed=0)
        assert y.dtype == dx.dtype == dtype
        rtol = TOL[dtype][0]
        _close(y, ey, 2 * rtol, 1e-5, f"{name} {dtype} y")
        _close(dx, edx, 2 * rtol, 1e-3, f"{name} {dtype} dx")
        for a, e in zip(grads, egrads, strict=True):
            _close(a, e, 2 * rtol, 1e-3, f"{name} {dtype} param grad")
