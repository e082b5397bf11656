"""Correctness of the actplug.nn modules (built through the registry, ``actplug.create``).

Values and gradients (input and parameters) against tests/references.py, gradcheck, LPFLU's slope
sampling and moving average, ASH's per-sample statistics, half precision (inputs and casted
modules), layouts, torch.compile, state_dict, dtype moves, repr and constructor validation.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import references as R
import torch
from torch.autograd import gradcheck, gradgradcheck

import actplug
from actplug import nn as acts
from actplug.functional import reference

MODULE_PARAMS = [
    pytest.param(name, kwargs, id=f"{name}[{R.case_id(kwargs)}]") for name in R.NAMES for kwargs in R.MODULE_CASES[name]
]
FLOATS = [pytest.param(torch.float64, id="f64"), pytest.param(torch.float32, id="f32")]
HALVES = [pytest.param(torch.float16, id="f16"), pytest.param(torch.bfloat16, id="bf16")]

CLASSES = {
    "ash": acts.ASH,
    "fpflu": acts.FPFLU,
    "gish": acts.Gish,
    "lpflu": acts.LPFLU,
    "pflu": acts.PFLU,
    "smu": acts.SMU,
    "smu1": acts.SMU1,
    "srelu": acts.SReLU,
}

# Smooth settings for gradcheck and torch.compile (the defaults are kinked or saturated for some).
SMOOTH_MODULES = {
    "smu": {"alpha": 0.25, "mu": 2.5},
    "smu1": {"alpha": 0.25, "mu": 0.5},
    "lpflu": {"lower": 0.1, "upper": 0.3},
    "srelu": {"alpha": 0.7, "beta": 1.3, "trainable": True},
    "ash": {"z": 0.3, "alpha": 0.8},
    "pflu": {},
    "fpflu": {},
    "gish": {},
}


def make(name: str, **kwargs) -> torch.nn.Module:
    return actplug.create(name, **kwargs)


def sample_input(name: str, shape=(2, 3, 4, 4), dtype=torch.float32) -> torch.Tensor:
    """Random input; kept away from 0 where the activation has a kink."""
    if name in R.KINKED:
        return R.away_from_zero(shape, dtype, low=0.1, seed=7)
    return (torch.randn(shape, dtype=torch.float64) * 2).to(dtype)


# --------------------------------------------------------------------------------------------------
# Construction and defaults.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", R.NAMES)
def test_create_returns_the_module_with_the_papers_defaults(name):
    m = make(name)
    assert type(m) is CLASSES[name]
    params = dict(m.named_parameters())
    buffers = dict(m.named_buffers())
    if name == "smu":
        assert m.alpha == 0.25 and m.trainable is True
        assert set(params) == {"mu"} and float(m.mu.detach()) == 1e6
    elif name == "smu1":
        assert m.alpha == 0.25 and set(params) == {"mu"}
        assert float(m.mu.detach()) == pytest.approx(4.352665993287951e-09, rel=1e-7)
    elif name == "lpflu":
        assert (m.lower, m.upper, m.momentum, m.randomized) == (0.0, 0.02, 0.1, True)
        assert params == {} and set(buffers) == {"running_slope"}
        assert float(m.running_slope) == pytest.approx(0.01)
    elif name == "srelu":
        assert params == {} and set(buffers) == {"alpha", "beta"}
        assert float(m.alpha) == 1.0 and float(m.beta) == pytest.approx(0.1)
    elif name == "ash":
        assert set(params) == {"z", "alpha"} and buffers == {}
        assert float(m.z.detach()) == 0.0 and float(m.alpha.detach()) == 1.0 and m.dim is None and m.eps == 0.0
    else:
        assert params == {} and buffers == {}


@pytest.mark.parametrize("alias", ["smu-1", "smu_1", "SMU1"])
def test_smu1_aliases(alias):
    assert type(make(alias)) is acts.SMU1


@pytest.mark.parametrize("name", ["smu", "smu1", "srelu"])
def test_trainable_switches_between_parameter_and_buffer(name):
    default = make(name)
    flipped = make(name, trainable=not default.trainable)
    keys = {"smu": {"mu"}, "smu1": {"mu"}, "srelu": {"alpha", "beta"}}[name]
    for m in (flipped, default):
        params, buffers = set(dict(m.named_parameters())), set(dict(m.named_buffers()))
        if m.trainable:
            assert params == keys and not (buffers & keys)
        else:
            assert buffers == keys and params == set()
    assert flipped.trainable != default.trainable
    # a parameter gets a gradient (mu = 1e6 saturates erf, so SMU's mu would get ~0)
    m = make(name, trainable=True, **({"mu": 2.5} if name == "smu" else {}))
    m(torch.randn(10)).pow(2).sum().backward()
    assert all(p.grad is not None and float(p.grad.abs()) > 0 for p in m.parameters())


# --------------------------------------------------------------------------------------------------
# Values and gradients against the references.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("name", "kwargs"), MODULE_PARAMS)
def test_module_values_match_reference(name, kwargs, dtype):
    m = make(name, **kwargs).to(dtype).eval()
    x = R.special_input((12,), dtype)
    out = m(x)
    assert out.dtype == dtype and out.shape == x.shape
    params = R.module_params(name, m)
    expected = R.REFERENCES[name](x.double(), **R.as_float64(params))
    rtol, atol = R.value_tolerance(name, x, params, dtype)
    R.assert_close_tol(out, expected, rtol, atol, f"{name} {kwargs} {dtype}")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("name", "kwargs"), MODULE_PARAMS)
def test_module_gradients_match_reference(name, kwargs, dtype):
    m = make(name, **kwargs).to(dtype).eval()
    x = R.special_input((12,), dtype)
    if name == "gish":  # the naive reference's gradient is 0 * inf = NaN beyond ~710
        x = x.clamp(-700, 700)
    x.requires_grad_()
    w = torch.randn(x.shape, dtype=torch.float64)
    (m(x) * w.to(dtype)).sum().backward()

    x64 = x.detach().double().requires_grad_()
    params64 = R.as_float64(R.module_params(name, m))
    trainable = dict(m.named_parameters())
    for key, p in trainable.items():  # one copy per element: the per-element terms of the gradient
        params64[key] = p.detach().double().expand(x.shape).clone().requires_grad_()
    (R.REFERENCES[name](x64, **params64) * w).sum().backward()

    if dtype == torch.float64:
        rtol, atol, prtol, patol = 1e-8, 1e-12, 1e-9, 1e-11
    else:
        rtol, atol, prtol, patol = 1e-5, 1e-6, 1e-4, 1e-5
    if name == "ash":  # each gradient sums over its sample
        atol = atol * (x64.grad.abs().amax(dim=1, keepdim=True) + 1)
    assert x.grad.dtype == dtype
    R.assert_close_tol(x.grad, x64.grad, rtol, atol, f"d {name} / dx")
    for key, p in trainable.items():
        terms = params64[key].grad
        assert p.grad is not None and p.grad.shape == p.shape, key
        R.assert_close_tol(p.grad, terms.sum(), prtol, patol * float(terms.abs().sum()) + 1e-300, f"d {name}/d {key}")


@pytest.mark.parametrize("name", R.NAMES)
def test_module_gradcheck_and_gradgradcheck(name):
    m = make(name, **SMOOTH_MODULES[name]).double().eval()
    shape = (2, 3, 2, 2) if name == "ash" else (3, 4)
    x = sample_input(name, shape, torch.float64).requires_grad_()
    params = dict(m.named_parameters())
    keys = list(params)

    def f(x, *ps):
        return torch.func.functional_call(m, dict(zip(keys, ps, strict=True)), (x,))

    inputs = (x, *params.values())
    assert len(inputs) == 1 + {"smu": 1, "smu1": 1, "srelu": 2, "ash": 2}.get(name, 0)
    assert gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
    assert gradgradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


# --------------------------------------------------------------------------------------------------
# LPFLU: slope sampling, moving average, randomized=False, state.
# --------------------------------------------------------------------------------------------------


def _lpflu_input(n: int = 64) -> torch.Tensor:
    """|x| in [0.5, 3]: PFLU's gate g is well away from 1 and 0, so the slope is easy to recover."""
    return R.away_from_zero((n,), torch.float64, low=0.5, seed=11).clamp(-3, 3)


def recover_slope(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Per element a from out = x ((1 - a) g + a), g = PFLU(x) / x."""
    x, out = x.detach().double(), out.detach().double()
    g = R.pflu(x) / x
    return (out / x - g) / (1 - g)


def test_lpflu_train_draws_one_slope_per_call_and_updates_the_average():
    lower, upper, momentum = 0.1, 0.3, 0.25
    m = make("lpflu", lower=lower, upper=upper, momentum=momentum).train()
    x = _lpflu_input()
    slopes = []
    for _ in range(60):
        before = m.running_slope.clone()
        a = recover_slope(x, m(x))
        assert float(a.max() - a.min()) < 1e-12, "one slope for the whole call"
        a = float(a.mean())
        assert lower <= a <= upper
        expected = (1 - momentum) * before.double() + momentum * a
        torch.testing.assert_close(m.running_slope.double(), expected, rtol=1e-6, atol=1e-8)
        slopes.append(a)
    assert len({round(a, 9) for a in slopes}) == len(slopes), "every call draws a new slope"
    width = upper - lower
    assert min(slopes) < lower + 0.1 * width and max(slopes) > upper - 0.1 * width  # uniform over the range
    assert abs(sum(slopes) / len(slopes) - (lower + upper) / 2) < 0.15 * width


def test_lpflu_train_gradient_uses_the_drawn_slope():
    m = make("lpflu", lower=0.1, upper=0.3).train()
    x = _lpflu_input().requires_grad_()
    out = m(x)
    (out * torch.linspace(-1, 1, x.numel(), dtype=torch.float64)).sum().backward()
    a = float(recover_slope(x, out).mean())
    x64 = x.detach().clone().requires_grad_()
    (R.lpflu(x64, a) * torch.linspace(-1, 1, x.numel(), dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(x.grad, x64.grad, rtol=1e-6, atol=1e-9)


def test_lpflu_eval_uses_the_running_slope_and_leaves_it_alone():
    m = make("lpflu", lower=0.0, upper=0.4)
    with torch.no_grad():
        m.running_slope.fill_(0.123)
    m.eval()
    x = _lpflu_input()
    out = m(x)
    a = recover_slope(x, out)
    torch.testing.assert_close(a, torch.full_like(a, float(m.running_slope)), rtol=1e-9, atol=1e-10)
    assert torch.equal(m(x), out)
    assert float(m.running_slope) == pytest.approx(0.123)
    assert m.negative_slope == pytest.approx(0.123)


def test_lpflu_not_randomized_uses_the_midpoint_and_never_touches_the_buffer():
    m = make("lpflu", lower=0.05, upper=0.2, randomized=False)
    with torch.no_grad():
        m.running_slope.fill_(0.5)  # a value the module must ignore
    x = _lpflu_input()
    rng = torch.get_rng_state()
    for mode in (True, False, True):
        m.train(mode)
        a = recover_slope(x, m(x))
        torch.testing.assert_close(a, torch.full_like(a, 0.125), rtol=1e-9, atol=1e-10)
    assert torch.equal(torch.get_rng_state(), rng), "randomized=False draws no random numbers"
    assert float(m.running_slope) == 0.5
    assert m.negative_slope == pytest.approx(0.125)


@pytest.mark.parametrize("momentum", [0.0, 1.0])
def test_lpflu_momentum_extremes(momentum):
    m = make("lpflu", lower=0.1, upper=0.3, momentum=momentum).train()
    x = _lpflu_input()
    for _ in range(3):
        a = float(recover_slope(x, m(x)).mean())
    expected = 0.2 if momentum == 0.0 else a
    assert float(m.running_slope) == pytest.approx(expected, rel=1e-6)


def test_lpflu_same_seed_same_draws():
    x = _lpflu_input()
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        m = make("lpflu", lower=0.1, upper=0.3).train()
        outs.append(torch.stack([m(x) for _ in range(3)]))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0][0], outs[0][1])


@pytest.mark.parametrize("context", ["no_grad", "inference_mode"])
def test_lpflu_train_mode_without_autograd(context):
    m = make("lpflu", lower=0.1, upper=0.3, momentum=0.5).train()
    x = _lpflu_input()
    before = float(m.running_slope)
    with torch.no_grad() if context == "no_grad" else torch.inference_mode():
        out = m(x)
    a = float(recover_slope(x, out).mean())
    assert float(m.running_slope) == pytest.approx(0.5 * before + 0.5 * a, rel=1e-6)
    m.eval()
    torch.testing.assert_close(recover_slope(x, m(x)), torch.full((x.numel(),), float(m.running_slope)).double())


def test_lpflu_nan_input_does_not_reach_the_running_slope():
    m = make("lpflu", lower=0.1, upper=0.3).train()
    x = torch.tensor([1.0, float("nan"), float("inf"), -2.0])
    out = m(x)
    assert torch.isnan(out[1]) and out[2] == math.inf and out[[0, 3]].isfinite().all()
    assert m.running_slope.isfinite()


def test_lpflu_running_slope_survives_a_state_dict_round_trip():
    m = make("lpflu", lower=0.1, upper=0.3, momentum=0.5).train()
    x = _lpflu_input()
    for _ in range(4):
        m(x)
    assert float(m.running_slope) != pytest.approx(0.2)
    buffer = io.BytesIO()
    torch.save(m.state_dict(), buffer)
    buffer.seek(0)
    fresh = make("lpflu", lower=0.1, upper=0.3, momentum=0.5)
    assert float(fresh.running_slope) == pytest.approx(0.2)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh.running_slope, m.running_slope)
    m.eval()
    fresh.eval()
    assert torch.equal(fresh(x), m(x))


# --------------------------------------------------------------------------------------------------
# ASH module: per-sample statistics.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "dim"),
    [((4, 12), None), ((2, 5, 6), None), ((2, 3, 4, 4), None), ((2, 5, 6), 1), ((2, 3, 4, 4), (2, 3))],
    ids=["2d", "3d", "4d", "3d-dim1", "4d-dim23"],
)
def test_ash_module_statistics(shape, dim):
    m = make("ash", z=0.5, alpha=1.5, dim=dim).double()
    x = torch.randn(shape, dtype=torch.float64) * 2 + 0.5
    torch.testing.assert_close(m(x), R.ash(x, 0.5, 1.5, dim=dim), rtol=1e-12, atol=1e-12)
    # the layout the spec names: (C, H, W) of a 4-D input, the last dimension of 2-D and 3-D inputs
    if dim is None:
        dims = tuple(range(1, len(shape))) if len(shape) == 4 else (len(shape) - 1,)
        mean = x.mean(dim=dims, keepdim=True)
        std = x.std(dim=dims, keepdim=True, correction=0)
        torch.testing.assert_close(m(x), x * torch.sigmoid(3.0 * (x - mean - 0.5 * std)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(4, 10), (3, 4, 6), (3, 2, 3, 3)])
def test_ash_module_sample_is_independent_of_the_batch(shape):
    m = make("ash", z=0.2, alpha=2.0)
    x = torch.randn(shape)
    out = m(x)
    y = x.clone()
    y[1:] = torch.randn(y[1:].shape) * 5 - 2
    assert torch.equal(m(y)[0], out[0])
    if len(shape) == 3:  # (B, T, D): position t does not see the other positions
        y = x.clone()
        y[:, 1:] = torch.randn(y[:, 1:].shape) * 5
        assert torch.equal(m(y)[:, 0], out[:, 0])


@pytest.mark.parametrize(("shape", "dim"), [((2, 3), 2), ((2, 3, 4), 3), ((2, 3, 4), (1, 1)), ((2, 3, 4, 4), -5)])
def test_ash_module_bad_dim_raises_value_error(shape, dim):
    m = make("ash", dim=dim)
    with pytest.raises(ValueError, match="dim"):
        m(torch.randn(shape))


def test_ash_module_gradient_flows_through_the_statistics():
    m = make("ash", z=0.5, alpha=1.3).double()
    x = (torch.randn(3, 2, 3, 3, dtype=torch.float64) * 2).requires_grad_()
    (g,) = torch.autograd.grad(m(x).pow(2).sum(), x)
    mean, std = reference.ash_stats(x)
    out_detached = reference.ash_apply(x, mean.detach(), std.detach(), m.z, m.alpha)
    (g_detached,) = torch.autograd.grad(out_detached.pow(2).sum(), x)
    assert float((g - g_detached).abs().max()) > 1e-2


# --------------------------------------------------------------------------------------------------
# float16 / bfloat16.
# --------------------------------------------------------------------------------------------------


def _half_input(dtype):
    return torch.tensor(R.HALF_VALUES, dtype=dtype).reshape(2, 8).requires_grad_()


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("name", R.NAMES)
def test_float32_module_on_half_input(name, dtype, train):
    m = make(name).train(train)  # the paper defaults: SMU mu = 1e6, SMU-1 mu = 4.35e-9
    x = _half_input(dtype)
    out = m(x)
    assert out.dtype == dtype and out.isfinite().all(), out
    out.float().mean().backward()
    assert x.grad.dtype == dtype and x.grad.isfinite().all(), x.grad
    for key, p in m.named_parameters():
        assert p.dtype == torch.float32 and p.grad.isfinite().all(), key
    for key, b in m.named_buffers():
        assert b.isfinite().all(), key


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("name", R.NAMES)
def test_module_cast_to_half(name, dtype, train):
    m = make(name)
    m = (m.half() if dtype == torch.float16 else m.bfloat16()).train(train)
    for t in (*m.parameters(), *m.buffers()):
        assert t.dtype == dtype
    if name == "smu" and dtype == torch.float16:
        assert torch.isinf(m.mu)  # 1e6 overflows float16: the module must cope
    if name == "smu1" and dtype == torch.float16:
        assert float(m.mu.detach()) == 0.0  # 4.35e-9 underflows float16
    x = _half_input(dtype)
    out = m(x)
    assert out.dtype == dtype and out.isfinite().all(), out
    out.float().mean().backward()
    assert x.grad.dtype == dtype and x.grad.isfinite().all(), x.grad
    for key, p in m.named_parameters():
        assert p.grad.dtype == dtype and p.grad.isfinite().all(), key
    for key, b in m.named_buffers():
        assert b.isfinite().all(), key
    if not train:  # the values are those of the same (cast) parameters in float32, rounded to the half type
        ref = copy.deepcopy(m).float()(x.detach().float())
        params = R.module_params(name, m)
        eps = torch.finfo(dtype).eps
        atol = R.ash_atol(x, params, dtype) if name == "ash" else R.elementwise_atol(x, dtype)
        R.assert_close_tol(out, ref, eps, atol, f"{name} {dtype}")


# --------------------------------------------------------------------------------------------------
# Layouts and shapes.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", R.NAMES)
def test_module_channels_last(name):
    m = make(name, **SMOOTH_MODULES[name]).eval()
    x = sample_input(name, (2, 5, 3, 4)).to(memory_format=torch.channels_last).requires_grad_()
    out = m(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    expected = m(x.detach().contiguous())
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
    out.sum().backward()
    assert x.grad.isfinite().all()


@pytest.mark.parametrize("name", R.NAMES)
def test_module_non_contiguous_input(name):
    m = make(name, **SMOOTH_MODULES[name]).eval()
    base = sample_input(name, (5, 6, 8))
    for x in (base.transpose(0, 2), base[:, ::2, 1:], base.permute(2, 0, 1)):
        assert not x.is_contiguous()
        out = m(x)
        expected = m(x.contiguous())
        if name == "ash":
            torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(out, expected)


@pytest.mark.parametrize("name", R.NAMES)
def test_module_empty_and_zero_dim(name):
    m = make(name, **SMOOTH_MODULES[name]).eval()
    for shape in [(0,), (3, 0), (0, 3, 2, 2)]:
        x = torch.empty(shape, requires_grad=True)
        out = m(x)
        assert out.shape == x.shape
        out.sum().backward()
    x = torch.tensor(0.7, dtype=torch.float64)
    out = m.double()(x)
    assert out.shape == ()
    expected = R.REFERENCES[name](x, **R.as_float64(R.module_params(name, m)))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------------------
# torch.compile.
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _eager_and_compiled(m: torch.nn.Module, x: torch.Tensor, backend: str):
    results = []
    for module in (m, torch.compile(m, fullgraph=True, backend=backend)):
        m.zero_grad()
        xi = x.clone().requires_grad_()
        out = module(xi)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        grads = {k: p.grad.clone() for k, p in m.named_parameters()}
        results.append((out.detach(), xi.grad, grads))
    return results


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("name", R.NAMES)
def test_compile_aot_eager_matches_eager(name):
    m = make(name, **SMOOTH_MODULES[name]).eval()
    x = sample_input(name, (2, 3, 4, 4))
    (out, gx, gp), (c_out, c_gx, c_gp) = _eager_and_compiled(m, x, "aot_eager")
    torch.testing.assert_close(c_out, out)
    torch.testing.assert_close(c_gx, gx)
    assert gp.keys() == c_gp.keys()
    for key in gp:
        torch.testing.assert_close(c_gp[key], gp[key], rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("fresh_dynamo")
def test_compile_inductor_smu():
    m = make("smu", alpha=0.01, mu=2.5)
    x = torch.randn(4, 8, 5)
    (out, gx, gp), (c_out, c_gx, c_gp) = _eager_and_compiled(m, x, "inductor")
    torch.testing.assert_close(c_out, out)
    torch.testing.assert_close(c_gx, gx)
    torch.testing.assert_close(c_gp["mu"], gp["mu"], rtol=1e-4, atol=1e-5)


@pytest.mark.usefixtures("fresh_dynamo")
def test_compile_lpflu_train_mode_samples_and_updates_the_buffer():
    m = make("lpflu", lower=0.1, upper=0.3, momentum=0.5).train()
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    x = _lpflu_input()
    slopes = []
    for _ in range(3):
        before = float(m.running_slope)
        a = recover_slope(x, compiled(x))
        assert float(a.max() - a.min()) < 1e-12
        a = float(a.mean())
        assert 0.1 <= a <= 0.3
        assert float(m.running_slope) == pytest.approx(0.5 * before + 0.5 * a, rel=1e-6)
        slopes.append(a)
    assert len(set(slopes)) == 3, "the compiled module draws a new slope each call"
    m.eval()
    torch.testing.assert_close(compiled(x), m(x))
    a = recover_slope(x, compiled(x))
    torch.testing.assert_close(a, torch.full_like(a, float(m.running_slope)), rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------------------------------
# state_dict, dtype, repr, inplace.
# --------------------------------------------------------------------------------------------------

STATE_CASES = {  # (module kwargs, kwargs of the fresh module with another init, keys in state_dict)
    "smu": ({"alpha": 0.01, "mu": 2.5}, {"alpha": 0.01, "mu": 1.0}, {"mu"}),
    "smu1": ({"mu": 0.5, "trainable": False}, {"mu": 0.1, "trainable": False}, {"mu"}),
    "lpflu": ({"lower": 0.1, "upper": 0.3}, {"lower": 0.1, "upper": 0.3}, {"running_slope"}),
    "srelu": ({"alpha": 0.5, "beta": 2.0}, {}, {"alpha", "beta"}),
    "ash": ({"z": 0.5, "alpha": 2.0, "dim": 1}, {"dim": 1}, {"z", "alpha"}),
    "pflu": ({}, {}, set()),
    "fpflu": ({}, {}, set()),
    "gish": ({}, {}, set()),
}


@pytest.mark.parametrize("name", R.NAMES)
def test_state_dict_round_trip(name):
    kwargs, fresh_kwargs, keys = STATE_CASES[name]
    m = make(name, **kwargs)
    if name == "lpflu":  # move the running slope away from its init
        m.train()
        for _ in range(3):
            m(torch.randn(8))
    m.eval()
    state = m.state_dict()
    assert set(state) == keys
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh = make(name, **fresh_kwargs).eval()
    x = sample_input(name, (3, 4, 5))
    if keys:
        assert not torch.allclose(fresh(x), m(x)), "the fresh module must start different"
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    for key in keys:
        assert torch.equal(fresh.state_dict()[key], state[key])
    assert torch.equal(fresh(x), m(x))


@pytest.mark.parametrize(("name", "kwargs"), MODULE_PARAMS)
def test_to_float64(name, kwargs):
    m = make(name, **kwargs).to(torch.float64).eval()
    for t in (*m.parameters(), *m.buffers()):
        assert t.dtype == torch.float64
    x = R.special_input((12,), torch.float64)
    out = m(x)
    assert out.dtype == torch.float64
    params = R.module_params(name, m)
    expected = R.REFERENCES[name](x, **R.as_float64(params))
    rtol, atol = R.value_tolerance(name, x, params, torch.float64)
    R.assert_close_tol(out, expected, rtol, atol, name)


REPR_CASES = [
    ("smu", {"alpha": 0.01, "mu": 2.5, "trainable": False}, ["alpha=0.01", "mu=2.5", "trainable=False"]),
    ("smu", {}, ["alpha=0.25", "mu=1e+06", "trainable=True"]),
    ("smu1", {"alpha": 0.1, "mu": 0.5}, ["alpha=0.1", "mu=0.5", "trainable=True"]),
    ("lpflu", {"lower": 0.05, "upper": 0.2, "momentum": 0.3, "randomized": False},
     ["lower=0.05", "upper=0.2", "momentum=0.3", "randomized=False"]),
    ("srelu", {"alpha": 0.5, "beta": 2.0, "trainable": True}, ["alpha=0.5", "beta=2", "trainable=True"]),
    ("ash", {"z": 0.5, "alpha": 2.0, "dim": (1, 2), "eps": 1e-3}, ["z=0.5", "alpha=2", "dim=(1, 2)", "eps=0.001"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kwargs", "parts"), REPR_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(REPR_CASES)])
def test_extra_repr_mentions_the_constructor_values(name, kwargs, parts):
    text = repr(make(name, **kwargs))
    assert text.startswith(CLASSES[name].__name__ + "(")
    for part in parts:
        assert part in text, (part, text)


@pytest.mark.parametrize("name", ["pflu", "fpflu", "gish"])
def test_repr_of_modules_without_arguments(name):
    assert repr(make(name)) == f"{CLASSES[name].__name__}()"


@pytest.mark.parametrize("name", R.NAMES)
def test_inplace_is_accepted_and_the_input_is_not_modified(name):
    m = make(name, inplace=True).eval()
    x = sample_input(name, (3, 5))
    copy = x.clone()
    out = m(x)
    assert torch.equal(x, copy)
    assert out.data_ptr() != x.data_ptr()
    torch.testing.assert_close(out, make(name).eval()(x))
    leaf = x.clone().requires_grad_()  # an in-place op on a leaf would raise here
    m(leaf).sum().backward()


# --------------------------------------------------------------------------------------------------
# Constructor and input validation.
# --------------------------------------------------------------------------------------------------

BAD_CONSTRUCTORS = [
    ("smu", {"alpha": "x"}, TypeError, r"SMU\(alpha"),
    ("smu", {"alpha": None}, TypeError, r"SMU\(alpha"),
    ("smu", {"mu": float("nan")}, ValueError, r"SMU\(mu"),
    ("smu", {"mu": float("inf")}, ValueError, r"SMU\(mu"),
    ("smu", {"mu": torch.tensor([1.0, 2.0])}, TypeError, r"SMU\(mu"),
    ("smu", {"trainable": "yes"}, TypeError, r"SMU\(trainable"),
    ("smu", {"inplace": 1}, TypeError, r"SMU\(inplace"),
    ("smu1", {"alpha": "0.25"}, TypeError, r"SMU1\(alpha"),
    ("smu1", {"mu": float("-inf")}, ValueError, r"SMU1\(mu"),
    ("lpflu", {"lower": 0.5, "upper": 0.1}, ValueError, r"LPFLU\(lower"),
    ("lpflu", {"lower": -0.1}, ValueError, r"LPFLU\(lower"),
    ("lpflu", {"momentum": 2}, ValueError, r"LPFLU\(momentum"),
    ("lpflu", {"momentum": -0.1}, ValueError, r"LPFLU\(momentum"),
    ("lpflu", {"upper": "0.3"}, TypeError, r"LPFLU\(upper"),
    ("lpflu", {"randomized": "no"}, TypeError, r"LPFLU\(randomized"),
    ("srelu", {"trainable": "yes"}, TypeError, r"SReLU\(trainable"),
    ("srelu", {"alpha": float("inf")}, ValueError, r"SReLU\(alpha"),
    ("srelu", {"beta": [0.1]}, TypeError, r"SReLU\(beta"),
    ("ash", {"dim": "c"}, TypeError, r"ASH\(dim"),
    ("ash", {"dim": True}, TypeError, r"ASH\(dim"),
    ("ash", {"dim": [1, "a"]}, TypeError, r"ASH\(dim"),
    ("ash", {"dim": 1.5}, TypeError, r"ASH\(dim"),
    ("ash", {"eps": -1.0}, ValueError, r"ASH\(eps"),
    ("ash", {"z": float("nan")}, ValueError, r"ASH\(z"),
    ("ash", {"alpha": "1"}, TypeError, r"ASH\(alpha"),
    ("gish", {"inplace": "yes"}, TypeError, r"Gish\(inplace"),
    ("pflu", {"inplace": None}, TypeError, r"PFLU\(inplace"),
    ("fpflu", {"inplace": 0}, TypeError, r"FPFLU\(inplace"),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "match"), BAD_CONSTRUCTORS, ids=[f"{n}-{k}" for n, k, _, _ in BAD_CONSTRUCTORS]
)
def test_bad_constructor_arguments_raise(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        make(name, **kwargs)
    with pytest.raises(error, match=match):
        CLASSES[name](**kwargs)


@pytest.mark.parametrize("name", R.NAMES)
def test_module_on_integer_tensor_raises_type_error(name):
    with pytest.raises(TypeError, match=rf"\b{name}\(\)"):
        make(name).eval()(torch.arange(6).reshape(2, 3))
