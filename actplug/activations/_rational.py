"""Rational functions fitted to float32 precision: exp, erf, log and sigmoid without a library call."""

from __future__ import annotations

import math

import torch

# Rational functions x P(t) / Q(t), Q(0) = 1, t in [0, 1], fitted by tools/fit_rational.py for
# float32 (relative error of the fit 2e-8 to 6e-8; evaluated in float32 with FMAs, about 4e-7, the
# accuracy of the plain math). Library exp, log and erf cost several times as much when
# vectorised; a dozen fused multiply-adds and one division replace them on a bounded range, past
# which the function is constant to float32's last bit.
# Each is reproduced by the command under its name (tests/test_fused_math.py checks that it is).
#   expm1(v) on [-17.5, 0], t = v / -17.5 (below, exp(v) < 2.5e-8 and expm1 rounds to -1)
#   tools/fit_rational.py expm1 --p 5 --q 6
_EXPM1_END = -17.5
_EXPM1_P = (
    0.9999999776206703,
    2.2490222819458108,
    12.347315277618165,
    22.764875177870024,
    37.81156563476813,
    44.76927846846709,
)
_EXPM1_Q = (
    1.0,
    10.99900668412946,
    57.548745152532895,
    188.1351053536473,
    423.1352102927188,
    649.7700779489127,
    785.8979493975194,
)
#   erf(u) on [0, 3.92], t = (u / 3.92)^2, odd (past 3.92, erf rounds to 1)
#   tools/fit_rational.py erf --p 5 --q 5
_ERF_END = 3.92
_ERF_P = (
    1.1283791461341244,
    2.9258615479524486,
    12.455358526049826,
    13.6632066785455,
    15.883828389866238,
    1.756442402957862,
)
_ERF_Q = (1.0, 7.715101512389126, 26.94415521859817, 54.31446336895555, 64.81791932952696, 32.635623268494975)
#   ln(2 - exp(-e)) on [0, 17], t = e / 17 (past 17, exp(-e) / 2 is below half an ulp of ln 2)
#   tools/fit_rational.py gish --p 6 --q 6
_GISH_END = 17.0
_GISH_P = (
    0.9999999394832628,
    19.175449952973256,
    49.56834434073732,
    237.23895702890215,
    303.39804820413076,
    945.474269517382,
    -1.0706975010990385,
)
_GISH_Q = (
    1.0,
    36.175341135258776,
    375.580979639283,
    1486.0776982233303,
    5417.333719448979,
    7773.242624121522,
    23042.943412968358,
)

#   sigmoid(v) - 1/2 on [0, 18], t = (v / 18)^2, odd (past 18 the sigmoid rounds to 1; below -18
#   it is under 1.6e-8 and taken as 0: the sigmoid is exact to 2e-7 absolute, a few ulps of 1/2)
#   tools/fit_rational.py sigmoid --p 4 --q 4
_SIGMOID_END = 18.0
_SIGMOID_P = (0.2499999948609151, 2.7096560631381523, 5.733622969949916, 2.7381079668215724, 0.14371648955571759)
_SIGMOID_Q = (1.0, 37.83860987810475, 169.77864277200143, 174.6112988838815, 33.47517803257139)


def horner(coeffs: tuple[float, ...], t: torch.Tensor) -> torch.Tensor:
    """The polynomial with ``coeffs`` (lowest degree first) at t: one FMA per degree when compiled."""
    acc = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = c + t * acc
    return acc


def _in_variable(coeffs: tuple[float, ...], scale: float) -> tuple[float, ...]:
    """The coefficients of P(scale w) as a polynomial in w: the fitted variable t = scale w costs no
    multiply in the loop (the tables stay as the fit prints them)."""
    return tuple(c * scale**k for k, c in enumerate(coeffs))


# Past each function's end the kernels take its limit with a where (a compare and a blend) instead
# of clamping the argument first (Inductor's NaN-propagating minimum and maximum cost three vector
# instructions each): the rational function's value there, possibly inf / inf, is discarded.
_EXPM1_P_V = _in_variable(_EXPM1_P, 1.0 / _EXPM1_END)
_EXPM1_Q_V = _in_variable(_EXPM1_Q, 1.0 / _EXPM1_END)
_ERF_P_V = _in_variable(_ERF_P, 1.0 / _ERF_END**2)
_ERF_Q_V = _in_variable(_ERF_Q, 1.0 / _ERF_END**2)
_GISH_P_V = _in_variable(_GISH_P, 1.0 / _GISH_END)
_GISH_Q_V = _in_variable(_GISH_Q, 1.0 / _GISH_END)
_SIGMOID_P_V = _in_variable(_SIGMOID_P, 1.0 / _SIGMOID_END**2)
_SIGMOID_Q_V = _in_variable(_SIGMOID_Q, 1.0 / _SIGMOID_END**2)


def expm1_nonpositive(v: torch.Tensor) -> torch.Tensor:
    """expm1(v) for v <= 0 (NaN stays NaN; below -17.5, -inf included, it is -1)."""
    return torch.where(v < _EXPM1_END, -1.0, v * horner(_EXPM1_P_V, v) / horner(_EXPM1_Q_V, v))


def erf(u: torch.Tensor) -> torch.Tensor:
    """erf(u) for any u (NaN stays NaN; past +-3.92, +-inf included, it is +-1)."""
    w = u * u
    inside = u * horner(_ERF_P_V, w) / horner(_ERF_Q_V, w)
    return torch.where(u > _ERF_END, 1.0, torch.where(u < -_ERF_END, -1.0, inside))


def log_two_minus_exp_neg(e: torch.Tensor) -> torch.Tensor:
    """ln(2 - exp(-e)) for e >= 0 (Gish's log term with e = exp(x)): no exp, no log; ln 2 past 17."""
    return torch.where(e > _GISH_END, math.log(2.0), e * horner(_GISH_P_V, e) / horner(_GISH_Q_V, e))


def sigmoid(v: torch.Tensor) -> torch.Tensor:
    """1 / (1 + e^-v) to an absolute error below 2e-7 (a few ulps relative where it is above 1/2), with
    no exp: a gate whose product with x is exact to float32's resolution of x. NaN stays NaN."""
    w = v * v
    inside = 0.5 + v * horner(_SIGMOID_P_V, w) / horner(_SIGMOID_Q_V, w)
    return torch.where(v > _SIGMOID_END, 1.0, torch.where(v < -_SIGMOID_END, 0.0, inside))
