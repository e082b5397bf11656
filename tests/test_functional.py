"""Correctness of the plain math (actplug.functional.reference) against the float64 references of
tests/references.py (the lean functions users call, actplug.functional, are held to it in test_kernels.py).

Covers, for every built-in activation: values and gradients (input and parameters) in float64 and
float32, gradcheck/gradgradcheck, the papers' identities, float16/bfloat16, NaN/inf, odd shapes and
layouts, and input validation.
"""

from __future__ import annotations

import math

import pytest
import references as R
import torch
import torch.nn.functional as TF
from torch.autograd import gradcheck, gradgradcheck

import actplug
import actplug.functional as F
from actplug.functional import reference as plain

FUNCTIONAL_PARAMS = [
    pytest.param(name, params, id=f"{name}[{R.case_id(params)}]")
    for name in R.NAMES
    for params in R.FUNCTIONAL_CASES[name]
]
FLOATS = [pytest.param(torch.float64, id="f64"), pytest.param(torch.float32, id="f32")]
HALVES = [pytest.param(torch.float16, id="f16"), pytest.param(torch.bfloat16, id="bf16")]


def fn(name):
    """The plain math of activation ``name``."""
    return getattr(plain, name)


def tensor_params(name: str, params: dict, dtype, *, like: torch.Tensor | None = None) -> dict:
    """``params`` with the trainable ones as leaf tensors requiring grad (scalars, or shaped like ``like``)."""
    out = dict(params)
    for key in R.TENSOR_PARAMS[name]:
        value = torch.tensor(float(params[key]), dtype=dtype)
        if like is not None:
            value = value.expand(like.shape).clone()
        out[key] = value.requires_grad_()
    return out


def test_every_builtin_activation_has_a_reference(registered_names):
    assert set(R.NAMES) <= set(registered_names)
    for name in registered_names:
        info = actplug.info(name)
        if info.plugin == "builtin":
            assert name in R.REFERENCES, f"built-in activation {name!r} has no reference in tests/references.py"
    for name in R.NAMES:
        assert actplug.info(name).functional is getattr(F, name)  # the lean function users call
        assert callable(fn(name))


# --------------------------------------------------------------------------------------------------
# Values and gradients against the references.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("name", "params"), FUNCTIONAL_PARAMS)
def test_values_match_reference(name, params, dtype):
    x = R.special_input((12,), dtype)
    out = fn(name)(x, **params)
    assert out.dtype == dtype and out.shape == x.shape
    expected = R.REFERENCES[name](x.to(torch.float64), **params)
    rtol, atol = R.value_tolerance(name, x, params, dtype)
    R.assert_close_tol(out, expected, rtol, atol, f"{name} {dtype}")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("name", "params"), FUNCTIONAL_PARAMS)
def test_input_gradient_matches_reference(name, params, dtype):
    x = R.special_input((12,), dtype).requires_grad_()
    w = torch.randn(x.shape, dtype=torch.float64)
    (fn(name)(x, **params) * w.to(dtype)).sum().backward()
    assert x.grad.dtype == dtype

    x64 = x.detach().to(torch.float64).requires_grad_()
    (R.REFERENCES[name](x64, **params) * w).sum().backward()
    expected = x64.grad
    finite = expected.isfinite()
    if name == "gish":  # the naive formula's gradient is 0 * inf for x >= ~710; see test_gradient_far_from_zero
        assert bool(finite[x64.detach() < 700].all())
    else:
        assert bool(finite.all())
    assert x.grad.isfinite().all()
    if dtype == torch.float64:
        rtol, atol = 1e-8, 1e-12
    else:
        rtol, atol = 1e-5, 1e-6
    if name == "ash":  # each gradient sums over its sample: allow for rounding relative to the sample's largest
        atol = atol * (expected.abs().amax(dim=1, keepdim=True) + 1)
    R.assert_close_tol(x.grad[finite], expected[finite], rtol, atol if name != "ash" else atol.expand_as(x)[finite])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("name", "params"), [p for p in FUNCTIONAL_PARAMS if R.TENSOR_PARAMS[p.values[0]]])
def test_parameter_gradients_match_reference(name, params, dtype):
    x = R.special_input((12,), dtype)
    w = torch.randn(x.shape, dtype=torch.float64)
    p = tensor_params(name, params, dtype)
    (fn(name)(x, **p) * w.to(dtype)).sum().backward()

    # Reference with one copy of each parameter per element: the per-element terms of the gradient,
    # whose sum is the gradient and whose absolute sum bounds its rounding.
    x64 = x.to(torch.float64)
    p64 = tensor_params(name, params, torch.float64, like=x64)
    (R.REFERENCES[name](x64, **p64) * w).sum().backward()
    for key in R.TENSOR_PARAMS[name]:
        got = p[key].grad
        assert got is not None and got.dtype == dtype and got.shape == ()
        terms = p64[key].grad
        assert terms.isfinite().all()
        scale = float(terms.abs().sum())
        if dtype == torch.float64:
            rtol, atol = 1e-9, 1e-11 * scale + 1e-300
        else:
            rtol, atol = 1e-4, 1e-5 * scale + 1e-30
        R.assert_close_tol(got, terms.sum(), rtol, atol, f"d {name} / d {key}")


def test_parameter_gradients_are_not_trivially_zero():
    """The parameter-gradient test above compares non-zero numbers for every parameter."""
    x = torch.linspace(-3, 3, 25, dtype=torch.float64)
    for name in [n for n in R.NAMES if R.TENSOR_PARAMS[n]]:
        smooth = tensor_params(name, R.SMOOTH_CASES[name], torch.float64)
        fn(name)(x.reshape(5, 5), **smooth).pow(2).sum().backward()
        for key in R.TENSOR_PARAMS[name]:
            assert abs(float(smooth[key].grad)) > 1e-3, (name, key)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", R.ELEMENTWISE)
def test_gradient_far_from_zero(name, dtype):
    """Far from 0 every elementwise activation is linear: the slopes of the Leaky ReLU / ReLU it follows."""
    right, left = {
        "smu": (1.0, 0.25),
        "smu1": (1.0, 0.25),
        "lpflu": (1.0, 0.01),
        "pflu": (1.0, 0.0),
        "fpflu": (1.0, 0.0),
        "gish": (math.log(2.0), 0.0),
        "srelu": (1.0, 0.0),
    }[name]
    x = torch.tensor([1e3, 6e4, 3e37, -1e3, -6e4, -3e37], dtype=dtype, requires_grad=True)
    out = fn(name)(x)
    out.sum().backward()
    assert out.isfinite().all() and x.grad.isfinite().all(), (out, x.grad)
    expected = torch.tensor([right] * 3 + [left] * 3, dtype=torch.float64)
    R.assert_close_tol(x.grad, expected, 1e-6, 1e-6, f"{name}'")
    R.assert_close_tol(out[:3], right * x.detach()[:3].double(), 1e-6, 0.0, name)


# --------------------------------------------------------------------------------------------------
# gradcheck / gradgradcheck in float64, inputs and parameters.
# --------------------------------------------------------------------------------------------------

GRADCHECK_SHAPES = {"ash": [(3, 5), (2, 3, 4), (2, 3, 2, 2)]}


def _gradcheck_cases():
    for name in R.NAMES:
        for shape in GRADCHECK_SHAPES.get(name, [(3, 5)]):
            yield pytest.param(name, shape, id=f"{name}-{'x'.join(map(str, shape))}")


@pytest.mark.parametrize(("name", "shape"), list(_gradcheck_cases()))
def test_gradcheck_and_gradgradcheck(name, shape):
    smooth = R.SMOOTH_CASES[name]
    keys = R.TENSOR_PARAMS[name]
    kinked = name in R.KINKED  # keep away from the kink at 0
    x = R.away_from_zero(shape, low=0.1, seed=3) if kinked else torch.randn(shape, dtype=torch.float64) * 2
    x.requires_grad_()
    p = tensor_params(name, smooth, torch.float64)
    fixed = {k: v for k, v in smooth.items() if k not in keys}

    def f(x, *ps):
        return fn(name)(x, **fixed, **dict(zip(keys, ps, strict=True)))

    inputs = (x, *(p[k] for k in keys))
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
    assert gradgradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


# --------------------------------------------------------------------------------------------------
# The papers' identities.
# --------------------------------------------------------------------------------------------------


def _wide(dtype=torch.float64, n=400):
    x = torch.cat([torch.linspace(-8, 8, n, dtype=torch.float64), torch.tensor(R.SPECIAL_VALUES, dtype=torch.float64)])
    return x.to(dtype)


@pytest.mark.parametrize("dtype", FLOATS)
def test_smu_with_alpha_0_and_mu_1_over_sqrt2_is_gelu(dtype):
    x = _wide(dtype).requires_grad_()
    out = plain.smu(x, 0.0, R.SQRT_HALF)
    expected = TF.gelu(x)
    eps = torch.finfo(dtype).eps
    # x (1 + erf(x / sqrt 2)) / 2 rounds at the scale of |x| in the left tail, however it is written
    R.assert_close_tol(out, expected, 4 * eps, 4 * eps * x.detach().abs(), "gelu")
    (g,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(expected.sum(), x)
    R.assert_close_tol(g, g_ref, 4 * eps, 4 * eps * (1 + x.detach().abs()), "gelu'")


def test_smu_tends_to_leaky_relu_as_mu_grows():
    x = _wide()
    far = x.abs() > 1e-3
    leaky = TF.leaky_relu(x, 0.25)
    torch.testing.assert_close(plain.smu(x, 0.25, 1e6)[far], leaky[far], rtol=1e-15, atol=0.0)
    errors = [float((plain.smu(x, 0.25, mu) - leaky).abs().max()) for mu in (1.0, 10.0, 100.0, 1000.0)]
    for mu, err in zip((1.0, 10.0, 100.0, 1000.0), errors, strict=True):
        # |SMU - LeakyReLU| = (1-a)|x| erfc(mu (1-a)|x|) / 2 = u erfc(u) / (2 mu) <= 0.24 / (2 mu)
        assert 0 < err <= 0.121 / mu, (mu, err)
    assert errors == sorted(errors, reverse=True)


@pytest.mark.parametrize("mu", [R.SMU1_MU, 1e-3])
def test_smu1_with_tiny_mu_is_leaky_relu(mu):
    x = _wide()
    gap = plain.smu1(x, 0.25, mu) - TF.leaky_relu(x, 0.25)
    # sqrt(a^2 + mu^2) - |a| lies in [0, mu]: SMU-1 sits above Leaky ReLU by at most mu / 2.
    assert bool((gap >= 0).all())
    assert float(gap.max()) <= mu / 2 * (1 + 1e-12)
    assert float(gap[x == 0]) == pytest.approx(mu / 2, rel=1e-12)


def test_smu1_has_slope_one_plus_alpha_over_two_at_zero():
    """SMU-1 is smooth for mu > 0: its slope at 0 is (1 + alpha) / 2, not either side's slope."""
    for alpha, mu in ((0.25, R.SMU1_MU), (0.25, 0.5), (0.01, 2.0), (1.5, 0.3)):
        for dtype in (torch.float64, torch.float32):
            x = torch.zeros(3, dtype=dtype, requires_grad=True)
            (g,) = torch.autograd.grad(plain.smu1(x, alpha, mu).sum(), x)
            torch.testing.assert_close(g, torch.full_like(g, (1 + alpha) / 2), msg=f"alpha={alpha}, mu={mu}")


@pytest.mark.parametrize("dtype", FLOATS)
def test_srelu_with_alpha_beta_1_is_elu(dtype):
    x = _wide(dtype).requires_grad_()
    out = plain.srelu(x, 1.0, 1.0)
    expected = TF.elu(x)
    assert torch.equal(out, expected)
    (g,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(expected.sum(), x)
    eps = torch.finfo(dtype).eps  # elu's backward computes exp(x) as elu(x) + 1
    torch.testing.assert_close(g, g_ref, rtol=2 * eps, atol=2 * eps)  # including at x = 0
    assert float(g[x == 0]) == 1.0


def test_srelu_uses_beta_as_the_slope_at_zero():
    x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(plain.srelu(x, 1.0, 0.1).sum(), x)
    assert g.tolist() == [0.1, 0.1]


def test_ash_with_z_0_and_alpha_half_on_zero_mean_rows_is_silu():
    v = torch.randn(4, 8, dtype=torch.float64) * 3
    x = torch.cat([v, -v], dim=1)  # each row has mean 0
    torch.testing.assert_close(plain.ash(x, 0.0, 0.5), TF.silu(x), rtol=1e-13, atol=1e-13)
    # A non-zero mean breaks the identity (the test can tell the two apart).
    assert not torch.allclose(plain.ash(x + 1.0, 0.0, 0.5), TF.silu(x + 1.0), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("z", [0.0, 0.5, -1.0])
def test_ash_with_large_alpha_keeps_the_top_percentile(z):
    x = torch.randn(6, 50, dtype=torch.float64)
    mean = x.mean(dim=1, keepdim=True)
    std = x.std(dim=1, keepdim=True, correction=0)
    threshold = mean + z * std
    keep = x * (x > threshold)
    out = plain.ash(x, z, 1e4)
    clear = (x - threshold).abs() > 1e-2  # 2 alpha |x - threshold| > 200: the sigmoid is 0 or 1
    assert clear.float().mean() > 0.9
    torch.testing.assert_close(out[clear], keep[clear], rtol=1e-12, atol=1e-60)
    # the fraction kept is the normal tail beyond z (roughly)
    assert abs(float((x > threshold).double().mean()) - 0.5 * math.erfc(z / math.sqrt(2))) < 0.1


@pytest.mark.parametrize("dtype", FLOATS)
def test_lpflu_with_slope_0_is_pflu(dtype):
    x = _wide(dtype).requires_grad_()
    out = plain.lpflu(x, 0.0)
    expected = plain.pflu(x)
    assert torch.equal(out, expected)
    (g,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(expected.sum(), x)
    assert torch.equal(g, g_ref)


@pytest.mark.parametrize("dtype", FLOATS)
def test_fpflu_is_max_of_x_and_x_over_1_plus_x2(dtype):
    x = _wide(dtype).requires_grad_()
    out = plain.fpflu(x)
    assert torch.equal(out, torch.maximum(x, x / (1 + x * x)))
    (g,) = torch.autograd.grad(out.sum(), x)
    assert float(g[x == 0]) == 1.0  # both sides have slope 1 at 0
    x64 = x.detach().double().requires_grad_()
    (g_ref,) = torch.autograd.grad(R.fpflu(x64).sum(), x64)
    torch.testing.assert_close(g.double(), g_ref, rtol=1e-6, atol=1e-7)


def test_pflu_odd_part_is_x_over_2():
    """PFLU(x) - PFLU(-x) = x and PFLU(x) + PFLU(-x) = x^2 / sqrt(1 + x^2)."""
    x = _wide()
    atol = 4 * torch.finfo(torch.float64).eps * x.abs()  # the sums round at the scale of |x|
    R.assert_close_tol(plain.pflu(x) - plain.pflu(-x), x, 1e-15, atol, "odd part")
    R.assert_close_tol(plain.pflu(x) + plain.pflu(-x), x * x / torch.sqrt(1 + x * x), 1e-14, atol, "even part")


TAILS = {  # negative tails where the value is tiny and cancellation would show, and the reference is still exact
    "pflu": (-300.0, -3.0),
    "fpflu": (-300.0, -3.0),
    "lpflu": (-300.0, -3.0),
    "gish": (-10.0, -1.0),
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", sorted(TAILS))
def test_negative_tail_has_full_relative_precision(name, dtype):
    low, high = TAILS[name]
    x = -torch.logspace(math.log10(-high), math.log10(-low), 50, dtype=torch.float64).to(dtype)
    params = {"negative_slope": 0.0} if name == "lpflu" else {}
    out = fn(name)(x, **params)
    expected = R.REFERENCES[name](x.double(), **params)
    rtol = 1e-9 if dtype == torch.float64 else 1e-5
    R.assert_close_tol(out, expected, rtol, 0.0, f"{name} tail")


# --------------------------------------------------------------------------------------------------
# ASH: per-sample statistics.
# --------------------------------------------------------------------------------------------------

ASH_SHAPES = [(4, 12), (4, 3, 4), (4, 3, 2, 2), (2, 2, 3, 2, 2)]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", ASH_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_ash_statistics_per_sample(shape, dtype):
    x = R.special_input(shape[1:], dtype) if shape[0] == 4 else torch.randn(shape, dtype=dtype)
    expected_dims = tuple(range(1, len(shape))) if len(shape) >= 4 else (len(shape) - 1,)
    assert plain.ash_dims(len(shape)) == expected_dims
    mean, std = plain.ash_stats(x)
    ref_mean, ref_std = R.ash_reference_stats(x.double())
    keep_shape = tuple(1 if i in expected_dims else s for i, s in enumerate(shape))
    assert mean.shape == keep_shape and std.shape == keep_shape
    scale = x.double().abs().amax(dim=expected_dims, keepdim=True)
    eps = torch.finfo(dtype).eps
    R.assert_close_tol(mean, ref_mean, 0.0, 16 * eps * scale, "mean")
    R.assert_close_tol(std, ref_std, 16 * eps, 16 * eps * scale, "std")
    params = {"z": 0.5, "alpha": 2.0}
    out = plain.ash(x, **params)
    R.assert_close_tol(out, R.ash(x.double(), **params), 4 * eps, R.ash_atol(x, params, dtype), "ash")
    # the sample is what the paper says: statistics over the whole batch would give something else
    whole = R.ash(x.double(), **params, dim=tuple(range(len(shape))))
    assert not torch.allclose(out.double(), whole, rtol=1e-3, atol=1e-3)


def test_ash_stats_with_eps_and_apply_compose_to_ash():
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    mean, std = plain.ash_stats(x, eps=0.1)
    ref_mean, ref_std = R.ash_reference_stats(x, eps=0.1)
    torch.testing.assert_close(mean, ref_mean)
    torch.testing.assert_close(std, ref_std)
    z, alpha = torch.tensor(0.3, dtype=torch.float64), torch.tensor(1.7, dtype=torch.float64)
    assert torch.equal(plain.ash_apply(x, mean, std, z, alpha), plain.ash(x, z, alpha, eps=0.1))


@pytest.mark.parametrize(
    ("shape", "dim", "expected"),
    [
        ((4, 3, 5), 1, (1,)),
        ((4, 3, 2, 2), (1, 2), (1, 2)),
        ((4, 3, 2, 2), -1, (3,)),
        ((4, 3, 2, 2), [2, -1], (2, 3)),
        ((6, 5), 0, (0,)),
    ],
)
def test_ash_dim_override(shape, dim, expected):
    assert plain.ash_dims(len(shape), dim) == expected
    x = torch.randn(shape, dtype=torch.float64)
    out = plain.ash(x, 0.4, 1.5, dim=dim)
    torch.testing.assert_close(out, R.ash(x, 0.4, 1.5, dim=dim), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out, plain.ash(x, 0.4, 1.5), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("ndim", "dim"), [(2, 2), (2, -3), (4, 4), (2, (1, 1)), (2, (1, -1)), (0, 1), (3, (0, 5))])
def test_ash_bad_dim_raises_value_error(ndim, dim):
    with pytest.raises(ValueError, match="ash"):
        plain.ash_dims(ndim, dim)
    x = torch.randn((2,) * ndim)
    with pytest.raises(ValueError, match=r"dim"):
        plain.ash(x, dim=dim)


@pytest.mark.parametrize("shape", [(4, 10), (3, 2, 3, 3)])
def test_ash_sample_does_not_depend_on_the_rest_of_the_batch(shape):
    x = torch.randn(shape)
    out = plain.ash(x, 0.5, 2.0)
    y = x.clone()
    y[1:] = y[1:] * 7 + 3
    assert torch.equal(plain.ash(y, 0.5, 2.0)[0], out[0])
    assert not torch.allclose(plain.ash(y, 0.5, 2.0)[1], out[1])


def test_ash_sequence_position_does_not_see_other_positions():
    x = torch.randn(2, 6, 8)
    out = plain.ash(x, 0.3, 1.5)
    for t in range(6):
        y = x.clone()
        others = [s for s in range(6) if s != t]
        y[:, others] = torch.randn(2, 5, 8) * 10
        assert torch.equal(plain.ash(y, 0.3, 1.5)[:, t], out[:, t]), t
    # the gradient of a position only reaches that position (causal models stay causal)
    x64 = x.double().requires_grad_()
    (g,) = torch.autograd.grad(plain.ash(x64, 0.3, 1.5)[:, 2].sum(), x64)
    assert bool((g[:, [0, 1, 3, 4, 5]] == 0).all()) and bool((g[:, 2] != 0).any())


@pytest.mark.parametrize("shape", [(3, 10), (2, 3, 4), (2, 3, 2, 2)])
def test_ash_gradients_flow_through_mean_and_std(shape):
    x = (torch.randn(shape, dtype=torch.float64) * 2).requires_grad_()
    w = torch.randn(shape, dtype=torch.float64)
    (g_full,) = torch.autograd.grad((plain.ash(x, 0.5, 1.3) * w).sum(), x)
    mean, std = plain.ash_stats(x)
    (g_detached,) = torch.autograd.grad((plain.ash_apply(x, mean.detach(), std.detach(), 0.5, 1.3) * w).sum(), x)
    assert float((g_full - g_detached).abs().max()) > 1e-2
    x_ref = x.detach().clone().requires_grad_()
    (g_ref,) = torch.autograd.grad((R.ash(x_ref, 0.5, 1.3) * w).sum(), x_ref)
    torch.testing.assert_close(g_full, g_ref, rtol=1e-10, atol=1e-12)


def test_ash_constant_sample_is_finite():
    x = torch.stack([torch.full((6,), 2.5), torch.randn(6)]).requires_grad_()
    out = plain.ash(x, 0.5, 1.0)
    out.sum().backward()
    assert out.isfinite().all() and x.grad.isfinite().all()
    # sigma = 0: the constant sample sits at its own mean, sigmoid(0) = 1/2
    torch.testing.assert_close(out[0], torch.full((6,), 1.25))


# --------------------------------------------------------------------------------------------------
# float16 / bfloat16.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("name", R.NAMES)
def test_half_inputs_give_finite_outputs_and_gradients(name, dtype):
    params = R.FUNCTIONAL_CASES[name][0]  # the paper's defaults (SMU mu = 1e6, SMU-1 mu = 4.35e-9)
    x = torch.tensor(R.HALF_VALUES, dtype=dtype).reshape(2, 8).requires_grad_()
    p = tensor_params(name, params, torch.float32)
    out = fn(name)(x, **p)
    assert out.dtype == dtype
    assert out.isfinite().all(), out
    (out.float() * torch.randn(out.shape)).sum().backward()
    assert x.grad.dtype == dtype and x.grad.isfinite().all(), x.grad
    for key in R.TENSOR_PARAMS[name]:
        assert p[key].grad.isfinite().all(), key
    # and the values are right to the half type's precision
    eps = torch.finfo(dtype).eps
    atol = R.ash_atol(x, params, dtype) if name == "ash" else R.elementwise_atol(x, dtype)
    R.assert_close_tol(out, R.REFERENCES[name](x.detach().double(), **params), 2 * eps, atol, f"{name} {dtype}")


@pytest.mark.parametrize("name", R.NAMES)
def test_half_parameters_stay_finite(name):
    """Parameters stored in float16 (SMU's mu = 1e6 overflows to inf, SMU-1's 4.35e-9 underflows to 0)."""
    params = R.FUNCTIONAL_CASES[name][0]
    x = torch.tensor(R.HALF_VALUES, dtype=torch.float16).reshape(2, 8).requires_grad_()
    p = tensor_params(name, params, torch.float16)
    out = fn(name)(x, **p)
    out.float().mean().backward()  # a mean: the gradient of a parameter is then a float16 number too
    assert out.dtype == torch.float16 and out.isfinite().all(), out
    assert x.grad.isfinite().all(), x.grad
    for key in R.TENSOR_PARAMS[name]:
        assert p[key].grad.dtype == torch.float16 and p[key].grad.isfinite().all(), key


def test_naive_half_formulas_fail_where_actplug_does_not():
    """The half-precision checks above are meaningful: the literal formulas break in float16."""
    x = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float16, requires_grad=True)
    mu16 = torch.tensor(R.SMU_MU, dtype=torch.float16)
    assert torch.isinf(mu16)
    assert torch.isnan(R.smu(x, 0.25, mu16)[0])  # 0 * erf(inf * 0) = NaN
    assert not plain.smu(x, 0.25, mu16).isnan().any()

    mu1_16 = torch.tensor(R.SMU1_MU, dtype=torch.float16)
    assert float(mu1_16) == 0.0
    (g_naive,) = torch.autograd.grad(R.smu1(x, 0.25, mu1_16).sum(), x)
    assert torch.isnan(g_naive[0])  # d sqrt(a^2)/dx = 0 / 0 at 0
    (g,) = torch.autograd.grad(plain.smu1(x, 0.25, mu1_16).sum(), x)
    assert g.isfinite().all()


# --------------------------------------------------------------------------------------------------
# NaN and infinity.
# --------------------------------------------------------------------------------------------------

LEFT_LIMIT = {"smu": -math.inf, "smu1": -math.inf, "lpflu": -math.inf, "srelu": -0.1}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", R.NAMES)
def test_nan_and_inf_stay_in_their_element(name, bad, dtype):
    params = R.FUNCTIONAL_CASES[name][0]
    x = torch.randn(4, 6, dtype=dtype)
    x_bad = x.clone()
    x_bad[1, 2] = bad
    x_bad.requires_grad_()
    clean = fn(name)(x, **params)
    out = fn(name)(x_bad, **params)
    w = torch.randn(4, 6, dtype=dtype)
    (g_bad,) = torch.autograd.grad((out * w).sum(), x_bad)
    x_clean = x.clone().requires_grad_()
    (g_clean,) = torch.autograd.grad((fn(name)(x_clean, **params) * w).sum(), x_clean)

    others = torch.ones(4, 6, dtype=torch.bool)
    if name == "ash":
        others[1] = False  # the whole sample shares the statistics
    else:
        others[1, 2] = False
    assert torch.equal(out[others], clean[others])
    assert torch.equal(g_bad[others], g_clean[others])
    value = float(out[1, 2].detach())
    if math.isnan(bad):
        assert math.isnan(value)
    elif name != "ash":
        if bad > 0:
            assert value == math.inf, value
        elif name in LEFT_LIMIT:
            assert value == pytest.approx(LEFT_LIMIT[name]), value
        else:  # x g(x) with g -> 0: the limit 0, or NaN (-inf * 0) like torch's silu and mish
            assert value == 0 or math.isnan(value), value


# --------------------------------------------------------------------------------------------------
# Shapes and layouts.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0), (2, 0, 4, 4), (0, 3, 2, 2)])
@pytest.mark.parametrize("name", R.NAMES)
def test_empty_tensors(name, shape):
    x = torch.empty(shape, requires_grad=True)
    out = fn(name)(x, **R.FUNCTIONAL_CASES[name][0])
    assert out.shape == x.shape and out.dtype == x.dtype
    out.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("name", R.NAMES)
def test_zero_dim_tensors(name):
    params = R.FUNCTIONAL_CASES[name][0]
    for value in (-1.5, 0.0, 2.0):
        x = torch.tensor(value, dtype=torch.float64, requires_grad=True)
        out = fn(name)(x, **params)
        assert out.shape == ()
        torch.testing.assert_close(out, R.REFERENCES[name](x.detach(), **params), rtol=1e-12, atol=1e-15)
        out.backward()
        assert x.grad.shape == () and x.grad.isfinite()
        if name != "ash":
            assert float(out.detach()) == float(fn(name)(x.detach().reshape(1), **params)[0])


def _layouts():
    x = torch.randn(4, 6, 5)
    yield "transposed", x.transpose(0, 2)
    yield "sliced", x[:, ::2, 1:]
    yield "expanded", torch.randn(4, 1, 5).expand(4, 3, 5)
    yield "permuted-4d", torch.randn(2, 4, 3, 5).permute(0, 3, 1, 2)


@pytest.mark.parametrize("layout", [name for name, _ in _layouts()])
@pytest.mark.parametrize("name", R.NAMES)
def test_non_contiguous_input_equals_contiguous(name, layout):
    x = dict(_layouts())[layout]
    assert not x.is_contiguous()
    params = R.FUNCTIONAL_CASES[name][1 if len(R.FUNCTIONAL_CASES[name]) > 1 else 0]
    out = fn(name)(x, **params)
    expected = fn(name)(x.contiguous(), **params)
    if name == "ash":  # a reduction may sum in another order
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    else:
        assert torch.equal(out, expected)


@pytest.mark.parametrize("name", R.NAMES)
def test_channels_last_input_gives_channels_last_output(name):
    x = torch.randn(2, 5, 3, 4).to(memory_format=torch.channels_last).requires_grad_()
    params = R.FUNCTIONAL_CASES[name][0]
    out = fn(name)(x, **params)
    assert out.is_contiguous(memory_format=torch.channels_last)
    expected = fn(name)(x.detach().contiguous(), **params)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
    out.sum().backward()
    assert x.grad.isfinite().all()


@pytest.mark.parametrize(
    ("z", "alpha"), [(0.3, 0.8), ((-0.5, 0.0, 0.7), (0.5, 1.0, 2.0))], ids=["scalar", "per-channel"]
)
def test_ash_backward_halves_compose_to_ash_backward_and_autograd(z, alpha):
    """ash_backward_sums then ash_backward_dx (the compiled path's two kernels) give ash_backward's
    gradients, which are autograd's of the plain ASH."""
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    zt = torch.tensor(z, dtype=torch.float64).reshape(-1, 1, 1).requires_grad_()
    at = torch.tensor(alpha, dtype=torch.float64).reshape(-1, 1, 1).requires_grad_()
    (plain.ash(x, zt, at) * w).sum().backward()
    mean, std = plain.ash_stats(x.detach())
    d_mean, d_std, d_z, d_alpha = plain.ash_backward_sums(x.detach(), w, mean, std, zt, at, None, True, True)
    dx = plain.ash_backward_dx(x.detach(), w, mean, std, d_mean, d_std, zt, at)
    whole = plain.ash_backward(x.detach(), w, mean, std, zt, at, None, True, True)
    for got, want, expected in zip((dx, d_z, d_alpha), whole, (x.grad, zt.grad, at.grad), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Input validation.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", R.NAMES)
def test_integer_tensor_or_list_raises_type_error_naming_the_function(name):
    for f in (getattr(F, name), fn(name)):  # the function users call, and the plain math
        with pytest.raises(TypeError, match=rf"\b{name}\(\)"):
            f(torch.arange(4))
        with pytest.raises(TypeError, match=rf"\b{name}\(\)"):
            f([1.0, 2.0])
        with pytest.raises(TypeError, match=rf"\b{name}\(\)"):
            f(torch.tensor([True, False]))
