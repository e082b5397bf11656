"""The building blocks of the fused CPU kernels (the ``*_fused`` forms in actplug/activations/*.py and the
rational functions of actplug.activations._rational) on dense grids.

The kernel tests compare whole activations on a few hundred special values; here each rational
function and each PFLU quotient meets tens of thousands of points across its whole range, in
float32 eagerly and compiled as the kernels compile it (with fused multiply-adds), against float64.
The rational functions' coefficients must also be what tools/fit_rational.py fits.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

import actplug.kernels
from actplug.activations import _rational as rational
from actplug.activations import pflu as fused_pflu
from actplug.functional import reference
from actplug.kernels.compiler import MISS, Compiler, Job

ROOT = Path(__file__).resolve().parents[1]
ULP = 2.0**-24  # half of float32's epsilon: the relative spacing just below 1


def relative_error_in_ulps(got: torch.Tensor, expected: torch.Tensor) -> float:
    got, expected = got.double(), expected.double()
    return float(((got - expected).abs() / expected.abs()).max() / ULP)


# The tests' own compiler: the CPU kernels' Inductor options (FMA contraction), none of the process's kernels.
COMPILER = Compiler()


def compiled(fn, *args: torch.Tensor):
    """fn(*args) through an Inductor kernel compiled as the CPU kernels compile theirs (with FMA contraction)."""
    key = (fn, tuple((a.shape, a.dtype) for a in args))

    def kernel(*inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:  # kernels return tuples of tensors
        out = fn(*inputs)
        return out if isinstance(out, tuple) else (out,)

    with actplug.kernels.use(compile="sync"):
        found = COMPILER.get(key, lambda: Job.like(kernel, f"test_{fn.__name__}", args, ()))
    assert found is not None, COMPILER.status()
    result = COMPILER.run(key, found, args)
    assert result is not MISS, COMPILER.status()  # the compiled kernel served the call (no eager fallback)
    return result[0] if len(result) == 1 else result


def both_ways(fn, *args: torch.Tensor) -> dict[str, torch.Tensor]:
    """fn(*args) evaluated eagerly and through the compiled CPU path (Inductor with FMA contraction)."""
    return {"eager": fn(*args), "compiled": compiled(fn, *args)}


def grid(low: float, high: float, n: int = 40_001) -> torch.Tensor:
    return torch.linspace(low, high, n, dtype=torch.float64).float()


def magnitudes(low_exp: int, high_exp: int, n: int = 4_001) -> torch.Tensor:
    return torch.logspace(low_exp, high_exp, n, dtype=torch.float64).clamp_max(3.4e38).float()


# --------------------------------------------------------------------------------------------------
# Rational functions.
# --------------------------------------------------------------------------------------------------


def test_rational_erf_matches_float64_everywhere():
    u = torch.cat([grid(-6, 6), magnitudes(-30, 38), -magnitudes(-30, 38)])
    expected = torch.erf(u.double())
    for how, got in both_ways(rational.erf, u).items():
        assert relative_error_in_ulps(got, expected) < 8, how
    special = rational.erf(torch.tensor([math.inf, -math.inf, math.nan, 0.0]))
    assert special[:2].tolist() == [1.0, -1.0] and special[2].isnan() and special[3] == 0


def test_rational_expm1_matches_float64_everywhere():
    v = torch.cat([grid(-30, 0)[:-1], -magnitudes(-30, 38)])  # 0 itself below
    expected = torch.expm1(v.double())
    for how, got in both_ways(rational.expm1_nonpositive, v).items():
        assert relative_error_in_ulps(got, expected) < 8, how
    special = rational.expm1_nonpositive(torch.tensor([-math.inf, math.nan, 0.0, -0.0]))
    assert abs(special[0] + 1) <= 2 * ULP and special[1].isnan() and special[2] == 0 and special[3] == 0


def test_rational_gish_log_term_matches_float64_everywhere():
    e = torch.cat([grid(0, 40), magnitudes(-30, 38)])
    e64 = e.double()
    expected = torch.log1p(-torch.expm1(-e64))  # ln(2 - e^-e) = ln(1 + (1 - e^-e))
    for how, got in both_ways(rational.log_two_minus_exp_neg, e).items():
        assert relative_error_in_ulps(got[e > 0], expected[e > 0]) < 8, how
        assert got[e == 0].eq(0).all()


def test_rational_sigmoid_is_within_2e_7_absolute_and_ulps_above_one_half():
    v = torch.cat([grid(-40, 40), magnitudes(-30, 38), -magnitudes(-30, 38)])
    expected = torch.sigmoid(v.double())
    for how, got in both_ways(rational.sigmoid, v).items():
        assert float((got.double() - expected).abs().max()) < 2e-7, how
        upper = v >= 0
        assert relative_error_in_ulps(got[upper], expected[upper]) < 8, how
        assert got[v < -18].eq(0).all() and got[v > 18].eq(1).all(), how
    special = rational.sigmoid(torch.tensor([math.inf, -math.inf, math.nan]))
    assert special[0] == 1 and special[1] == 0 and special[2].isnan()


def _load_fit_tool():
    spec = importlib.util.spec_from_file_location("fit_rational", ROOT / "tools" / "fit_rational.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.mark.parametrize(
    ("target", "p_deg", "q_deg", "p_name", "q_name"),
    [
        ("expm1", 5, 6, "_EXPM1_P", "_EXPM1_Q"),
        ("erf", 5, 5, "_ERF_P", "_ERF_Q"),
        ("gish", 6, 6, "_GISH_P", "_GISH_Q"),
        ("sigmoid", 4, 4, "_SIGMOID_P", "_SIGMOID_Q"),
    ],
)
def test_coefficients_are_what_the_fitting_tool_gives(target, p_deg, q_deg, p_name, q_name):
    tool = _load_fit_tool()
    p, q, max_error = tool.fit(tool.TARGETS[target], p_deg, q_deg)
    assert max_error < 1e-7
    torch.testing.assert_close(torch.tensor(p), torch.tensor(getattr(rational, p_name), dtype=torch.float64))
    torch.testing.assert_close(torch.tensor(q), torch.tensor(getattr(rational, q_name), dtype=torch.float64))


# --------------------------------------------------------------------------------------------------
# The PFLU family's quotients: no cancellation left of 0, no overflow before the result's own.
# --------------------------------------------------------------------------------------------------


def pflu_reference(x64: torch.Tensor) -> torch.Tensor:
    """PFLU in float64 without cancellation: x (s + |x|) / (2 s) right of 0, x / (2 s (s + |x|)) left."""
    a = x64.abs()
    s = torch.sqrt(1.0 + a * a)
    return torch.where(x64 >= 0, x64 * (s + a) / (2 * s), x64 / (2 * s * (s + a)))


def pflu_slope_reference(x64: torch.Tensor) -> torch.Tensor:
    x = x64.clone().requires_grad_()
    (g,) = torch.autograd.grad(pflu_reference(x).sum(), x)
    return g


# Left of -4.6e18 the gate g(x) = 1 / (2 s (s + |x|)) is below float32's smallest normal number, so
# x g keeps fewer digits (PFLU(x) = 1 / (4 x) is then below 6e-20 in magnitude), and left of
# -1.3e19 the denominator overflows: the kernels give -0 there (as the plain math does from -1e30 on).
PFLU_EXACT_RANGE = 4.6e18
PFLU_FINITE_DENOMINATOR = 1.3e19


def test_pflu_quotient_matches_float64_across_the_float_range():
    x = torch.cat([grid(-50, 50), magnitudes(-30, 38), -magnitudes(-30, 38), torch.tensor([0.0, -0.0])])
    x64 = x.double()
    expected = pflu_reference(x64)
    exact = (x.abs() < PFLU_EXACT_RANGE) & (x != 0)
    subnormal_gate = (x <= -PFLU_EXACT_RANGE) & (x > -PFLU_FINITE_DENOMINATOR)
    for how, got in both_ways(fused_pflu.pflu_fused, x).items():
        assert relative_error_in_ulps(got[exact], expected[exact]) < 8, how  # 4 eps, as the kernel tests
        assert float((got[subnormal_gate].double() - expected[subnormal_gate]).abs().max()) < 1e-25, how
        assert relative_error_in_ulps(got[subnormal_gate], expected[subnormal_gate]) < 64, how
        assert got[x >= PFLU_EXACT_RANGE].equal(x[x >= PFLU_EXACT_RANGE]), how
        assert got[x <= -PFLU_FINITE_DENOMINATOR].abs().max() < 2e-20, how
        assert got[x == 0].eq(0).all(), how


def test_pflu_slope_quotient_matches_float64_across_the_float_range():
    x = torch.cat([grid(-50, 50), magnitudes(-30, 38), -magnitudes(-30, 38)])
    expected = pflu_slope_reference(x.double())
    ones = torch.ones_like(x)
    for how, got in both_ways(fused_pflu.pflu_fused_backward, x, ones).items():
        # absolute: the slope crosses 0 at x = -0.786 (where any formula's rounding is absolute)
        assert float((got.double() - expected).abs().max()) < 4 * ULP, how
        # relative, away from that crossing, up to where the slope's clamp starts (1e9)
        away = ((x < -2) | (x > -0.5)) & (x.abs() < 1e9)
        assert relative_error_in_ulps(got[away], expected[away]) < 8, how


def test_lpflu_quotients_match_the_plain_math_and_its_slope_gradient():
    x = torch.cat([grid(-50, 50), magnitudes(-30, 18), -magnitudes(-30, 18)])
    grad = torch.linspace(-2, 2, x.numel())
    for slope in (0.0, 0.01, 0.3):
        a = torch.tensor(slope)
        y = fused_pflu.lpflu_fused(x, a)
        dx, grads = fused_pflu.lpflu_fused_backward(x, grad, a, needs=("negative_slope",))
        da = grads["negative_slope"]
        p_dx, p_grads = reference.lpflu_backward(x.double(), grad.double(), slope, needs=("negative_slope",))
        p_da = p_grads["negative_slope"]
        torch.testing.assert_close(y.double(), reference.lpflu(x.double(), slope), rtol=6 * ULP, atol=1e-30)
        torch.testing.assert_close(dx.double(), p_dx, rtol=8 * ULP, atol=4 * ULP)
        torch.testing.assert_close(da.double(), p_da, rtol=1e-5, atol=0.0)
