"""The numbers behind ``swap(fit=True)``: the gap, limits, and the float64 least squares.

The gap of a layer is the relative RMS error of the new function against the old one over the
layer's fit inputs, ``sqrt(sum w (new - old)^2 / sum w old^2)`` (the absolute RMS error where the
old outputs are all 0). The least squares minimises the mean of the layers' squared gaps, with
the parameters mapped so that their declared bounds hold (``low + (high - low) sigmoid(u)``,
``low + exp(u)``, ``high - exp(u)``; SMU's and SMU-1's mu as ``exp(u)``), by Levenberg-Marquardt from
the best of several starting points.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from actplug.declaration import Param

from .fit_inputs import Inputs
from .fit_targets import Family, Limit

#: The most starting points the least squares evaluates before it optimises.
MAX_STARTS = 64
LM_ITERATIONS = 100
#: Stop when an iteration lowers the mean squared gap by less than this fraction (its square root, the gap, by 5e-10).
LM_TOLERANCE = 1e-9
#: Relative step of the central differences (about the cube root of float64's epsilon).
FD_STEP = 6e-6


@dataclass
class Problem:
    """One layer to fit: its inputs, the old activation's outputs there, and their squared norm."""

    inputs: Inputs
    target: torch.Tensor

    def __post_init__(self) -> None:
        norm = float((self.inputs.weight * self.target * self.target).sum())
        self.norm = norm if norm > 0 else 1.0
        self.root_weight = torch.sqrt(self.inputs.weight / self.norm)  # residuals' weights: sum r^2 = squared gap


def squared_gap(family: Family, problem: Problem, values: Mapping[str, torch.Tensor | float]) -> torch.Tensor:
    """The layer's squared gap at ``values``, a 0-d float64 tensor."""
    error = family.forward(problem.inputs, values) - problem.target
    return (problem.inputs.weight * error * error).sum() / problem.norm


def gap(family: Family, problem: Problem, values: Mapping[str, float]) -> float:
    """The layer's gap (relative RMS error) at ``values``."""
    with torch.no_grad():
        return math.sqrt(max(float(squared_gap(family, problem, values)), 0.0))


def limit_value(family: Family, problem: Problem, values: Mapping[str, float], name: str, limit: Limit, noise: float):
    """The first value of ``limit.ladder`` for ``name`` whose gap is at most ``noise`` (else the last)."""
    for value in limit.ladder:
        if gap(family, problem, {**values, name: value}) <= noise:
            return value
    return limit.ladder[-1]


class _Mapping:
    """One optimised variable: unconstrained u <-> the parameter's value within its bounds."""

    def __init__(self, param: Param, log_scale: bool) -> None:
        self.low, self.high, self.log = param.low, param.high, log_scale and param.low is None and param.high is None

    def value(self, u: torch.Tensor) -> torch.Tensor:
        if self.low is not None and self.high is not None:
            return self.low + (self.high - self.low) * torch.sigmoid(u)
        if self.low is not None:
            return self.low + torch.exp(u)
        if self.high is not None:
            return self.high - torch.exp(u)
        return torch.exp(u) if self.log else u

    def unconstrained(self, value: float) -> float:
        tiny = 1e-300
        if self.low is not None and self.high is not None:
            t = min(max((value - self.low) / (self.high - self.low), 1e-12), 1 - 1e-12)
            return math.log(t / (1 - t))
        if self.low is not None:
            return math.log(max(value - self.low, tiny))
        if self.high is not None:
            return math.log(max(self.high - value, tiny))
        return math.log(max(abs(value), tiny)) if self.log else value


def _clip(param: Param, value: float) -> float:
    """``value`` moved inside ``param``'s valid range (a bound the optimiser reached in rounding)."""
    if param.contains(value):
        return value
    if param.low is not None and value <= param.low:
        return param.low if not param.open_low else math.nextafter(param.low, math.inf)
    return param.high if not param.open_high else math.nextafter(param.high, -math.inf)


def least_squares(
    family: Family,
    problems: Sequence[Problem],
    shared: Sequence[str],
    layer: Sequence[str],
    base: Sequence[Mapping[str, float]],
    starts: Sequence[tuple[Mapping[str, float], Sequence[Mapping[str, float]]]],
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Fit ``shared`` names (one value for all problems) and ``layer`` names (one per problem) jointly.

    ``base[i]`` holds problem i's other values (fixed or already set); each start is a pair of
    shared values and per-problem values. Minimises the mean squared gap by Levenberg-Marquardt
    from the best start (Jacobians by central differences: a few parameters per layer, and no
    autograd machinery to load). Returns the best values found: never worse than the best start.
    """
    params = {p.name: p for p in family.params}
    maps = {n: _Mapping(params[n], n in family.log_scale) for n in (*shared, *layer)}
    slots = [("shared", n, None) for n in shared] + [("layer", n, i) for i in range(len(problems)) for n in layer]
    # The variables each problem's residuals depend on: the shared ones and its own.
    owned = [[j for j, (kind, _, i) in enumerate(slots) if kind == "shared" or i == k] for k in range(len(problems))]
    root_scale = math.sqrt(1.0 / len(problems))

    def pack(start_shared: Mapping[str, float], start_layer: Sequence[Mapping[str, float]]) -> torch.Tensor:
        return torch.tensor(
            [maps[n].unconstrained(start_shared[n] if kind == "shared" else start_layer[i][n]) for kind, n, i in slots],
            dtype=torch.float64,
        )

    def values(u: torch.Tensor, k: int) -> dict[str, torch.Tensor | float]:
        out: dict[str, torch.Tensor | float] = dict(base[k])
        for j in owned[k]:
            out[slots[j][1]] = maps[slots[j][1]].value(u[j])
        return out

    def residual(u: torch.Tensor, k: int) -> torch.Tensor:
        p = problems[k]
        error = family.forward(p.inputs, values(u, k)) - p.target
        return error * p.root_weight * root_scale

    def objective(u: torch.Tensor) -> float:
        return float(sum(float((residual(u, k) ** 2).sum()) for k in range(len(problems))))

    with torch.no_grad():
        best_u, best = pack(*starts[0]), math.inf
        for start in starts[:MAX_STARTS]:
            u = pack(*start)
            loss = objective(u)
            if math.isfinite(loss) and loss < best:
                best_u, best = u, loss
        u, loss = best_u.clone(), best
        if math.isfinite(loss) and loss > 0:
            u, loss = _levenberg_marquardt(u, loss, len(slots), owned, residual, objective)
    chosen = u if loss < best else best_u
    shared_out: dict[str, float] = {}
    layer_out: list[dict[str, float]] = [{} for _ in problems]
    for j, (kind, n, i) in enumerate(slots):
        v = _clip(params[n], float(maps[n].value(chosen[j])))
        if kind == "shared":
            shared_out[n] = v
        else:
            layer_out[i][n] = v
    return shared_out, layer_out


def _levenberg_marquardt(u, loss, size, owned, residual, objective) -> tuple[torch.Tensor, float]:
    """Levenberg-Marquardt on ``sum_k |residual(u, k)|^2``, each residual depending on ``owned[k]`` only."""
    damping = 1e-3
    for _ in range(LM_ITERATIONS):
        hessian = torch.zeros(size, size, dtype=torch.float64)
        gradient = torch.zeros(size, dtype=torch.float64)
        for k, idx in enumerate(owned):
            r = residual(u, k)
            columns = []
            for j in idx:
                h = FD_STEP * (1.0 + abs(float(u[j])))
                up, down = u.clone(), u.clone()
                up[j] += h
                down[j] -= h
                columns.append((residual(up, k) - residual(down, k)) / (2 * h))
            # Sums of products rather than matrix products: BLAS's threads stall on a busy machine.
            for a, column in zip(idx, columns, strict=True):
                gradient[a] += float((column * r).sum())
                for b, other in zip(idx, columns, strict=True):
                    hessian[a, b] += float((column * other).sum())
        if not (torch.isfinite(hessian).all() and torch.isfinite(gradient).all()):
            break
        diagonal = hessian.diagonal().clone()
        floor = 1e-12 * max(float(diagonal.max()), 1e-300)
        improved = False
        while damping < 1e12:
            system = hessian + torch.diag(damping * (diagonal + floor))
            step = torch.linalg.solve(system, -gradient)
            trial = u + step
            trial_loss = objective(trial)
            if math.isfinite(trial_loss) and trial_loss < loss:
                improved = True
                break
            damping *= 4
        if not improved:
            break
        change = loss - trial_loss
        u, loss = trial, trial_loss
        damping = max(damping / 3, 1e-12)
        if change <= LM_TOLERANCE * loss or float(step.abs().max()) <= 1e-9:
            break
    return u, loss


def start_grid(family: Family, names: Sequence[str], defaults: Mapping[str, float]) -> list[dict[str, float]]:
    """Starting points: every combination of each name's default and the family's extra starts."""
    options = []
    for n in names:
        values = [defaults[n], *family.starts.get(n, ())]
        options.append(list(dict.fromkeys(values)))
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*options)][:MAX_STARTS]
