"""Fit the rational functions behind the fused CPU kernels (``actplug/activations/_rational.py``).

Library exp, log and erf cost several times a multiply-add when vectorised; on a bounded range a
rational function does the same job with a dozen fused multiply-adds and one division. Each target
here is ``f(x) = x P(t) / Q(t)`` with Q(0) = 1 and t in [0, 1] a simple function of x:

* ``gish``: ln(2 - exp(-e)) on e in [0, 17], t = e / 17 (past 17 it is ln 2 in float32);
* ``erf``: erf(u) on u in [0, 3.92], t = (u / 3.92)^2 (past 3.92 it is +-1 in float32);
* ``expm1``: exp(v) - 1 on v in [-17.5, 0], t = -v / 17.5 (below -17.5 it is -1 in float32);
* ``sigmoid``: 1 / (1 + exp(-v)) - 1/2 on v in [0, 18], t = (v / 18)^2 (past 18 the sigmoid is 1 in float32).

The fit minimises the relative error of f on Chebyshev nodes: Sanathanan-Koerner iterations
(the linearised problem reweighted by 1 / |Q|), then Lawson iterations toward the minimax solution,
against mpmath values at 30 digits. It prints the coefficients to paste into _rational.py, and the
errors of the fit in float64 and of its float32 evaluation (Horner with fused multiply-adds, as
the kernels compile).

    .venv/bin/python tools/fit_rational.py gish [--p 6] [--q 6]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import numpy as np

mpmath.mp.dps = 30


@dataclass(frozen=True)
class Target:
    """f(x) = x P(t) / Q(t) on x in [0, end] (or [end, 0]), with t = to_t(x) in [0, 1]."""

    end: float
    f: Callable[[mpmath.mpf], mpmath.mpf]
    to_t: Callable[[np.ndarray], np.ndarray]
    from_t: Callable[[np.ndarray], np.ndarray]


TARGETS = {
    "gish": Target(17.0, lambda e: mpmath.log(2 - mpmath.exp(-e)), lambda e: e / 17.0, lambda t: t * 17.0),
    "erf": Target(3.92, mpmath.erf, lambda u: (u / 3.92) ** 2, lambda t: np.sqrt(t) * 3.92),
    "expm1": Target(-17.5, mpmath.expm1, lambda v: v / -17.5, lambda t: t * -17.5),
    "sigmoid": Target(
        18.0, lambda v: 1 / (1 + mpmath.exp(-v)) - 0.5, lambda v: (v / 18.0) ** 2, lambda t: np.sqrt(t) * 18.0
    ),
}


def values(target: Target, x: np.ndarray) -> np.ndarray:
    """f(x) to float64 precision (through mpmath)."""
    return np.array([float(target.f(mpmath.mpf(float(v)))) for v in x])


def fit(target: Target, p_deg: int, q_deg: int, nodes: int = 4000) -> tuple[np.ndarray, np.ndarray, float]:
    """Coefficients (lowest degree first) of P and Q in t, and the float64 max relative error."""
    k = np.arange(nodes)
    t = 0.5 - 0.5 * np.cos(np.pi * (k + 0.5) / nodes)
    x = target.from_t(t)
    ratio = values(target, x) / x  # the target of P / Q
    basis_p = t[:, None] ** np.arange(p_deg + 1)
    basis_q = t[:, None] ** np.arange(1, q_deg + 1)
    weights = np.ones(nodes)
    lawson = np.ones(nodes) / nodes
    for step in range(40):
        a = np.hstack([basis_p, -ratio[:, None] * basis_q]) * (weights / ratio)[:, None]
        coef, *_ = np.linalg.lstsq(a, weights, rcond=None)
        p, q = coef[: p_deg + 1], np.concatenate([[1.0], coef[p_deg + 1 :]])
        q_val = basis_q @ q[1:] + 1.0
        rel = (basis_p @ p / q_val - ratio) / ratio
        if step >= 10:
            lawson = lawson * np.abs(rel)
            lawson /= lawson.sum()
        weights = np.sqrt(lawson * nodes) / np.abs(q_val) if step >= 10 else 1.0 / np.abs(q_val)
    return p, q, float(np.abs(rel).max())


def float32_error(target: Target, p: np.ndarray, q: np.ndarray, samples: int = 100_001) -> float:
    """Max relative error of x P(t) / Q(t) evaluated in float32 (FMA Horner) against the reference."""
    x32 = np.linspace(target.end * 1e-7, target.end, samples).astype(np.float32)
    t32 = target.to_t(x32).astype(np.float32)

    def horner(c: np.ndarray) -> np.ndarray:
        acc = np.full_like(t32, np.float32(c[-1]))
        for ci in c[-2::-1]:  # one rounding per step, like a fused multiply-add
            acc = (acc.astype(np.float64) * t32 + np.float32(ci)).astype(np.float32)
        return acc

    approx = (x32 * (horner(p) / horner(q))).astype(np.float64)
    reference = values(target, x32.astype(np.float64))
    return float(np.max(np.abs(approx - reference) / np.abs(reference)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--p", type=int, default=6, help="degree of P")
    parser.add_argument("--q", type=int, default=6, help="degree of Q")
    args = parser.parse_args()
    target = TARGETS[args.target]
    p, q, err64 = fit(target, args.p, args.q)
    name = args.target.upper()
    print(f"_{name}_P = ({', '.join(repr(float(c)) for c in p)})")
    print(f"_{name}_Q = ({', '.join(repr(float(c)) for c in q)})")
    print(f"max relative error: {err64:.3g} (float64 fit), {float32_error(target, p, q):.3g} (float32 evaluation)")


if __name__ == "__main__":
    main()
