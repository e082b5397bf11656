"""What ``swap(fit=True)`` fits: the new activation's parameters, their roles, and the closed forms.

A :class:`Family` describes the new module: the constants it takes as constructor arguments (plain
Python floats, one value for every layer of a swap, so that a transformers config can name them
in one spec string), the tensors it holds (Parameters, or buffers with ``trainable=False``), fitted
per layer, and its math in float64. :func:`closed_form` gives the parameters at which the family
contains the old activation (exactly, or in a limit), where it does:

* SMU (alpha = 0, mu = 1/sqrt(2)) is GELU; SMU with mu -> inf and SMU-1 with mu -> 0 are Leaky ReLU
  with slope alpha (ReLU at alpha = 0);
* SReLU (alpha = 1, beta = a) is ELU(a), (1, 0) is ReLU, (scale, scale * alpha) is SELU;
* ASH (alpha = beta / 2, z = -mean/std) is x sigmoid(beta x) (SiLU, QuickGELU) on samples whose
  mean/std ratio is the same for all (zero-mean ones), and ReLU as alpha -> inf.

Limits are taken at the first value of a ladder whose gap is at the noise level of the model's
dtype (:func:`actplug.integrations.fit_solve.limit_value`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from actplug.declaration import Param
from actplug.nn import ASH, LPFLU
from actplug.nn.module import ActivationModule

from .fit_inputs import Inputs, SampleStats
from .fit_sources import Source

Values = Mapping[str, "torch.Tensor | float"]


@dataclass(frozen=True)
class Limit:
    """A parameter the closed form sends to a limit: the first of ``ladder`` whose gap is at noise level."""

    ladder: tuple[float, ...]


#: mu -> inf (SMU), alpha -> inf (ASH): 10, 31.6, 100, ..., 1e6 (SMU's paper default, where erf saturates).
UPWARD = Limit(tuple(10 ** (k / 2) for k in range(2, 13)))
#: mu -> 0 (SMU-1): 0.1, 0.0316, ..., 1e-9 (below SMU-1's paper default 4.35e-9 the gap no longer matters).
DOWNWARD = Limit(tuple(10 ** (-k / 2) for k in range(2, 19)))


@dataclass(frozen=True)
class Family:
    """The new activation as the fit sees it.

    ``shared`` are constructor constants (one value per swap), ``layer`` the module's tensors
    (fitted per layer), ``forward(inputs, values)`` its float64 math, ``stats`` how a per-sample
    family takes its statistics, ``log_scale`` the unbounded parameters optimised as log|value|
    (SMU's and SMU-1's mu: only their magnitude matters, over many decades), ``starts`` extra
    starting values for the least squares.
    """

    name: str
    shared: tuple[Param, ...]
    layer: tuple[Param, ...]
    forward: Callable[[Inputs, Values], torch.Tensor]
    stats: SampleStats | None = None
    log_scale: frozenset[str] = frozenset()
    starts: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def params(self) -> tuple[Param, ...]:
        """Every fittable parameter, constants first."""
        return (*self.shared, *self.layer)

    def values_of(self, module: nn.Module) -> dict[str, float]:
        """The current values of every parameter in ``module``."""
        out = {}
        for p in self.params:
            value = _get(module, p.name)
            out[p.name] = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        return out

    def set_layer_values(self, module: nn.Module, values: Mapping[str, float]) -> None:
        """Write the per-layer values into ``module``'s tensors in place (Parameters stay Parameters)."""
        with torch.no_grad():
            for p in self.layer:
                tensor = _get(module, p.name)
                tensor.copy_(torch.as_tensor(values[p.name], dtype=torch.float64))


#: Starting values the least squares also tries (beside the defaults and the closed forms), per family.
_STARTS: dict[str, dict[str, tuple[float, ...]]] = {
    "smu": {"alpha": (0.0, 0.01, 0.25), "mu": (0.5, 1.0, 2.5, 10.0)},
    "smu1": {"alpha": (0.0, 0.01, 0.25), "mu": (0.1, 0.5, 1.0, 2.0)},
    "srelu": {"alpha": (1.0,), "beta": (0.1, 0.5, 1.0)},
    "ash": {"z": (-1.0, 0.0, 1.0), "alpha": (0.5, 0.851, 1.0, 3.0)},
}


def _get(module: nn.Module, name: str) -> torch.Tensor | float:
    head, _, attr = name.rpartition(".")
    return getattr(module.get_submodule(head) if head else module, attr)


def family_of(module: nn.Module) -> Family:
    """The :class:`Family` of a new module: a built-in or declared activation, or any module's scalar Parameters."""
    if isinstance(module, ASH):
        decl = module.declaration
        return Family(
            "ash",
            (),
            tuple(decl.params),
            _ash_forward,
            SampleStats(module.dim, module.eps),
            starts=_STARTS["ash"],
        )
    if isinstance(module, LPFLU):
        slope = Param("running_slope", (module.lower + module.upper) / 2, low=0.0, high=1.0, open_high=True)
        return Family("lpflu", (), (slope,), _lpflu_forward)
    if isinstance(module, ActivationModule):
        decl = module.declaration
        forward = decl.forward
        return Family(
            decl.name,
            tuple(p for p in decl.params if not p.trainable),
            tuple(p for p in decl.params if p.trainable),
            lambda inputs, values: forward(inputs.x, **values),
            log_scale=frozenset({"mu"}) if decl.name in ("smu", "smu1") else frozenset(),
            starts=_STARTS.get(decl.name, {}),
        )
    names = tuple(
        n for n, t in module.named_parameters() if t.is_floating_point() and t.numel() == 1 and t.requires_grad
    )
    twin = copy.deepcopy(module).to(device="cpu", dtype=torch.float64)

    def forward(inputs: Inputs, values: Values) -> torch.Tensor:
        with torch.no_grad():  # the least squares differentiates by central differences, not autograd
            for n in names:
                _get(twin, n).copy_(torch.as_tensor(values[n], dtype=torch.float64))
            return twin(inputs.x)

    return Family(type(module).__name__, (), tuple(Param(n, float(_get(module, n).detach())) for n in names), forward)


def _ash_forward(inputs: Inputs, values: Values) -> torch.Tensor:
    x = inputs.x
    return x * torch.sigmoid(2 * values["alpha"] * (x - inputs.mean - values["z"] * inputs.std))


def _lpflu_forward(inputs: Inputs, values: Values) -> torch.Tensor:
    from actplug.activations.pflu import lpflu

    return lpflu(inputs.x, values["running_slope"])


def closed_form(family: Family, source: Source, inputs: Inputs) -> tuple[dict[str, float | Limit], str] | None:
    """The parameters at which ``family`` contains ``source`` and the method (``exact``/``limit``), or None."""
    kind, p = source.kind, source.params
    leaky = kind in ("relu", "leaky_relu")
    slope = float(p.get("slope", 0.0))
    if family.name == "smu":
        if kind == "gelu":
            return {"alpha": 0.0, "mu": 1 / math.sqrt(2)}, "exact"
        if leaky:
            return {"alpha": slope, "mu": UPWARD}, "limit"
    elif family.name == "smu1":
        if leaky:
            return {"alpha": slope, "mu": DOWNWARD}, "limit"
    elif family.name == "srelu":
        if kind == "elu" or (kind == "celu" and p["alpha"] == 1.0):
            return {"alpha": 1.0, "beta": float(p["alpha"])}, "exact"
        if kind == "relu":
            return {"alpha": 1.0, "beta": 0.0}, "exact"
        if kind == "selu":
            return {"alpha": p["scale"], "beta": p["scale"] * p["alpha"]}, "exact"
    elif family.name == "ash":
        ratio = float((inputs.weight * inputs.mean / inputs.std).sum())
        if kind == "swish":
            return {"alpha": float(p["beta"]) / 2, "z": -ratio}, "exact"
        if kind == "relu":
            return {"alpha": UPWARD, "z": -ratio}, "limit"
    return None


def heuristic_start(family: Family, source: Source, inputs: Inputs) -> dict[str, float]:
    """A starting point near the optimum where no closed form applies (tanh-GELU, SiLU, GELU for ASH, ...)."""
    kind, p = source.kind, source.params
    # sigmoid(beta x) ~ Phi(beta sqrt(pi / 8) x) = (1 + erf(mu x)) / 2 at mu = beta sqrt(pi) / 4.
    beta = float(p["beta"]) if kind == "swish" else 1.702 if kind in ("gelu", "gelu_tanh") else None
    if family.name == "smu":
        if kind == "gelu_tanh":
            return {"alpha": 0.0, "mu": 1 / math.sqrt(2)}
        if beta is not None:
            return {"alpha": 0.0, "mu": beta * math.sqrt(math.pi) / 4}
    if family.name in ("smu", "smu1") and kind == "prelu":  # per-channel slopes: start from their mean
        return {"alpha": float(p["slope"])}
    if family.name == "srelu" and kind in ("leaky_relu", "prelu"):
        return {"alpha": 1.0, "beta": max(float(p["slope"]), 0.01)}
    if family.name == "ash" and beta is not None:
        ratio = float((inputs.weight * inputs.mean / inputs.std).sum())
        return {"alpha": beta / 2, "z": -ratio}
    return {}
