"""Correctness of actplug.kernels, the memory-lean autograd Functions that the modules and the lean
functions of actplug.functional call.

Both CPU paths, "eager" (the plain math, analytic backward) and "compiled" (the same math fused by
Inductor), against the float64 references of tests/references.py and against autograd of the plain
math (actplug.functional.reference): values and every gradient (input and parameters) in every dtype, layouts
and output strides, what autograd saves, gradcheck/gradgradcheck and double backward, half
precision, NaN/inf, broadcasting parameters, the compiled path's fallback, the settings and the
layout helpers. The Triton path has its own tests (test_triton_kernels.py); torch.compile,
torch.export, autocast and DDP are in test_kernels_integration.py.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math

import pytest
import references as R
import torch
from torch.autograd import gradcheck, gradgradcheck

import actplug
import actplug.functional as lean
import actplug.kernels as K
from actplug.functional import reference as F
from actplug.kernels import build, dispatch, layout, settings
from actplug.kernels import cpu as kcpu
from actplug.kernels.compiler import Compiler, Job

F64, F32, BF16, F16 = torch.float64, torch.float32, torch.bfloat16, torch.float16
HALF_TYPES = (F16, BF16)
DTYPE_IDS = {F64: "f64", F32: "f32", BF16: "bf16", F16: "f16"}

# The settings that select each CPU path for every tensor, however small; the compiled path compiles
# each kernel on the first call that needs it (not in the background), so that this call runs it too.
PATHS = {"eager": {"cpu": "eager"}, "compiled": {"cpu": "compiled", "cpu_min_numel": 0, "compile": "sync"}}
BOTH = list(PATHS)
# The eager path runs every parameter case in every dtype. The compiled path compiles one kernel per
# (activation, pass, dtype, wanted gradients, blocked or not), whatever the parameter values (they
# enter as 0-d tensors), each a few seconds, so it runs fewer, richer cases: the paper's defaults in
# float32 and bfloat16 (float64 is in gradcheck, float16 in the half-precision tests).
EAGER_DTYPES = (F64, F32, BF16, F16)
COMPILED_DTYPES = (F32, BF16)


def _value_cases(cases: dict[str, list[dict]], compiled_dtypes, compiled_cases) -> list:
    out = []
    for name in R.NAMES:
        for i, params in enumerate(cases[name]):
            runs = [("eager", d) for d in EAGER_DTYPES]
            if compiled_cases(name, i, params):
                runs += [("compiled", d) for d in compiled_dtypes]
            for path, dtype in runs:
                out.append(
                    pytest.param(name, params, path, dtype, id=f"{name}[{R.case_id(params)}]-{path}-{DTYPE_IDS[dtype]}")
                )
    return out


FUNCTIONAL_CASES = _value_cases(R.FUNCTIONAL_CASES, COMPILED_DTYPES, lambda name, i, params: i == 0)
# modules on the compiled path: the defaults, and SReLU with trainable alpha and beta
MODULE_CASES = _value_cases(
    R.MODULE_CASES, (F32,), lambda name, i, params: i == 0 or (name == "srelu" and params.get("trainable", False))
)

# Smooth module settings with every parameter trainable (SReLU's alpha and beta too).
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

# Autograd of the plain math keeps several input-sized tensors for these; the kernels keep x alone.
SAVES_MORE_IN_PLAIN_MATH = ("smu", "pflu", "lpflu", "gish", "ash")

# A known bug in actplug.functional.reference (the kernels share its math); strict, so a fix shows up as XPASS.
ASH_VARIANCE_OVERFLOW_BUG = (
    "ash_stats squares x in float32: the variance of a sample holding |x| > ~1.8e19 overflows to inf, "
    "and the output and gradients become NaN for finite inputs"
)


def kfn(name: str):
    """The memory-lean function (kernels) of ``name``; ``getattr(F, name)`` is its plain math."""
    return getattr(lean, name)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return F32 if dtype in HALF_TYPES else dtype


def sample_input(name: str, shape=(2, 3, 4, 5), dtype=F32) -> torch.Tensor:
    """Random input; kept away from 0 where the activation has a kink."""
    if name in R.KINKED:
        return R.away_from_zero(shape, dtype, low=0.1, seed=7)
    return (torch.randn(shape, dtype=F64) * 2).to(dtype)


def special_input(sample_shape, dtype) -> torch.Tensor:
    """tests/references.py's special input, clamped into float16's range (its values at scale 6e4 overflow it)."""
    x = R.special_input(sample_shape, F64)
    if dtype == F16:  # and SMU's alpha = 1.5 makes 1.5 x: keep that finite too
        x = x.clamp(-4e4, 4e4)
    return x.to(dtype)


def leaf_params(name: str, params: dict, dtype: torch.dtype) -> dict:
    """``params`` with the tensor ones (``R.TENSOR_PARAMS``) as scalar leaves requiring grad."""
    out = dict(params)
    for key in R.TENSOR_PARAMS[name]:
        out[key] = torch.tensor(float(params[key]), dtype=dtype, requires_grad=True)
    return out


def assert_path_taken(path: str, calls: list[str]) -> None:
    if path == "compiled":
        assert calls, "the compiled path was never taken"
    else:
        assert not calls, f"the {path} path ran compiled kernels: {calls}"


@contextlib.contextmanager
def packed_tensors():
    """Every tensor autograd saves inside the block."""
    packed: list[torch.Tensor] = []

    def pack(t):
        packed.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield packed


def saved_bytes(packed: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind the saved tensors (a tensor saved twice counts once)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in packed}
    return sum(storages.values())


# --------------------------------------------------------------------------------------------------
# Comparisons.
# --------------------------------------------------------------------------------------------------


def grad_tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol, atol) for an input gradient in ``dtype`` (half types: float32 math rounded once)."""
    if dtype == F64:
        return 1e-8, 1e-12
    if dtype == F32:
        return 1e-5, 1e-6
    return torch.finfo(dtype).eps, 1e-5


def assert_input_grad_close(name, got, expected, dtype, what, mask=None):
    """x's gradient; ASH's sums over its sample, so its rounding is relative to the sample's largest term."""
    rtol, atol = grad_tolerance(dtype)
    e = expected.detach().to(F64)
    if name == "ash":
        dims = R.ash_reference_dims(e.ndim)
        scale = e.abs().nan_to_num(posinf=0.0).amax(dim=dims, keepdim=True) if e.ndim else e.abs()
        atol = (atol * (scale + 1)).expand(e.shape)
    else:
        atol = torch.full(e.shape, atol, dtype=F64)
    if mask is not None:
        got, e, atol = got[mask], e[mask], atol[mask]
    R.assert_close_tol(got, e, rtol, atol, what)


def assert_param_grad_close(got, expected, terms, dtype, what):
    """A parameter's gradient (a sum over all elements), with ``terms`` the per-element reference terms."""
    scale = float(terms.detach().abs().sum())
    if dtype == F64:
        rtol, atol = 1e-9, 1e-11 * scale + 1e-300
    else:
        rtol, atol = 1e-4, 1e-5 * scale + 1e-30
    R.assert_close_tol(got, expected, rtol, atol, what)


def check_against_reference_and_plain(name, x, w, path, kernel, plain, ref_params, trainable):
    """Compare a kernel run with the float64 reference and with the plain math's autograd.

    ``kernel`` and ``plain`` are ``(out, x_grad, {param: grad})`` for the same input ``x``, loss
    ``(out * w).sum()`` and parameters ``ref_params`` (floats or tensors), of which ``trainable``
    got gradients.
    """
    dtype = x.dtype
    out, gx, gp = kernel
    p_out, p_gx, p_gp = plain
    assert out.dtype == dtype and out.shape == x.shape
    assert gx.dtype == dtype and gx.shape == x.shape

    # values: the reference, and the plain math (the same function on the eager path)
    x64 = x.detach().to(F64)
    fixed = R.as_float64(ref_params)
    rtol, atol = R.value_tolerance(name, x, fixed, dtype)
    R.assert_close_tol(out, R.REFERENCES[name](x64, **fixed), rtol, atol, f"{name} {path} {dtype} vs reference")
    if path == "eager" and name != "ash":  # (ASH's eager path composes ash_stats and ash_apply itself)
        assert torch.equal(out, p_out), "the eager path computes the plain math's values"
    else:
        R.assert_close_tol(out, p_out, rtol, atol, f"{name} {path} {dtype} vs plain math")

    # gradients: the reference with one copy of each parameter per element (the terms of its gradient)
    xr = x64.clone().requires_grad_()
    pr = dict(fixed)
    for key in trainable:
        pr[key] = torch.as_tensor(fixed[key], dtype=F64).expand(x.shape).clone().requires_grad_()
    (R.REFERENCES[name](xr, **pr) * w.to(F64)).sum().backward()
    finite = xr.grad.isfinite()
    if name == "gish":  # the naive formula's gradient is 0 * inf for x >= ~710
        assert bool(finite[x64 < 700].all())
    else:
        assert bool(finite.all())
    assert gx.isfinite().all() and p_gx.isfinite().all()
    assert_input_grad_close(name, gx, xr.grad, dtype, f"d {name} / dx ({path} {dtype}) vs reference", finite)
    assert_input_grad_close(name, gx, p_gx, dtype, f"d {name} / dx ({path} {dtype}) vs plain math")
    assert set(gp) == set(p_gp) == set(trainable)
    for key in trainable:
        terms = pr[key].grad
        assert terms.isfinite().all()
        assert gp[key] is not None and gp[key].shape == p_gp[key].shape
        assert gp[key].dtype == p_gp[key].dtype
        pdtype = gp[key].dtype
        assert_param_grad_close(gp[key], terms.sum(), terms, pdtype, f"d {name} / d {key} ({path}) vs reference")
        assert_param_grad_close(gp[key], p_gp[key], terms, pdtype, f"d {name} / d {key} ({path}) vs plain math")


# --------------------------------------------------------------------------------------------------
# Values and gradients: the functional kernels and the modules, on both paths and in every dtype.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "params", "path", "dtype"), FUNCTIONAL_CASES)
def test_functional_kernels_match_reference_and_plain_math(name, params, path, dtype, compiled_calls):
    x = special_input((12,), dtype)
    w = torch.randn(x.shape, dtype=F64).to(dtype)
    pdtype = compute_dtype(dtype)  # parameters as a user would hold them: the compute dtype

    def run(fn):
        xi = x.clone().requires_grad_()
        p = leaf_params(name, params, pdtype)
        out = fn(xi, **p)
        (out * w).sum().backward()
        return out.detach(), xi.grad, {k: p[k].grad for k in R.TENSOR_PARAMS[name]}

    with K.use(**PATHS[path]):
        kernel = run(kfn(name))
        with torch.no_grad():  # no autograd graph: the forward alone, on the same path
            assert torch.equal(kfn(name)(x, **leaf_params(name, params, pdtype)), kernel[0])
    assert_path_taken(path, compiled_calls)
    plain = run(getattr(F, name))
    for key, g in kernel[2].items():
        assert g.dtype == pdtype and g.shape == (), key
    check_against_reference_and_plain(name, x, w, path, kernel, plain, params, R.TENSOR_PARAMS[name])


@pytest.mark.parametrize("name", R.ELEMENTWISE)
def test_blocked_compiled_path_matches_reference_and_plain_math(name, compiled_calls):
    """Flat lengths that are a multiple of cpu.BLOCK run as (rows, BLOCK) with the fused CPU forms
    (the declarations' :class:`actplug.declaration.Fused`); they must match like the 1-D path, special
    values included."""
    params = R.FUNCTIONAL_CASES[name][0]
    x = special_input((2 * kcpu.BLOCK // 4,), F32).reshape(2, -1)
    w = torch.randn(x.shape, dtype=F64).to(F32)

    def run(fn):
        xi = x.clone().requires_grad_()
        p = leaf_params(name, params, F32)
        out = fn(xi, **p)
        (out * w).sum().backward()
        return out.detach(), xi.grad, {k: p[k].grad for k in R.TENSOR_PARAMS[name]}

    with K.use(**PATHS["compiled"]):
        kernel = run(kfn(name))
    needs = "".join(f"_{k}" for k in R.TENSOR_PARAMS[name])
    blocked = [f"{name}_forward_float32_blocked", f"{name}_backward_float32{needs}_blocked"]
    assert sorted(compiled_calls) == sorted(blocked), "forward and backward both ran blocked, once each"
    check_against_reference_and_plain(
        name, x, w, "compiled", kernel, run(getattr(F, name)), params, R.TENSOR_PARAMS[name]
    )


@pytest.mark.parametrize(("name", "kwargs", "path", "dtype"), MODULE_CASES)
def test_modules_match_reference_and_plain_math(name, kwargs, path, dtype, compiled_calls):
    m = actplug.create(name, **kwargs).eval()  # evaluation: LPFLU uses its running slope
    if dtype == F64:
        m = m.double()
    x = special_input((3, 2, 2), dtype)  # (4, 3, 2, 2): ASH's samples are (C, H, W)
    w = torch.randn(x.shape, dtype=F64).to(dtype)
    trainable = [k for k, _ in m.named_parameters()]
    if name == "srelu" and kwargs.get("trainable"):
        assert trainable == ["alpha", "beta"]

    xk = x.clone().requires_grad_()
    with K.use(**PATHS[path]):
        out = m(xk)
        (out * w).sum().backward()
    assert_path_taken(path, compiled_calls)
    kernel = (out.detach(), xk.grad, {k: p.grad for k, p in m.named_parameters()})

    params = R.module_params(name, m)
    plain_params = {k: v.detach().clone().requires_grad_() if k in trainable else v for k, v in params.items()}
    xp = x.clone().requires_grad_()
    p_out = getattr(F, name)(xp, **plain_params)
    (p_out * w).sum().backward()
    plain = (p_out.detach(), xp.grad, {k: plain_params[k].grad for k in trainable})
    check_against_reference_and_plain(name, x, w, path, kernel, plain, params, trainable)


def test_parameter_gradients_are_not_trivially_zero():
    """The parameter-gradient comparisons above compare non-zero numbers for every parameter."""
    x = torch.linspace(-3, 3, 25, dtype=F64).reshape(5, 5)
    with K.use(**PATHS["eager"]):
        for name in [n for n in R.NAMES if R.TENSOR_PARAMS[n]]:
            p = leaf_params(name, R.SMOOTH_CASES[name], F64)
            kfn(name)(x, **p).pow(2).sum().backward()
            for key in R.TENSOR_PARAMS[name]:
                assert abs(float(p[key].grad)) > 1e-3, (name, key)


@pytest.mark.parametrize("path", BOTH)
@pytest.mark.parametrize("name", R.NAMES)
def test_random_shapes_and_layouts_match_plain_math(name, path, compiled_calls):
    """Seeded random shapes (1 to 5 dimensions), dimension orders and, for ASH, reduced dimensions."""
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    smooth = R.SMOOTH_CASES[name]
    for _ in range(4):
        ndim = int(torch.randint(2 if name == "ash" else 1, 6, (), generator=g))
        shape = [int(s) for s in torch.randint(2, 6, (ndim,), generator=g)]
        order = torch.randperm(ndim, generator=g).tolist()
        stored = _smooth_input(name, [shape[d] for d in order], seed=int(torch.randint(1000, (), generator=g)))
        x = stored.to(F32).permute(*[order.index(d) for d in range(ndim)])  # a dense, permuted view
        assert tuple(x.shape) == tuple(shape)
        params = dict(smooth)
        if name == "ash" and bool(torch.randint(2, (), generator=g)):
            count = int(torch.randint(1, ndim, (), generator=g))
            params["dim"] = sorted(torch.randperm(ndim, generator=g)[:count].tolist())
        w = torch.randn(shape, generator=g)

        def run(fn, x=x, params=params, w=w):
            xi = x.detach().requires_grad_()
            p = leaf_params(name, params, F32)
            out = fn(xi, **p)
            (out * w).sum().backward()
            return out.detach(), xi.grad, [p[k].grad for k in R.TENSOR_PARAMS[name]]

        with K.use(**PATHS[path]):
            out, gx, gp = run(kfn(name))
        p_out, p_gx, p_gp = run(getattr(F, name))
        what = f"{name} {shape} order {order} {params}"
        assert out.stride() == x.stride(), what
        torch.testing.assert_close(out, p_out, rtol=2e-6, atol=2e-6, msg=what)
        torch.testing.assert_close(gx, p_gx, rtol=1e-5, atol=1e-5, msg=what)
        for a, b in zip(gp, p_gp, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=what)
    assert_path_taken(path, compiled_calls)


# --------------------------------------------------------------------------------------------------
# Layouts and output strides.
# --------------------------------------------------------------------------------------------------

LAYOUTS = ("contiguous", "channels_last", "transposed", "permuted-3d", "sliced", "expanded", "0-d", "empty")


def layout_input(kind: str, name: str) -> torch.Tensor:
    base = sample_input(name, (2, 6, 4, 5))
    made = {
        "contiguous": lambda: base,
        "channels_last": lambda: base.to(memory_format=torch.channels_last),
        "transposed": lambda: base.transpose(1, 3),  # dense, not contiguous
        "permuted-3d": lambda: base.reshape(2, 6, 20).permute(2, 0, 1),
        "sliced": lambda: base[:, ::2, 1:],  # a step: not dense
        "expanded": lambda: base[:, :1].expand(2, 6, 4, 5),  # stride 0: not dense
        "0-d": lambda: base[0, 0, 0, 1].clone(),
        "empty": lambda: base[:, :0],
    }
    return made[kind]()


@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("path", BOTH)
@pytest.mark.parametrize("name", R.NAMES)
def test_layouts_and_output_strides(name, path, kind, compiled_calls):
    x = layout_input(kind, name)
    dense = x.numel() > 0 and layout.is_dense(x.shape, x.stride())
    assert dense == (kind not in ("sliced", "expanded", "empty"))
    m = actplug.create(name, **SMOOTH_MODULES[name]).eval()
    w = torch.randn(x.shape, dtype=F32)

    xk = x.detach().requires_grad_()
    with K.use(**PATHS[path]):
        out = m(xk)
        (out * w).sum().backward()
    if x.numel() > 1:
        assert_path_taken(path, compiled_calls)
    else:  # the fast paths leave a single element (0-d) to the plain math, and a 0-d ASH is its own sample
        assert_path_taken("eager", compiled_calls)
    assert out.shape == x.shape and out.dtype == x.dtype
    if dense:
        assert out.stride() == x.stride(), f"{kind}: strides {out.stride()} != input's {x.stride()}"

    # the same module, as plain math on a contiguous copy
    m_plain = copy.deepcopy(m)
    m_plain.zero_grad()
    xp = x.detach().contiguous().requires_grad_()
    expected = getattr(F, name)(xp, **R.module_params(name, m_plain))
    (expected * w).sum().backward()
    if x.numel() == 0:
        assert out.numel() == 0 and xk.grad.shape == x.shape
        for p in m.parameters():
            assert float(p.grad) == 0.0
        return
    tol = {"rtol": 1e-5, "atol": 1e-5} if name == "ash" else {"rtol": 2e-6, "atol": 1e-6}
    torch.testing.assert_close(out, expected.detach(), **tol)
    torch.testing.assert_close(xk.grad, xp.grad, **tol)
    for (key, p), (_, p_plain) in zip(m.named_parameters(), m_plain.named_parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_plain.grad, rtol=1e-4, atol=1e-5, msg=key)
    if kind == "0-d":
        assert out.shape == () and xk.grad.shape == ()
        x64 = x.detach().to(F64)
        ref = R.REFERENCES[name](x64, **R.as_float64(R.module_params(name, m)))
        torch.testing.assert_close(out.to(F64), ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("path", BOTH)
@pytest.mark.parametrize("name", R.NAMES)
def test_incoming_gradient_in_any_layout(name, path, compiled_calls):
    """The gradient that reaches backward may have another layout than x: expanded (from .sum()),
    channels_last, transposed; on a channels_last x too."""
    m = actplug.create(name, **SMOOTH_MODULES[name]).eval()
    base = sample_input(name, (2, 3, 4, 5))
    g = torch.randn(2, 3, 4, 5)
    grads = {
        "expanded": torch.ones(()).expand(2, 3, 4, 5),
        "channels_last": g.to(memory_format=torch.channels_last),
        "transposed": g.transpose(0, 3).contiguous().transpose(0, 3),
        "sliced": torch.randn(2, 6, 4, 5)[:, ::2],
    }
    for x in (base, base.to(memory_format=torch.channels_last)):
        for kind, grad in grads.items():
            xk = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
            with K.use(**PATHS[path]):
                (gx,) = torch.autograd.grad(m(xk), xk, grad)
            xp = x.detach().contiguous().requires_grad_()
            (expected,) = torch.autograd.grad(getattr(F, name)(xp, **R.module_params(name, m)), xp, grad)
            tol = {"rtol": 1e-5, "atol": 1e-5} if name == "ash" else {"rtol": 2e-6, "atol": 1e-6}
            torch.testing.assert_close(gx, expected, **tol, msg=f"incoming gradient {kind}")
    assert_path_taken(path, compiled_calls)


# --------------------------------------------------------------------------------------------------
# What autograd keeps.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [F32, BF16], ids=["f32", "bf16"])
@pytest.mark.parametrize("path", BOTH)
@pytest.mark.parametrize("name", R.NAMES)
def test_saved_tensors_are_x_and_scalars(name, path, dtype, compiled_calls):
    batch = 2
    m = actplug.create(name, **SMOOTH_MODULES[name]).train()  # training: LPFLU draws its slope
    x = sample_input(name, (batch, 3, 4, 5), dtype).requires_grad_()
    with K.use(**PATHS[path]), packed_tensors() as packed:
        out = m(x)
    assert_path_taken(path, compiled_calls)

    big = [t for t in packed if t.numel() == x.numel()]
    assert len(big) == 1, [tuple(t.shape) for t in packed]
    assert big[0].data_ptr() == x.data_ptr() and big[0].dtype == x.dtype and big[0].shape == x.shape
    rest = [t for t in packed if t is not big[0]]
    if name == "ash":
        stats = [t for t in rest if t.numel() == batch]
        assert len(stats) == 2, "ASH keeps the per-sample mean and std"
        rest = [t for t in rest if t.numel() != batch]
    assert all(t.numel() == 1 for t in rest), [tuple(t.shape) for t in rest]
    out.float().sum().backward()  # the saved tensors are enough for the backward
    assert x.grad is not None and x.grad.isfinite().all()

    # autograd of the plain math keeps more
    xp = x.detach().clone().requires_grad_()
    with packed_tensors() as plain_packed:
        getattr(F, name)(xp, **R.module_params(name, m))
    ours, theirs = saved_bytes(packed), saved_bytes(plain_packed)
    assert ours <= theirs, (ours, theirs)
    if name in SAVES_MORE_IN_PLAIN_MATH:
        assert ours < theirs, (ours, theirs)
        assert theirs >= 2 * x.numel() * x.element_size()


# --------------------------------------------------------------------------------------------------
# gradcheck, gradgradcheck, double backward (float64, parameters included).
# --------------------------------------------------------------------------------------------------

GRADCHECK_SHAPES = {"ash": [(3, 5), (2, 3, 2, 2)]}


def _gradcheck_cases():
    for name in R.NAMES:
        for shape in GRADCHECK_SHAPES.get(name, [(3, 5)]):
            yield pytest.param(name, shape, id=f"{name}-{'x'.join(map(str, shape))}")


def _smooth_input(name, shape, seed=3):
    if name in R.KINKED:  # keep away from the kink at 0
        return R.away_from_zero(shape, low=0.1, seed=seed)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, dtype=F64, generator=g) * 2


@pytest.mark.parametrize("path", BOTH)
@pytest.mark.parametrize(("name", "shape"), list(_gradcheck_cases()))
def test_gradcheck_and_gradgradcheck(name, shape, path, compiled_calls):
    smooth = R.SMOOTH_CASES[name]
    keys = R.TENSOR_PARAMS[name]
    x = _smooth_input(name, shape).requires_grad_()
    p = leaf_params(name, smooth, F64)
    fixed = {k: v for k, v in smooth.items() if k not in keys}

    def f(x, *ps):
        return kfn(name)(x, **fixed, **dict(zip(keys, ps, strict=True)))

    inputs = (x, *(p[k] for k in keys))
    with K.use(**PATHS[path]):
        assert gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
        assert gradgradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)
    assert_path_taken(path, compiled_calls)


@pytest.mark.parametrize("path", BOTH)
@pytest.mark.parametrize("name", R.NAMES)
def test_double_backward_matches_plain_math(name, path):
    smooth = R.SMOOTH_CASES[name]
    keys = R.TENSOR_PARAMS[name]
    shape = (2, 3, 2, 2) if name == "ash" else (3, 5)
    x0 = _smooth_input(name, shape, seed=5)
    w = torch.randn(shape, dtype=F64)
    v = torch.randn(shape, dtype=F64)

    def second_order(fn):
        x = x0.clone().requires_grad_()
        p = leaf_params(name, smooth, F64)
        leaves = (x, *(p[k] for k in keys))
        first = torch.autograd.grad((fn(x, **p) * w).sum(), leaves, create_graph=True)
        assert all(g.requires_grad for g in first)
        s = (first[0] * v).sum() + sum(g.sum() for g in first[1:])
        second = torch.autograd.grad(s, leaves, allow_unused=True)
        second = [torch.zeros_like(t) if g is None else g for g, t in zip(second, leaves, strict=True)]
        return [g.detach() for g in first], second

    with K.use(**PATHS[path]):
        first, second = second_order(kfn(name))
    p_first, p_second = second_order(getattr(F, name))
    for a, b in zip(first + second, p_first + p_second, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert float(second[0].abs().max()) > 0, "the second derivative is not trivially zero"


# --------------------------------------------------------------------------------------------------
# Half precision, huge values, NaN and infinity.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BOTH)
@pytest.mark.parametrize("dtype", [F16, BF16], ids=["f16", "bf16"])
@pytest.mark.parametrize("name", R.NAMES)
def test_module_cast_to_half_is_finite(name, dtype, path, compiled_calls):
    m = actplug.create(name).to(dtype)  # the paper defaults: SMU mu = 1e6, SMU-1 mu = 4.35e-9
    if name == "smu" and dtype == F16:
        assert torch.isinf(m.mu)  # 1e6 overflows float16
    if name == "smu1" and dtype == F16:
        assert float(m.mu.detach()) == 0.0  # 4.35e-9 underflows float16
    x = torch.tensor(R.HALF_VALUES, dtype=dtype).reshape(2, 8)
    with K.use(**PATHS[path]):
        out = m.eval()(x)
        xk = x.clone().requires_grad_()
        out_train = m.train()(xk)
        out_train.float().mean().backward()  # a mean: the parameters' gradients are half numbers too
    assert_path_taken(path, compiled_calls)
    assert out.dtype == dtype and out.isfinite().all(), out
    assert out_train.isfinite().all() and xk.grad.dtype == dtype and xk.grad.isfinite().all(), xk.grad
    for key, p in m.named_parameters():
        assert p.grad.dtype == dtype and p.grad.isfinite().all(), key
    for key, b in m.named_buffers():
        assert b.isfinite().all(), key
    # the values are those of the same (cast) parameters in float32, rounded to the half type
    ref = copy.deepcopy(m).float().eval()(x.float())
    eps = torch.finfo(dtype).eps
    params = R.module_params(name, m)
    atol = R.ash_atol(x, params, dtype) if name == "ash" else R.elementwise_atol(x, dtype)
    R.assert_close_tol(out, ref, eps, atol, f"{name} {dtype}")


EXTREMES = {
    F16: (6e4, -6e4, 65504.0, -65504.0, 3e4, -3e4, 1.0, 0.0),
    BF16: (3e38, -3e38, 1e30, -1e30, 1e10, -1e10, 1.0, 0.0),
    F32: (3e38, -3e38, 1e30, -1e30, 1e10, -1e10, 1.0, 0.0),
}


def _extreme_cases():
    for name in R.NAMES:
        for dtype in (F16, BF16, F32):
            known_bug = name == "ash" and dtype != F16
            marks = [pytest.mark.xfail(strict=True, reason=ASH_VARIANCE_OVERFLOW_BUG)] if known_bug else []
            yield pytest.param(name, dtype, id=f"{name}-{DTYPE_IDS[dtype]}", marks=marks)


@pytest.mark.parametrize("path", BOTH)
@pytest.mark.parametrize(("name", "dtype"), list(_extreme_cases()))
def test_huge_finite_inputs_give_finite_outputs_and_gradients(name, dtype, path):
    """Up to the largest float16 numbers, and to 3e38 in bfloat16 and float32."""
    params = R.FUNCTIONAL_CASES[name][0]
    x = torch.tensor([EXTREMES[dtype], (0.5, -0.5, 2.0, -2.0, 1.5, -1.5, 3.0, -3.0)], dtype=dtype)
    pdtype = compute_dtype(dtype)
    xk = x.clone().requires_grad_()
    p = leaf_params(name, params, pdtype)
    with K.use(**PATHS[path]):
        out = kfn(name)(xk, **p)
        (out.float() * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    plain = getattr(F, name)(x, **params)
    assert out.isfinite().all(), out
    assert xk.grad.isfinite().all(), xk.grad
    for key in R.TENSOR_PARAMS[name]:
        assert p[key].grad.isfinite().all(), key
    rtol, atol = R.value_tolerance(name, x, params, dtype)
    R.assert_close_tol(out, plain, rtol, atol, f"{name} {dtype} vs plain math")


BAD_VALUES = [pytest.param(math.nan, id="nan"), pytest.param(math.inf, id="inf"), pytest.param(-math.inf, id="-inf")]


@pytest.mark.parametrize("path", BOTH)
@pytest.mark.parametrize("dtype", [F32, BF16], ids=["f32", "bf16"])
@pytest.mark.parametrize("bad", BAD_VALUES)
@pytest.mark.parametrize("name", R.NAMES)
def test_nan_and_inf_behave_like_the_plain_math(name, bad, dtype, path):
    params = R.FUNCTIONAL_CASES[name][0]
    x = torch.randn(4, 6).to(dtype)
    x[1, 2] = bad
    w = torch.randn(4, 6).to(dtype)

    def run(fn):
        xi = x.clone().requires_grad_()
        out = fn(xi, **leaf_params(name, params, compute_dtype(dtype)))
        (gx,) = torch.autograd.grad((out * w).sum(), xi)
        return out.detach(), gx

    with K.use(**PATHS[path]):
        out, gx = run(kfn(name))
    p_out, p_gx = run(getattr(F, name))

    # values: NaN, +-inf and the finite values where the plain math has them
    assert torch.equal(out.isnan(), p_out.isnan())
    assert torch.equal(out.isinf(), p_out.isinf()) and torch.equal(out[out.isinf()], p_out[p_out.isinf()])
    if path == "eager":
        torch.testing.assert_close(out, p_out, rtol=0, atol=0, equal_nan=True)
    else:
        rtol, atol = R.value_tolerance(name, x.nan_to_num(0.0, 0.0, 0.0), params, dtype)
        finite = p_out.isfinite()
        R.assert_close_tol(out[finite], p_out[finite], rtol, atol[finite] if atol.ndim else atol)

    # gradients: equal wherever the plain math's is finite; NaN at a NaN input
    touched = torch.zeros(4, 6, dtype=torch.bool)
    if name == "ash":
        touched[1] = True  # the sample shares its statistics
    else:
        touched[1, 2] = True
    finite = p_gx.isfinite()
    assert bool(finite[~touched].all())
    rtol, atol = grad_tolerance(dtype)
    R.assert_close_tol(gx[finite], p_gx[finite], max(rtol, 1e-5), max(atol, 1e-5), f"d {name} / dx")
    if math.isnan(bad):
        assert gx[1, 2].isnan()


# --------------------------------------------------------------------------------------------------
# Parameters that broadcast (one per channel): the eager path, gradients summed to their shape.
# --------------------------------------------------------------------------------------------------

PER_CHANNEL = {
    "smu": ({"alpha": 0.25}, {"mu": (0.5, 2.5, 10.0)}),
    "smu1": ({"alpha": 0.25}, {"mu": (0.1, 0.5, 1.0)}),
    "lpflu": ({}, {"negative_slope": (0.0, 0.1, 0.3)}),
    "srelu": ({}, {"alpha": (0.5, 1.0, 2.0), "beta": (0.1, 1.0, 1.5)}),
    "ash": ({}, {"z": (-0.5, 0.0, 0.7), "alpha": (0.5, 1.0, 2.0)}),
}


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(PER_CHANNEL))
def test_per_channel_parameters_broadcast(name, dtype, compiled_calls):
    fixed, per_channel = PER_CHANNEL[name]
    x = sample_input(name, (2, 3, 4, 5), dtype).requires_grad_()
    w = torch.randn(x.shape, dtype=dtype)
    p = {k: torch.tensor(v, dtype=dtype).reshape(3, 1, 1).requires_grad_() for k, v in per_channel.items()}
    with K.use(**PATHS["compiled"]):  # broadcasting parameters take the eager path by themselves
        out = kfn(name)(x, **fixed, **p)
        (out * w).sum().backward()
    assert not compiled_calls
    assert dispatch.fast_path(x, tuple(p.values()), triton=True) == "eager"

    x64 = x.detach().to(F64).requires_grad_()
    p64 = {k: v.detach().to(F64).requires_grad_() for k, v in p.items()}
    expected = R.REFERENCES[name](x64, **fixed, **p64)
    (expected * w.to(F64)).sum().backward()
    rtol, atol = (1e-10, 1e-12) if dtype == F64 else (1e-5, 1e-5)
    torch.testing.assert_close(out.detach().to(F64), expected.detach(), rtol=rtol, atol=atol)
    torch.testing.assert_close(x.grad.to(F64), x64.grad, rtol=rtol, atol=atol)
    for key in per_channel:
        assert p[key].grad.shape == (3, 1, 1) and p[key].grad.dtype == dtype
        torch.testing.assert_close(p[key].grad.to(F64), p64[key].grad, rtol=rtol * 10, atol=atol * 10, msg=key)
        assert float(p[key].grad.abs().min()) > 0, key


# --------------------------------------------------------------------------------------------------
# torch.func transforms see the plain math.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", R.NAMES)
def test_functorch_transforms_use_the_plain_math(name, compiled_calls):
    params = R.SMOOTH_CASES[name]
    x = _smooth_input(name, (3, 5))
    with K.use(**PATHS["compiled"]):
        grad = torch.func.grad(lambda t: kfn(name)(t, **params).sum())(x)
        batched = torch.func.vmap(lambda t: kfn(name)(t.unsqueeze(0), **params).squeeze(0))(x)
    assert not compiled_calls
    xp = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(getattr(F, name)(xp, **params).sum(), xp)
    torch.testing.assert_close(grad, expected)
    torch.testing.assert_close(batched, getattr(F, name)(x.unsqueeze(1), **params).squeeze(1))


# --------------------------------------------------------------------------------------------------
# The compiled path: thresholds, fallback, recompilations.
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def actplug_log():
    """The records logged on the "actplug" logger during the test."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("actplug")
    handler = Collect(level=logging.DEBUG)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(previous)


@pytest.fixture
def cleared_compiler():
    """The process's compiler (``actplug.kernels.compiler``) emptied for the test and again after it, so
    that what the test compiled, or failed to, serves no other test."""
    K.compiler.clear()
    yield K.compiler
    K.compiler.clear()


def test_compile_failure_falls_back_to_the_plain_math(cleared_compiler, actplug_log, monkeypatch, tmp_path):
    """A kernel that does not compile (no C++ compiler, say) is reported once, on one line, and every call
    runs the plain math, with the same values and gradients."""
    compiled: list[str] = []

    def broken(graph, signature, hints, device, out):
        compiled.append(out.name.rsplit("-", 1)[0])
        raise RuntimeError("simulated: no working C++ compiler\nsecond line")

    monkeypatch.setenv("ACTPLUG_CACHE_DIR", str(tmp_path))  # nothing compiled earlier is found
    monkeypatch.setattr(build, "compile_graph", broken)
    x = torch.randn(3, 4, 5)
    with K.use(**PATHS["compiled"]):
        results = []
        for _ in range(3):
            xk = x.clone().requires_grad_()
            mu = torch.tensor(2.5, requires_grad=True)
            out = lean.smu(xk, 0.25, mu)
            out.sum().backward()
            results.append((out.detach(), xk.grad, mu.grad))
        ash_out = lean.ash(x, 0.3, 0.8)
    xp = x.clone().requires_grad_()
    mu = torch.tensor(2.5, requires_grad=True)
    expected = F.smu(xp, 0.25, mu)
    expected.sum().backward()
    for out, gx, gmu in results:
        assert torch.equal(out, expected.detach())
        torch.testing.assert_close(gx, xp.grad)
        torch.testing.assert_close(gmu, mu.grad)
    torch.testing.assert_close(ash_out, F.ash(x, 0.3, 0.8))

    compiled_once = ["smu_forward_float32", "smu_backward_float32_mu", "ash_forward_float32"]
    assert compiled == compiled_once, "compiled once each, then left"
    failures = [r.getMessage() for r in actplug_log if "could not be compiled" in r.getMessage()]
    assert len(failures) == len(compiled_once), failures
    for label, message in zip(compiled, failures, strict=True):
        assert label in message and "simulated: no working C++ compiler" in message
        assert "second line" not in message
    assert all(r.levelno == logging.WARNING for r in actplug_log if "could not be compiled" in r.getMessage())
    error = "could not be compiled (RuntimeError: simulated: no working C++ compiler)"
    assert [(k["label"], k["state"], k["error"]) for k in cleared_compiler.status()] == [
        (label, "failed", error) for label in compiled_once
    ]
    assert not cleared_compiler.calls, "no compiled kernel served a call"


def _doubled(x):
    return (x * 2.0,)


def test_kernels_compile_in_the_background_and_then_serve(actplug_log, tmp_path):
    """Kernels met with compiling in the background are compiled by the compile server while the calls
    that met them run the eager math; once built they serve, and compiling is announced once."""
    compiler = Compiler(directory=tmp_path)
    x = torch.arange(6.0)
    functions = [_doubled, lambda t: (t + 1.0,), lambda t: (t * t,)]

    def job(i):
        return lambda: Job.like(functions[i], f"kernel_{i}", [x], [(0, 0, 0)])

    with K.use(compile="background"):
        for i in range(3):
            assert compiler.get(("k", i), job(i)) is None, "queued: the caller runs the eager math"
        assert compiler.wait(timeout=600)
        for i in range(3):
            kernel = compiler.get(("k", i), job(i))
            assert kernel is not None, (i, compiler.status())
            torch.testing.assert_close(compiler.run(("k", i), kernel, [x])[0], functions[i](x)[0])
    assert [(k["label"], k["state"]) for k in compiler.status()] == [(f"kernel_{i}", "ready") for i in range(3)]
    assert compiler.calls == {f"kernel_{i}": 1 for i in range(3)}
    assert not [r for r in actplug_log if "could not" in r.getMessage()]
    announcements = [r for r in actplug_log if "compiling fused kernels in a compile server" in r.getMessage()]
    assert len(announcements) == 1, "the first compilation is announced, once"
    assert announcements[0].levelno == logging.INFO
    assert sorted(p.suffix for p in tmp_path.glob("kernel_*")) == [".bin"] * 3 + [".graph"] * 3 + [".lock"] * 3


@pytest.mark.parametrize("name", ["pflu", "ash", "smu"])
def test_one_compiled_kernel_serves_every_shape_layout_and_grad_mode(name, compiled_calls):
    """Sizes are dynamic and every input the kernels see is a contiguous view (flat, rows of a block, ASH's
    rows): each new activation shape or layout, and calls inside and outside an autograd Function, are
    served by the same kernels. Every parameter is a 0-d tensor input: one SMU kernel serves every alpha."""

    def call(x, grad, **params):
        xi = x.detach().requires_grad_(grad)
        out = kfn(name)(xi, **params)
        if grad:
            (out * torch.randn(out.shape)).sum().backward()
        return out.detach()

    def kernels():
        """This activation's kernels: one record each (label, state, compile seconds)."""
        return [k for k in K.status() if k["label"].startswith(f"{name}_")]

    base = sample_input(name, (2, 3, 4, 5))
    inputs = [
        sample_input(name, (4, 6, 5, 3)),
        base.to(memory_format=torch.channels_last),
        base.transpose(1, 3),
        base[:, :, 1:],
        sample_input(name, (4, 6, 8)).permute(2, 0, 1),
        sample_input(name, (9, 10, 3)),
        sample_input(name, (6, 7)).t(),  # ASH's rows of it are copied to contiguous ones: the same kernels
    ]
    with K.use(**PATHS["compiled"]):
        for grad in (False, True):  # the first forward and backward of this dtype may compile
            call(base, grad)
        ready = kernels()
        for x in inputs:
            for grad in (False, True):
                call(x, grad)
            with torch.no_grad():
                kfn(name)(x)
        assert len(compiled_calls) >= 3 * len(inputs)
        assert kernels() == ready, "a new shape, layout or grad mode compiled a kernel again"
        if name == "smu":
            # a second alpha: the same kernels (one per label, ready), no new entry, no compile
            labels = [k["label"] for k in ready]
            assert {"smu_forward_float32", "smu_backward_float32"} <= set(labels)
            assert len(labels) == len(set(labels)) and all(k["state"] == "ready" for k in ready), ready
            for alpha in (0.25, 0.01):
                compiled_calls.clear()
                for grad in (False, True):
                    out = call(base, grad, alpha=alpha)
                    torch.testing.assert_close(out, F.smu(base, alpha=alpha), rtol=2e-6, atol=1e-6)
                assert sorted(compiled_calls) == ["smu_backward_float32", *["smu_forward_float32"] * 2], alpha
            assert kernels() == ready, "a new alpha compiled a kernel again"


@pytest.mark.parametrize("name", ["smu", "ash"])
def test_cpu_min_numel_is_the_threshold(name, compiled_calls):
    x = sample_input(name, (2, 3, 4, 5))
    n = x.numel()
    for threshold, expected in ((n + 1, "eager"), (n, "compiled"), (settings.DEFAULT_CPU_MIN_NUMEL, "eager")):
        compiled_calls.clear()
        with K.use(cpu="compiled", cpu_min_numel=threshold):
            assert dispatch.fast_path(x, (), triton=True) == expected
            out = kfn(name)(x)
        assert bool(compiled_calls) == (expected == "compiled"), threshold
        torch.testing.assert_close(out, getattr(F, name)(x))
    with K.use(cpu="eager", cpu_min_numel=0):
        assert dispatch.fast_path(x, (), triton=True) == "eager"
        assert dispatch.fast_path(torch.empty(0), (), triton=True) == "eager"
    with K.use(cpu="compiled", cpu_min_numel=0):
        assert dispatch.fast_path(torch.empty(0, 3), (), triton=True) == "eager"
        assert dispatch.fast_path(x, (torch.ones(()), torch.ones(1)), triton=True) == "compiled"
        assert dispatch.fast_path(x, (torch.ones(3, 1, 1),), triton=True) == "eager"


# --------------------------------------------------------------------------------------------------
# Settings.
# --------------------------------------------------------------------------------------------------


def test_bad_settings_raise_with_a_clear_message(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    before = K.current()
    cases = [
        ({"cpu": "gpu"}, ValueError, r"cpu='gpu' is not one of \('compiled', 'eager', 'triton'\)"),
        ({"cuda": "compiled"}, ValueError, r"cuda='compiled' is not one of"),
        ({"cpu_min_numel": -1}, ValueError, r"cpu_min_numel=-1 must be an int >= 0"),
        ({"cpu_min_numel": 1.5}, ValueError, r"cpu_min_numel=1.5 must be an int"),
        ({"cpu_min_numel": True}, ValueError, r"cpu_min_numel=True must be an int"),
        ({"compile": "later"}, ValueError, r"compile='later' is not one of \('background', 'sync'\)"),
        (
            {"gpu": "eager"},
            TypeError,
            r"unknown setting\(s\) \['gpu'\]; the settings are \['compile', 'cpu', 'cpu_min_numel', 'cuda'\]",
        ),
        ({"cpu_pool_mb": 64}, TypeError, r"unknown setting\(s\) \['cpu_pool_mb'\]"),  # the output pool is gone
        ({"cpu": "triton"}, ValueError, r"TRITON_INTERPRET=1"),
    ]
    for changes, error, match in cases:
        with pytest.raises(error, match=match), K.use(**changes):
            pytest.fail("the block must not run")
        with pytest.raises(error, match=match):
            K.configure(**changes)
        assert K.current() == before, changes
    with pytest.raises(ValueError, match="cpu='gpu'"):
        settings.KernelSettings(cpu="gpu")


def test_use_restores_the_previous_settings_even_after_an_exception():
    before = K.current()
    with pytest.raises(RuntimeError, match="boom"), K.use(cpu="eager", cpu_min_numel=5) as inside:
        assert inside == K.current()
        assert (inside.cpu, inside.cpu_min_numel, inside.cuda) == ("eager", 5, before.cuda)
        raise RuntimeError("boom")
    assert K.current() == before
    with K.use(cpu="eager"):
        with K.use(cpu_min_numel=7):
            assert (K.current().cpu, K.current().cpu_min_numel) == ("eager", 7)
        assert (K.current().cpu, K.current().cpu_min_numel) == ("eager", before.cpu_min_numel)
    assert K.current() == before


def test_configure_changes_the_settings_for_good():
    before = K.current()
    try:
        changed = K.configure(cpu="eager", cpu_min_numel=11)
        expected = settings.KernelSettings(cpu="eager", cuda=before.cuda, cpu_min_numel=11, compile=before.compile)
        assert changed == K.current() == expected
        with K.use(cpu="compiled"):
            assert K.current().cpu_min_numel == 11
        assert K.current() == changed
    finally:
        K.configure(cpu=before.cpu, cuda=before.cuda, cpu_min_numel=before.cpu_min_numel, compile=before.compile)
    assert K.current() == before


def test_settings_from_the_environment(monkeypatch):
    for var in ("ACTPLUG_CPU_KERNELS", "ACTPLUG_CUDA_KERNELS", "ACTPLUG_CPU_MIN_NUMEL", "ACTPLUG_COMPILE"):
        monkeypatch.delenv(var, raising=False)
    assert settings._from_environment() == settings.KernelSettings()
    assert settings.KernelSettings() == settings.KernelSettings(
        "compiled", "triton", settings.DEFAULT_CPU_MIN_NUMEL, "background"
    )
    monkeypatch.setenv("ACTPLUG_CPU_KERNELS", "eager")
    monkeypatch.setenv("ACTPLUG_CUDA_KERNELS", "eager")
    monkeypatch.setenv("ACTPLUG_CPU_MIN_NUMEL", "5")
    assert settings._from_environment() == settings.KernelSettings("eager", "eager", 5)
    monkeypatch.setenv("ACTPLUG_COMPILE", "sync")
    assert settings._from_environment() == settings.KernelSettings("eager", "eager", 5, compile="sync")
    monkeypatch.setenv("ACTPLUG_COMPILE", "later")
    with pytest.raises(ValueError, match=r"compile='later' is not one of \('background', 'sync'\)"):
        settings._from_environment()
    monkeypatch.delenv("ACTPLUG_COMPILE")
    monkeypatch.setenv("ACTPLUG_CPU_POOL_MB", "0")  # the removed output pool's variable is ignored
    assert settings._from_environment() == settings.KernelSettings("eager", "eager", 5)
    monkeypatch.setenv("ACTPLUG_CPU_MIN_NUMEL", "lots")
    with pytest.raises(ValueError, match="ACTPLUG_CPU_MIN_NUMEL='lots' must be an integer"):
        settings._from_environment()
    monkeypatch.setenv("ACTPLUG_CPU_MIN_NUMEL", "5")
    monkeypatch.setenv("ACTPLUG_CPU_KERNELS", "gpu")
    with pytest.raises(ValueError, match="cpu='gpu'"):
        settings._from_environment()


# --------------------------------------------------------------------------------------------------
# Layout helpers.
# --------------------------------------------------------------------------------------------------


def _distinct(shape) -> torch.Tensor:
    return torch.arange(math.prod(shape), dtype=F32).reshape(shape)


@pytest.mark.parametrize(
    ("make", "dense"),
    [
        (lambda: _distinct((2, 3, 4, 5)), True),
        (lambda: _distinct((2, 3, 4, 5)).to(memory_format=torch.channels_last), True),
        (lambda: _distinct((2, 3, 4, 5)).permute(3, 1, 0, 2), True),
        (lambda: _distinct((2, 1, 4, 5)).as_strided((2, 1, 4, 5), (20, 999, 5, 1)), True),  # size 1: any stride
        (lambda: _distinct((2, 3, 4, 5))[1:], True),  # an offset, still one block
        (lambda: torch.tensor(3.0), True),
        (lambda: torch.empty(0, 3), True),
        (lambda: _distinct((2, 6, 4, 5))[:, ::2], False),
        (lambda: _distinct((2, 3, 4, 5))[..., :4], False),
        (lambda: _distinct((1, 5)).expand(3, 5), False),
        (lambda: _distinct((10,)).as_strided((3, 4), (2, 1)), False),  # overlapping
    ],
    ids=[
        "contiguous",
        "channels_last",
        "permuted",
        "size-1-odd-stride",
        "offset",
        "0-d",
        "empty",
        "step",
        "gap",
        "expanded",
        "overlapping",
    ],
)
def test_is_dense_and_flatten_round_trip(make, dense):
    x = make()
    assert layout.is_dense(x.shape, x.stride()) is dense
    flat, strides = layout.flatten(x)
    assert flat.ndim == 1 and flat.numel() == x.numel() and flat.is_contiguous()
    if dense:
        assert strides == x.stride()
        if x.numel():
            assert flat.data_ptr() == x.data_ptr()  # a view of x's block, no copy
            assert flat.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    else:
        assert strides == x.contiguous().stride()
    assert torch.equal(layout.unflatten(flat, x.shape, strides), x)
    # a kernel's result (a new flat tensor in the same order) comes back with those strides
    result = layout.unflatten(flat * 2 + 1, x.shape, strides)
    assert result.stride() == strides and torch.equal(result, x * 2 + 1)
    # an incoming gradient in any layout, arranged like the flat input
    for grad in (
        x * 3,
        (x * 3).contiguous(),
        (x * 3).clone(memory_format=torch.channels_last) if x.ndim == 4 else x * 3,
    ):
        arranged = layout.flatten_like(grad, x.shape, strides)
        assert arranged.shape == (x.numel(),)
        assert torch.equal(layout.unflatten(arranged, x.shape, strides), grad)


@pytest.mark.parametrize("perm", list(itertools.permutations(range(4))), ids=lambda p: "".join(map(str, p)))
def test_flatten_of_every_permuted_layout_is_a_view(perm):
    base = _distinct((2, 3, 4, 5))
    x = base.permute(perm)
    assert layout.is_dense(x.shape, x.stride()) and layout.same_layout(x, x)
    flat, strides = layout.flatten(x)
    assert strides == x.stride()
    assert flat.data_ptr() == base.data_ptr()
    assert torch.equal(flat, base.reshape(-1))  # memory order
    assert torch.equal(layout.unflatten(flat, x.shape, strides), x)
    assert torch.equal(layout.unflatten(-flat, x.shape, strides), -x)
    grad = torch.randn(x.shape)
    assert not layout.same_layout(grad, x) or perm == (0, 1, 2, 3)
    assert torch.equal(layout.unflatten(layout.flatten_like(grad, x.shape, strides), x.shape, strides), grad)
    # a gradient with x's own layout is used in place
    same = torch.randn(2, 3, 4, 5).permute(perm)
    assert layout.flatten_like(same, x.shape, strides).data_ptr() == same.data_ptr()


ROW_DIMS = [(1, 2, 3), (3,), (1,), (0,), (2, 3), (0, 2)]


@pytest.mark.parametrize("dims", ROW_DIMS, ids=lambda d: "-".join(map(str, d)))
@pytest.mark.parametrize("kind", ["contiguous", "channels_last", "permuted", "sliced"])
def test_rows_and_unrows(kind, dims):
    base = _distinct((2, 3, 4, 5))
    x = {
        "contiguous": base,
        "channels_last": base.to(memory_format=torch.channels_last),
        "permuted": _distinct((5, 3, 2, 4)).permute(2, 1, 3, 0),
        "sliced": _distinct((2, 6, 4, 5))[:, ::2],
    }[kind]
    matrix, perm = layout.rows(x, dims)
    kept = [d for d in range(4) if d not in dims]
    n_rows = math.prod(x.shape[d] for d in kept)
    assert matrix.shape == (n_rows, x.numel() // n_rows)
    assert sorted(perm) == [0, 1, 2, 3] and set(perm[len(kept) :]) == set(dims)
    # each row is one sample: the elements that share the kept indices
    samples = x.permute(*kept, *dims).reshape(n_rows, -1).sort(dim=1).values
    got = matrix.sort(dim=1).values
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, samples.tolist()))
    assert torch.equal(matrix.sum(1).sort().values, x.sum(dims).reshape(-1).sort().values)
    back = layout.unrows(matrix, x, perm)
    assert back.shape == x.shape and torch.equal(back, x)
    assert torch.equal(layout.unrows(matrix.contiguous() * 2, x, perm), x * 2)
    if dims == (1, 2, 3) and kind in ("contiguous", "channels_last"):
        assert matrix.data_ptr() == x.data_ptr() and matrix.is_contiguous(), "per-sample rows are a view"
        assert layout.unrows(matrix, x, perm).stride() == x.stride()
