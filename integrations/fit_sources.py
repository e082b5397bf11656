"""What ``swap(fit=True)`` replaces: each old activation identified by its class and parameters.

The fit needs two things of the module it replaces: which known function it is (so that a closed
form can match it exactly: GELU, Leaky ReLU, ELU, SiLU, ...), and its values in float64 (the
targets of the least squares). Classes come from PyTorch, timm and transformers; the latter two
are recognised by module and class name, so nothing here imports them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

#: SELU's constants (Klambauer et al. 2017), as PyTorch's ``F.selu`` uses them.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

# Classes of timm and transformers by (top-level package, class name): the kind they compute.
_FRAMEWORK_KINDS: dict[tuple[str, str], tuple[str, dict[str, float]]] = {
    ("transformers", "GELUActivation"): ("gelu", {}),
    ("transformers", "GELUTanh"): ("gelu_tanh", {}),
    ("transformers", "NewGELUActivation"): ("gelu_tanh", {}),
    ("transformers", "FastGELUActivation"): ("gelu_tanh", {}),
    ("transformers", "AccurateGELUActivation"): ("gelu_tanh", {}),
    ("transformers", "QuickGELUActivation"): ("swish", {"beta": 1.702}),
    ("transformers", "SiLUActivation"): ("swish", {"beta": 1.0}),
    ("timm", "GELU"): ("gelu", {}),
    ("timm", "GELUTanh"): ("gelu_tanh", {}),
    ("timm", "QuickGELU"): ("swish", {"beta": 1.702}),
    ("timm", "Swish"): ("swish", {"beta": 1.0}),
    ("timm", "SwishMe"): ("swish", {"beta": 1.0}),
    ("timm", "HardSwish"): ("hardswish", {}),
    ("timm", "HardSwishMe"): ("hardswish", {}),
}


@dataclass(frozen=True)
class Source:
    """An old activation as the fit sees it.

    ``kind`` names the function it computes (``gelu``, ``gelu_tanh``, ``swish`` (x sigmoid(beta x)),
    ``relu``, ``leaky_relu``, ``elu``, ``celu``, ``selu``, ``relu6``, ``hardswish``, ``prelu``
    (per-channel slopes) or ``other``), ``params`` its parameters (``slope``, ``alpha``, ``beta``),
    ``description`` the class and its arguments for reports. ``elementwise`` is False where the
    module is not one function of x (per-channel PReLU, unknown classes): a calibration run then
    takes the module's own outputs as the targets.
    """

    kind: str
    description: str
    params: Mapping[str, float] = field(default_factory=dict)
    elementwise: bool = True


def describe(module: nn.Module) -> str:
    """The class name and its arguments on one line: ``LeakyReLU(negative_slope=0.1)``."""
    return f"{type(module).__name__}({module.extra_repr()})"


def identify(module: nn.Module) -> Source:
    """Which known activation ``module`` computes, from its class and parameters."""
    text = describe(module)
    if isinstance(module, nn.GELU):
        return Source("gelu" if module.approximate == "none" else "gelu_tanh", text)
    if isinstance(module, nn.ReLU):
        return Source("relu", text)
    if isinstance(module, nn.LeakyReLU):
        return Source("leaky_relu", text, {"slope": float(module.negative_slope)})
    if isinstance(module, nn.RReLU):  # evaluation mode: the mean of its slope range
        slope = (float(module.lower) + float(module.upper)) / 2
        return Source("leaky_relu", f"{text} (evaluation slope {slope:g})", {"slope": slope})
    if isinstance(module, nn.PReLU):
        weight = module.weight.detach().double()
        if weight.numel() == 1:
            return Source("leaky_relu", f"{text} (slope {float(weight):g})", {"slope": float(weight)})
        slope = float(weight.mean())
        return Source("prelu", f"{text} (mean slope {slope:g})", {"slope": slope}, elementwise=False)
    if isinstance(module, nn.ELU):
        return Source("elu", text, {"alpha": float(module.alpha)})
    if isinstance(module, nn.CELU):
        return Source("celu", text, {"alpha": float(module.alpha)})
    if isinstance(module, nn.SELU):
        return Source("selu", text, {"alpha": SELU_ALPHA, "scale": SELU_SCALE})
    if isinstance(module, nn.ReLU6):
        return Source("relu6", text)
    if isinstance(module, nn.SiLU):
        return Source("swish", text, {"beta": 1.0})
    if isinstance(module, nn.Hardswish):
        return Source("hardswish", text)
    package = type(module).__module__.partition(".")[0]
    known = _FRAMEWORK_KINDS.get((package, type(module).__name__))
    if known is not None:
        return Source(known[0], text, dict(known[1]))
    return Source("other", text, elementwise=False)


def reference(module: nn.Module, source: Source) -> Callable[[torch.Tensor], torch.Tensor]:
    """The old activation as a float64 function of a 1-D tensor (the least squares' targets).

    A float64 copy of the module itself on the CPU, so that every class computes exactly what it computes in
    the model; per-channel PReLU, which needs its channel dimension, as Leaky ReLU with its mean
    slope. Raises a ``ValueError`` naming the module and the fix where it cannot be evaluated so.
    """
    if source.kind == "prelu":
        slope = source.params["slope"]
        return lambda x: F.leaky_relu(x, slope)
    twin = copy.deepcopy(module).to(device="cpu", dtype=torch.float64).eval()

    fix = "pass calibration=... so that the fit uses the outputs it gives inside the model"

    def evaluate(x: torch.Tensor) -> torch.Tensor:
        try:
            with torch.no_grad():
                y = twin(x.clone())  # a clone: an in-place module (ReLU(inplace=True)) must not change x
        except Exception as exc:
            raise ValueError(
                f"swap(fit=True) cannot evaluate {source.description} on a 1-D range of inputs "
                f"({type(exc).__name__}: {exc}); {fix}"
            ) from exc
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            raise ValueError(
                f"swap(fit=True) cannot evaluate {source.description} on a 1-D range of inputs: it returned "
                f"{type(y).__name__} {tuple(getattr(y, 'shape', ()))}; {fix}"
            )
        return y.to(torch.float64)

    return evaluate
