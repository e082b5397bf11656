"""One declaration per activation: everything the rest of actplug generates or dispatches from.

An :class:`Activation` names the activation, its paper and formula, its scalar parameters
(:class:`Param`: defaults, which are trainable, valid range), its forward math and optionally an
analytic backward, the forms written for Inductor's fused CPU loops (:class:`Fused`) and the name of
a hand-written Triton kernel. From it come the ``nn.Module`` class (:mod:`actplug.nn`), the
memory-lean functional twin (:mod:`actplug.functional`), the registry entry and the kernels' dispatch
(:mod:`actplug.kernels`). The built-ins are declared next to their math in :mod:`actplug.activations`;
a plugin gets the same from ``registry.register_formula(...)``, which builds one of these.

The math contract, for built-ins and plugins alike:

* ``forward(x, **params)``: plain PyTorch math, elementwise in x; a parameter may arrive as a Python
  float or as a 0-d tensor (the fused paths pass tensors, so one compiled kernel serves every value);
* ``backward(x, grad, *, needs=(), **params)``: dL/dx from x alone, or ``(dL/dx, {name: dL/dname})``
  with a gradient for each parameter named in ``needs`` (x-shaped terms are summed for you).
  Without one, gradients come from differentiating the forward, recomputed from x in backward.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

Forward = Callable[..., torch.Tensor]
Backward = Callable[..., Any]


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


@dataclass(frozen=True)
class Param:
    """A scalar parameter of an activation.

    ``trainable``: the module holds it as an ``nn.Parameter`` (a buffer with ``trainable=False``);
    otherwise it is a fixed constant, a Python float attribute. ``low``/``high`` bound its valid
    values (``open_low``/``open_high`` exclude the bound itself); ``why`` says where the range comes
    from, for error messages.
    """

    name: str
    default: float
    trainable: bool = False
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    why: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"parameter name must be a Python identifier, got {self.name!r}")
        if isinstance(self.default, bool) or not isinstance(self.default, numbers.Real):
            raise TypeError(f"parameter {self.name!r} needs a real default value, got {_describe(self.default)}")
        object.__setattr__(self, "default", float(self.default))

    @property
    def domain(self) -> str:
        """The valid range as text (``mu > 0``, ``0 <= a < 1``); empty when any finite value goes."""
        below = "<" if self.open_low else "<="
        above = "<" if self.open_high else "<="
        if self.low is not None and self.high is not None:
            return f"{self.low:g} {below} {self.name} {above} {self.high:g}"
        if self.low is not None:
            return f"{self.name} {'>' if self.open_low else '>='} {self.low:g}"
        if self.high is not None:
            return f"{self.name} {above} {self.high:g}"
        return ""

    def check(self, owner: str, value: object) -> float:
        """``value`` as a float, or a ``TypeError``/``ValueError`` naming ``owner``, the argument and its range."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{owner}({self.name}=...) expects a real number, got {_describe(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{owner}({self.name}={value!r}) must be finite")
        if not self.contains(value):
            reason = f" ({self.why})" if self.why else ""
            raise ValueError(f"{owner}({self.name}={value!r}) is out of range: needs {self.domain}{reason}")
        return value

    def contains(self, value: float) -> bool:
        """True if ``value`` is inside the valid range."""
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.open_high and value == self.high)))


@dataclass(frozen=True)
class Fused:
    """The same activation written for Inductor's fused CPU loops: cheaper instructions, same values.

    ``prepare(**params)`` (optional) turns the parameters into the scalars the loops take, once per
    call outside the loop (SMU's ``k = mu (1 - alpha)``); ``forward(x, **scalars)`` and
    ``backward(x, grad, *, needs, **scalars)`` follow the math contract of the module docstring and
    return gradients under the original parameter names. Either may be None: the plain math then.
    """

    forward: Forward | None = None
    backward: Backward | None = None
    prepare: Callable[..., dict[str, torch.Tensor]] | None = None


@dataclass(frozen=True)
class Activation:
    """The declaration of one activation (see the module docstring for the math contract).

    ``module`` and ``function`` name a hand-written ``nn.Module`` class and lean function (as
    ``"package.module:attribute"``, imported when first needed) for activations whose module is more
    than its parameters (LPFLU's random slope, ASH's per-sample statistics); otherwise both are
    generated. ``negative_slope`` names the parameter that is the slope of the Leaky ReLU the
    activation smooths (``approximates="leaky_relu"``); ``trainable_default`` is the default of the
    generated module's ``trainable=`` switch.
    """

    name: str
    forward: Forward
    params: tuple[Param, ...] = ()
    backward: Backward | None = None
    aliases: tuple[str, ...] = ()
    paper: str = ""
    formula: str = ""
    approximates: str = ""
    doc: str = ""
    class_name: str = ""
    cpu: Fused | None = None
    triton: str | None = None
    trainable_default: bool = True
    negative_slope: str | None = None
    module: str | type | None = None
    function: str | Callable[..., torch.Tensor] | None = None
    elementwise: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise TypeError(f"an activation name must be a non-empty string, got {self.name!r}")
        if not callable(self.forward):
            raise TypeError(f"activation {self.name!r}: forward must be a function of x, got {_describe(self.forward)}")
        if self.backward is not None and not callable(self.backward):
            raise TypeError(f"activation {self.name!r}: backward must be a function or None, got {self.backward!r}")
        names = [p.name for p in self.params]
        reserved = {"x", "inplace", "trainable", "needs", "grad"} & set(names)
        if reserved:
            raise ValueError(f"activation {self.name!r}: parameter name(s) {sorted(reserved)} are reserved")
        if len(set(names)) != len(names):
            raise ValueError(f"activation {self.name!r}: parameter names repeat: {names}")
        if self.negative_slope is not None and self.negative_slope not in names:
            raise ValueError(f"activation {self.name!r}: negative_slope={self.negative_slope!r} is not a parameter")

    @property
    def param_names(self) -> tuple[str, ...]:
        """The parameters' names, in the order the functional twin takes them after x."""
        return tuple(p.name for p in self.params)

    @property
    def trainable(self) -> tuple[str, ...]:
        """Names of the parameters a module trains (with its default ``trainable=`` switch)."""
        return tuple(p.name for p in self.params if p.trainable) if self.trainable_default else ()

    @property
    def module_class_name(self) -> str:
        """The generated module class's name: ``class_name``, or the name in CamelCase."""
        if self.class_name:
            return self.class_name
        words = [w for w in "".join(c if c.isalnum() else " " for c in self.name).split() if w]
        candidate = "".join(w[:1].upper() + w[1:] for w in words) or "Activation"
        return candidate if candidate[0].isalpha() else f"Act{candidate}"

    @property
    def docstring(self) -> str:
        """The module's and the function's docstring: ``doc``, else the forward's, else the formula."""
        text = self.doc or self.forward.__doc__ or self.formula or f"The {self.name} activation."
        return inspect.cleandoc(text)

    def param(self, name: str) -> Param:
        """The :class:`Param` called ``name``."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


def resolve(target: Any, what: str) -> Any:
    """``target`` itself, or the attribute a ``"package.module:attribute"`` string names (a declaration's
    ``module=`` or ``function=``), imported on first use."""
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{what} must be 'package.module:attribute', got {target!r}")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"{what} names {target!r}, which does not import: {exc}") from exc


def unexpected_keywords(owner: str, unknown: Sequence[str], valid: Sequence[str]) -> TypeError:
    """The TypeError for keyword arguments ``owner`` does not take, each with its closest valid one."""
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(k, list(valid), n=1)
        hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return TypeError(
        f"{owner} got unexpected keyword argument(s) {', '.join(hints)}; "
        f"valid keyword arguments: {', '.join(valid) or '(none)'}"
    )
