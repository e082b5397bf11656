"""Independent reference implementations of every built-in activation, for the tests.

Each function is the literal formula of /work/shared/ACTIVATIONS.md (the naive form, no rewriting
for stability), meant to be evaluated in float64 where its rounding is far below the tolerances the
tests use. Parameters may be Python floats or float64 tensors (so that autograd of the reference
gives the true parameter gradients); tensors may also have the shape of ``x`` to get per-element
parameter gradients.

The signatures match :mod:`actplug.functional`, so ``REFERENCES[name](x, **params)`` and
``getattr(actplug.functional, name)(x, **params)`` compute the same function.

The second half of the file holds small helpers shared by test_functional.py and test_modules.py:
the inputs with special values, the per-activation parameter cases and elementwise tolerances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

SQRT_HALF = 1.0 / math.sqrt(2.0)
SMU_MU = 1e6
SMU1_MU = 4.352665993287951e-09


# --------------------------------------------------------------------------------------------------
# The formulas (ACTIVATIONS.md), literally.
# --------------------------------------------------------------------------------------------------


def smu(x, alpha=0.25, mu=SMU_MU):
    """smu.txt eq. 6: ((1+a) x + (1-a) x erf(mu (1-a) x)) / 2."""
    return ((1 + alpha) * x + (1 - alpha) * x * torch.erf(mu * (1 - alpha) * x)) / 2


def smu1(x, alpha=0.25, mu=SMU1_MU):
    """smu.txt eq. 3 with x1 = x, x2 = a x: ((1+a) x + sqrt(((1-a) x)^2 + mu^2)) / 2."""
    return ((1 + alpha) * x + torch.sqrt(((1 - alpha) * x) ** 2 + mu**2)) / 2


def pflu(x):
    """PFLU: x (1 + x / sqrt(1 + x^2)) / 2."""
    return x * (1 + x / torch.sqrt(1 + x**2)) / 2


def lpflu(x, negative_slope=0.01):
    """lpflu.txt eq. 8: (1 - a) PFLU(x) + a x."""
    a = negative_slope
    return (1 - a) * pflu(x) + a * x


def fpflu(x):
    """FPFLU: max(x, x / (1 + x^2))."""
    return torch.maximum(x, x / (1 + x**2))


def gish(x):
    """Gish: x ln(2 - exp(-exp(x)))."""
    return x * torch.log(2 - torch.exp(-torch.exp(x)))


def srelu(x, alpha=1.0, beta=0.1):
    """srelu.txt III.A: alpha x if x > 0, beta (exp(x) - 1) if x <= 0.

    Piecewise: each branch is evaluated only on its own side (the other side gets 0), so that
    exp of a large positive x never reaches autograd.
    """
    positive = x > 0
    x_left = torch.where(positive, torch.zeros_like(x), x)
    return torch.where(positive, alpha * x, beta * (torch.exp(x_left) - 1))


def ash_reference_dims(ndim: int, dim=None) -> tuple[int, ...]:
    """Dimensions of one sample: (C, H, W, ...) for ndim >= 4, the last one for (B, D) and (B, T, D),
    everything for 0-D and 1-D inputs; or ``dim`` when given."""
    if dim is not None:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        return tuple(sorted(d % ndim for d in dims))
    if ndim >= 4:
        return tuple(range(1, ndim))
    if ndim >= 2:
        return (ndim - 1,)
    return tuple(range(ndim))


def ash_reference_stats(x, dim=None, eps=0.0):
    """Per-sample mean and population standard deviation sqrt(mean((x - mean)^2) + eps), keepdim."""
    dims = ash_reference_dims(x.ndim, dim)
    if not dims:  # a 0-D tensor: its own sample
        return x, torch.zeros_like(x) + math.sqrt(eps)
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    return mean, torch.sqrt(var + eps)


def ash(x, z=0.0, alpha=1.0, dim=None, eps=0.0):
    """ash.txt eq. 10: x sigmoid(2 alpha (x - mu_X - z sigma_X)), statistics per sample."""
    mean, std = ash_reference_stats(x, dim, eps)
    return x * torch.sigmoid(2 * alpha * (x - mean - z * std))


REFERENCES = {
    "ash": ash,
    "fpflu": fpflu,
    "gish": gish,
    "lpflu": lpflu,
    "pflu": pflu,
    "smu": smu,
    "smu1": smu1,
    "srelu": srelu,
}

# The activations the built-in plugin registers; the tests cover every one of them.
NAMES = tuple(sorted(REFERENCES))
ELEMENTWISE = tuple(n for n in NAMES if n != "ash")

# --------------------------------------------------------------------------------------------------
# Parameter cases.
# --------------------------------------------------------------------------------------------------

# Functional parameters (keyword arguments of actplug.functional.<name> and of the reference).
FUNCTIONAL_CASES: dict[str, list[dict]] = {
    "smu": [
        {"alpha": 0.25, "mu": SMU_MU},
        {"alpha": 0.01, "mu": 2.5},
        {"alpha": 0.0, "mu": SQRT_HALF},
        {"alpha": 1.5, "mu": -0.8},
    ],
    "smu1": [
        {"alpha": 0.25, "mu": SMU1_MU},
        {"alpha": 0.01, "mu": 0.5},
        {"alpha": 1.5, "mu": 0.3},
    ],
    "lpflu": [{"negative_slope": 0.01}, {"negative_slope": 0.0}, {"negative_slope": 0.3}],
    "srelu": [{"alpha": 1.0, "beta": 0.1}, {"alpha": 1.0, "beta": 1.0}, {"alpha": 0.5, "beta": 2.0}],
    "ash": [
        {"z": 0.0, "alpha": 1.0},
        {"z": 0.5, "alpha": 2.0},
        {"z": -1.0, "alpha": 0.25, "eps": 1e-3},
    ],
    "pflu": [{}],
    "fpflu": [{}],
    "gish": [{}],
}

# Module constructor keyword arguments (first: the defaults).
MODULE_CASES: dict[str, list[dict]] = {
    "smu": [{}, {"alpha": 0.01, "mu": 2.5}, {"alpha": 0.0, "mu": SQRT_HALF, "trainable": False}],
    "smu1": [{}, {"alpha": 0.01, "mu": 0.5}, {"alpha": 1.5, "mu": 0.3, "trainable": False}],
    "lpflu": [{}, {"lower": 0.1, "upper": 0.3, "momentum": 0.5}, {"lower": 0.05, "upper": 0.2, "randomized": False}],
    "srelu": [{}, {"alpha": 1.0, "beta": 1.0}, {"alpha": 0.5, "beta": 2.0, "trainable": True}],
    "ash": [{}, {"z": 0.5, "alpha": 2.0}, {"z": -1.0, "alpha": 0.25, "eps": 1e-3}],
    "pflu": [{}],
    "fpflu": [{}],
    "gish": [{}],
}

# Smooth settings for gradcheck / gradgradcheck, with the parameters that get checked too.
SMOOTH_CASES: dict[str, dict] = {
    "smu": {"alpha": 0.25, "mu": 2.5},
    "smu1": {"alpha": 0.25, "mu": 0.5},
    "lpflu": {"negative_slope": 0.2},
    "srelu": {"alpha": 0.7, "beta": 1.3},
    "ash": {"z": 0.3, "alpha": 0.8},
    "pflu": {},
    "fpflu": {},
    "gish": {},
}

# Parameters that are tensors a user can train (functional arguments accepting a tensor).
TENSOR_PARAMS: dict[str, tuple[str, ...]] = {
    "smu": ("mu",),
    "smu1": ("mu",),
    "lpflu": ("negative_slope",),
    "srelu": ("alpha", "beta"),
    "ash": ("z", "alpha"),
    "pflu": (),
    "fpflu": (),
    "gish": (),
}

# Names whose gradient jumps at 0 for some parameters (inputs are kept away from 0 for gradcheck).
KINKED = ("srelu", "fpflu")


def case_id(params: dict) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "default"


def module_params(name: str, module: torch.nn.Module) -> dict:
    """The functional parameters a module in evaluation mode computes with."""
    if name in ("smu", "smu1"):
        return {"alpha": module.alpha, "mu": module.mu}
    if name == "lpflu":
        slope = module.running_slope if module.randomized else (module.lower + module.upper) / 2
        return {"negative_slope": slope}
    if name == "srelu":
        return {"alpha": module.alpha, "beta": module.beta}
    if name == "ash":
        return {"z": module.z, "alpha": module.alpha, "dim": module.dim, "eps": module.eps}
    return {}


def as_float64(params: dict) -> dict:
    """Tensor parameters detached and converted to float64 (for the reference)."""
    return {k: v.detach().to(torch.float64) if isinstance(v, torch.Tensor) else v for k, v in params.items()}


# --------------------------------------------------------------------------------------------------
# Inputs.
# --------------------------------------------------------------------------------------------------

# One group of values per sample (row), each of one magnitude, so that per-sample statistics (ASH)
# see a homogeneous scale; together they cover 0, +-tiny, +-1 and large values up to float16's max.
SPECIAL_GROUPS = (
    (1.0, (0.0, 1e-7, -1e-7, 1.0, -1.0, 0.5, -2.0)),
    (30.0, (30.0, -30.0, 3.0, -3.0, 10.0, -10.0)),
    (1e3, (1e3, -1e3, 100.0, -300.0)),
    (6e4, (6e4, -6e4, 2e4, -4e4)),
)
SPECIAL_VALUES = tuple(v for _, group in SPECIAL_GROUPS for v in group)
HALF_VALUES = (0.0, 1e-7, -1e-7, 6e-8, -6e-8, 1e-4, -1e-4, 1.0, -1.0, 30.0, -30.0, 1e3, -1e3, 6e4, -6e4, 65504.0)


def special_input(
    sample_shape: Sequence[int] = (12,), dtype: torch.dtype = torch.float64, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A (4, *sample_shape) tensor: sample i is random normal at scale s_i holding group i's special values."""
    if generator is None:
        generator = torch.Generator().manual_seed(1234)
    n = math.prod(sample_shape)
    rows = []
    for scale, values in SPECIAL_GROUPS:
        row = torch.randn(n, generator=generator, dtype=torch.float64) * scale
        positions = torch.randperm(n, generator=generator)[: len(values)]
        row[positions] = torch.tensor(values, dtype=torch.float64)
        rows.append(row.reshape(sample_shape))
    return torch.stack(rows).to(dtype)


def away_from_zero(shape: Sequence[int], dtype=torch.float64, low: float = 0.1, seed: int = 0) -> torch.Tensor:
    """Random values with |x| >= low and both signs (for functions with a kink at 0)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    return (torch.sign(x) * (low + x.abs())).to(dtype)


# --------------------------------------------------------------------------------------------------
# Comparisons.
# --------------------------------------------------------------------------------------------------


def assert_close_tol(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol, what: str = "") -> None:
    """|actual - expected| <= atol + rtol |expected| elementwise, where atol may be a tensor.

    NaN never passes; matching infinities do. The message names the worst element.
    """
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a = actual.detach().to(torch.float64)
    e = expected.detach().to(torch.float64)
    atol_t = torch.as_tensor(atol, dtype=torch.float64)
    same_inf = torch.isinf(a) & torch.isinf(e) & (torch.sign(a) == torch.sign(e))
    diff = torch.where(same_inf, torch.zeros_like(a), (a - e).abs())
    bound = atol_t + rtol * e.abs()
    bad = ~(diff <= bound)  # NaN in diff counts as bad
    if bad.any():
        ratio = torch.where(bad, diff / bound, torch.zeros_like(diff)).nan_to_num(nan=math.inf)
        i = int(ratio.reshape(-1).argmax())
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.numel()} elements differ; worst at flat index {i}: "
            f"actual {a.reshape(-1)[i].item()!r}, expected {e.reshape(-1)[i].item()!r}, "
            f"allowed {torch.broadcast_to(bound, a.shape).reshape(-1)[i].item()!r}"
        )


def elementwise_atol(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Absolute tolerance for an elementwise activation of x: a few ulps of |x| in ``dtype`` (the
    library computes x * gate, whose rounding is relative to x), plus the reference's own rounding
    (its naive formulas lose about eps64 |x| near cancellations)."""
    eps = torch.finfo(dtype).eps
    ax = x.detach().to(torch.float64).abs()
    underflow = torch.finfo(dtype).tiny * eps  # the spacing of the dtype's subnormal numbers
    return 4 * eps * ax + 1e-13 * (1 + ax) + underflow + (0.0 if dtype == torch.float64 else 1e-12)


def ash_atol(x: torch.Tensor, params: dict, dtype: torch.dtype) -> torch.Tensor:
    """Absolute tolerance for ASH of x in ``dtype``: x times the sigmoid's slope times the rounding of
    its argument 2 alpha (x - mean - z std), which is a few ulps of the sample's largest |x|."""
    eps = torch.finfo(dtype).eps
    x64 = x.detach().to(torch.float64)
    p = as_float64(params)
    z = torch.as_tensor(p.get("z", 0.0), dtype=torch.float64)
    alpha = torch.as_tensor(p.get("alpha", 1.0), dtype=torch.float64)
    dim, eps_var = p.get("dim"), p.get("eps", 0.0)
    mean, std = ash_reference_stats(x64, dim, eps_var)
    s = torch.sigmoid(2 * alpha * (x64 - mean - z * std))
    dims = ash_reference_dims(x64.ndim, dim)
    scale = x64.abs().amax(dim=dims, keepdim=True) if dims else x64.abs()
    arg_error = 2 * alpha.abs() * (x64.abs() + (1 + z.abs()) * scale) * 32 * eps
    underflow = torch.finfo(dtype).tiny * eps
    return x64.abs() * s * (1 - s) * arg_error + 4 * eps * x64.abs() + 1e-13 * (1 + x64.abs()) + underflow


def value_tolerance(name: str, x: torch.Tensor, params: dict, dtype: torch.dtype):
    """(rtol, atol) for comparing ``name`` computed in ``dtype`` on ``x`` with the float64 reference."""
    rtol = 1e-9 if dtype == torch.float64 else 4 * torch.finfo(dtype).eps
    if name == "ash":
        return rtol, ash_atol(x, params, dtype)
    return rtol, elementwise_atol(x, dtype)
