"""``actplug.swap(model, to, fit=True)``: set each new activation's parameters to match the one it replaces.

Exact where the new family contains the old activation (SMU from GELU, SReLU from ELU, SELU and
ReLU, ASH from SiLU on zero-mean samples), in the limit where it does only there (SMU and SMU-1
from ReLU and Leaky ReLU, ASH from ReLU: the first value of a ladder whose gap is at the noise
level of the model's dtype), and otherwise by float64 least squares over the inputs each layer
sees on the caller's ``calibration`` batch, or over a standard range without one
(:mod:`actplug.integrations.fit_inputs`). Parameters the caller passes to ``swap`` stay as given.

The new module's constructor constants (SMU's and SMU-1's alpha, LPFLU's slope range, a formula's
non-trainable parameters) get one value for all the layers of a swap, so that one spec string (a
transformers ``hidden_act``) describes them all: layers of one source share their closed form,
and layers of different sources get the joint least-squares constants. The module's tensors
(SMU's mu, ASH's z and alpha, SReLU's alpha and beta, LPFLU's running slope) are fitted per layer.
LPFLU's fit: its evaluation slope ``running_slope`` per layer, by closed-form least squares, within
a slope range ``[lower, upper]`` of the width asked for (default 0.02) centred on the slope that
fits all layers best (unless ``lower`` or ``upper`` is passed); training still draws slopes from
that range. PFLU, FPFLU and Gish have no parameters: nothing is fitted, the gap is reported.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from actplug.activations.pflu import pflu
from actplug.nn import LPFLU

from .fit_inputs import collect, standard
from .fit_solve import Problem, gap, least_squares, limit_value, start_grid
from .fit_sources import Source, identify, reference
from .fit_targets import Family, Limit, closed_form, family_of, heuristic_start
from .swap import SwapPlan, _reference_tensor

logger = logging.getLogger("actplug")

__all__ = ["FitResult", "fit_replacements"]


@dataclass(frozen=True)
class FitResult:
    """One replaced layer's fit, as logged and as ``swap(report=[])`` receives it.

    ``layer`` is the module's path in the model, ``source`` the old activation (class and
    arguments), ``target`` the new one's name, ``method`` how its values were found (``exact``,
    ``limit``, ``least squares``, or ``none`` where nothing is fittable), ``values`` every parameter
    of the new module as set (constants and tensors), ``fixed`` those the caller held, ``gap`` the
    remaining error: the relative RMS error ``sqrt(sum w (new - old)^2 / sum w old^2)`` of the new
    module (its parameters as stored, in float64 math) against the old one over the inputs fitted
    (``inputs``: ``calibration`` or ``standard``, ``samples`` of them), ``default_gap`` the same for
    the new module at its defaults (what ``fit=False`` gives).
    """

    layer: str
    source: str
    target: str
    method: str
    values: dict[str, float]
    fixed: tuple[str, ...]
    gap: float
    default_gap: float
    inputs: str
    samples: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (lists for tuples; a non-finite number as None)."""
        out = asdict(self)
        out["fixed"] = list(self.fixed)
        out["values"] = {k: _finite(v) for k, v in self.values.items()}
        out["gap"], out["default_gap"] = _finite(self.gap), _finite(self.default_gap)
        return out


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def fit_replacements(model: nn.Module, plan: SwapPlan, *, calibration: Any = None) -> list[FitResult]:
    """Fit every replacement of ``plan`` (sets each ``r.new``) and return one :class:`FitResult` per layer."""
    replacements = plan.replacements
    if not replacements:
        return []
    family = family_of(replacements[0].new)
    names = {p.name for p in family.params}
    fixed = {k: float(v) for k, v in plan.kwargs.items() if k in names}
    sources = [identify(r.old) for r in replacements]
    problems = _problems(model, plan, family, sources, calibration)
    defaults = [family.values_of(r.new) for r in replacements]
    noise = _noise(replacements[0].new)
    if isinstance(replacements[0].new, LPFLU):
        shared, per_layer, methods = _fit_lpflu(plan, problems, defaults)
    else:
        shared, per_layer, methods = _solve(family, problems, sources, fixed, defaults, noise)
    results = []
    for r, source, problem, values, method, default in zip(
        replacements, sources, problems, per_layer, methods, defaults, strict=True
    ):
        if shared:
            r.new = _placed_like(plan.factory(**shared), r.new)
        family.set_layer_values(r.new, values)
        stored = family.values_of(r.new)
        results.append(
            FitResult(
                layer=r.path,
                source=source.description,
                target=plan.target_name,
                method=method,
                values=_reported_values(r.new, stored),
                fixed=tuple(sorted(set(fixed) | (set(plan.kwargs) & {"lower", "upper"}))),
                gap=gap(family, problem, stored),
                default_gap=gap(family, problem, default),
                inputs=problem.inputs.origin,
                samples=problem.inputs.size,
            )
        )
    _log(results, shared)
    return results


def _problems(
    model: nn.Module, plan: SwapPlan, family: Family, sources: list[Source], calibration: Any
) -> list[Problem]:
    """Each layer's inputs and the old activation's outputs there (float64)."""
    replacements = plan.replacements
    seen = {}
    if calibration is not None:
        seen = collect(
            model,
            [(r.old, not s.elementwise) for r, s in zip(replacements, sources, strict=True)],
            family.stats,
            calibration,
        )
        missing = [r.path for r in replacements if id(r.old) not in seen]
        if missing:
            logger.warning(
                "actplug.swap fit: the calibration run never called %d of the replaced activations (%s); they are "
                "fitted over the standard range",
                len(missing),
                ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else ""),
            )
    fallback = None
    references: dict[int, Any] = {}
    problems = []
    for r, source in zip(replacements, sources, strict=True):
        inputs = seen.get(id(r.old))
        if inputs is None:
            fallback = fallback or standard(family.stats)
            inputs = fallback
        if inputs.observed is not None and not source.elementwise:
            target = inputs.observed
        else:
            if id(r.old) not in references:
                references[id(r.old)] = reference(r.old, source)
            target = references[id(r.old)](inputs.x)
        problems.append(Problem(inputs, target))
    return problems


def _noise(module: nn.Module) -> float:
    """The gap that counts as exact: the unit roundoff of the new module's dtype (at least 1e-12)."""
    ref = _reference_tensor(module)
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    return max(torch.finfo(dtype).eps / 2, 1e-12)


def _solve(
    family: Family,
    problems: list[Problem],
    sources: list[Source],
    fixed: dict[str, float],
    defaults: list[dict[str, float]],
    noise: float,
) -> tuple[dict[str, float], list[dict[str, float]], list[str]]:
    """Shared constants, per-layer values and methods for a declared family (see the module docstring)."""
    n = len(problems)
    free_shared = [p.name for p in family.shared if p.name not in fixed]
    free_layer = [p.name for p in family.layer if p.name not in fixed]
    base = [{**d, **fixed} for d in defaults]
    if not free_shared and not free_layer:
        return {}, base, ["none"] * n
    starts: list[dict[str, float]] = []
    methods: list[str | None] = []
    for problem, source, values in zip(problems, sources, base, strict=True):
        start, method = _closed_start(family, problem, source, values, fixed, noise)
        starts.append(start)
        methods.append(method)
    free = [*free_shared, *free_layer]
    grid = start_grid(family, free, base[0])
    if free_shared:
        agreed = all(m is not None for m in methods) and all(
            math.isclose(s[k], starts[0][k], rel_tol=1e-12, abs_tol=1e-15) for s in starts for k in free_shared
        )
        if agreed:
            return {k: starts[0][k] for k in free_shared}, starts, [str(m) for m in methods]
        mean = {k: statistics.fmean(s[k] for s in starts) for k in free_shared}
        shared, per = least_squares(
            family,
            problems,
            free_shared,
            free_layer,
            base,
            [(mean, starts), *[(g, [g] * n) for g in grid]],
        )
        return shared, [{**b, **shared, **p} for b, p in zip(base, per, strict=True)], ["least squares"] * n
    out, final = [], []
    for problem, start, method in zip(problems, starts, methods, strict=True):
        if method is not None:
            out.append(start)
            final.append(method)
            continue
        _, per = least_squares(family, [problem], [], free_layer, [start], [({}, [start]), *[({}, [g]) for g in grid]])
        out.append({**start, **per[0]})
        final.append("least squares")
    return {}, out, final


def _closed_start(
    family: Family, problem: Problem, source: Source, values: dict[str, float], fixed: dict[str, float], noise: float
) -> tuple[dict[str, float], str | None]:
    """One layer's starting values, and ``exact``/``limit`` where the closed form holds as it stands."""
    start = dict(values)
    form = closed_form(family, source, problem.inputs)
    if form is None:
        start.update({k: v for k, v in heuristic_start(family, source, problem.inputs).items() if k not in fixed})
        return start, None
    wanted, method = form
    conflict = any(k in fixed and (isinstance(v, Limit) or v != fixed[k]) for k, v in wanted.items())
    start.update({k: v for k, v in wanted.items() if k not in fixed and not isinstance(v, Limit)})
    for k, v in wanted.items():
        if isinstance(v, Limit) and k not in fixed:
            start[k] = limit_value(family, problem, start, k, v, noise)
    if conflict:
        return start, None
    if method == "limit" or gap(family, problem, start) <= noise:
        return start, method
    return start, None


def _fit_lpflu(
    plan: SwapPlan, problems: list[Problem], defaults: list[dict[str, float]]
) -> tuple[dict[str, float], list[dict[str, float]], list[str]]:
    """LPFLU: the slope range centred on the joint least-squares slope, and each layer's running slope.

    ``(1 - a) PFLU(x) + a x`` is linear in a, so each layer's least-squares slope is
    ``sum w (y - P)(x - P) / sum w (x - P)^2`` with P = PFLU(x), and the joint one (the layers'
    relative errors weighted alike) the ratio of the normalised sums.
    """
    probe = plan.replacements[0].new
    numerators, denominators, slopes = [], [], []
    for problem in problems:
        x, w = problem.inputs.x, problem.inputs.weight
        p = pflu(x)
        num = float((w * (problem.target - p) * (x - p)).sum()) / problem.norm
        den = float((w * (x - p) * (x - p)).sum()) / problem.norm
        numerators.append(num)
        denominators.append(den)
        slopes.append(num / den if den > 0 else (probe.lower + probe.upper) / 2)
    top = math.nextafter(1.0, 0.0)
    if {"lower", "upper"} & set(plan.kwargs):
        lower, upper, shared = probe.lower, probe.upper, {}
    else:
        joint = sum(numerators) / sum(denominators) if sum(denominators) > 0 else (probe.lower + probe.upper) / 2
        width = probe.upper - probe.lower
        lower = min(max(joint - width / 2, 0.0), max(top - width, 0.0))
        upper = min(lower + width, top)
        shared = {"lower": lower, "upper": upper}
    middle = (lower + upper) / 2
    per = [
        {**d, "running_slope": min(max(a, lower), upper) if probe.randomized else middle}
        for d, a in zip(defaults, slopes, strict=True)
    ]
    return shared, per, ["least squares"] * len(problems)


def _placed_like(new: nn.Module, like: nn.Module) -> nn.Module:
    """``new`` on the device and dtype of ``like`` (the default module swap placed), in its mode."""
    ref = _reference_tensor(like)
    if ref is not None:
        new = new.to(device=ref.device, dtype=ref.dtype)
    new.train(like.training)
    return new


def _reported_values(module: nn.Module, stored: dict[str, float]) -> dict[str, float]:
    """The values a result reports: the family's parameters, and LPFLU's slope range."""
    if isinstance(module, LPFLU):
        return {"lower": module.lower, "upper": module.upper, **stored}
    return dict(stored)


def _show(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.6g}" for k, v in values.items()) or "no parameters"


def _log(results: list[FitResult], shared: dict[str, float]) -> None:
    for r in results:
        logger.info(
            "actplug.swap fit: %s %s -> %s (%s): %s; gap %.3g (defaults %.3g) over %d %s inputs",
            r.layer,
            r.source,
            r.target,
            r.method,
            _show(r.values),
            r.gap,
            r.default_gap,
            r.samples,
            r.inputs,
        )
    gaps = [r.gap for r in results]
    default_gaps = [r.default_gap for r in results]
    methods = {m: sum(r.method == m for r in results) for m in dict.fromkeys(r.method for r in results)}
    logger.info(
        "actplug.swap fit: %d layers to %s over %s inputs (%s)%s; gap median %.3g, max %.3g (defaults: median %.3g, "
        "max %.3g)",
        len(results),
        results[0].target,
        "/".join(dict.fromkeys(r.inputs for r in results)),
        ", ".join(f"{m}: {c}" for m, c in methods.items()),
        f"; shared {_show(shared)}" if shared else "",
        statistics.median(gaps),
        max(gaps),
        statistics.median(default_gaps),
        max(default_gaps),
    )
