"""The ``nn.Module`` class of an elementwise declaration, generated from it.

The constructor takes the declaration's parameters (with their defaults and range checks), a
``trainable=`` switch when some are trainable (``nn.Parameter`` when on, buffers when off; the
other parameters are fixed Python floats), and ``inplace=``, which timm and torchvision pass and the
module accepts and ignores (the result is always a new tensor). ``forward`` runs the declaration's
memory-lean kernel (:mod:`actplug.kernels.autograd`).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, ClassVar

import torch
from torch import nn

from ..declaration import Activation, unexpected_keywords
from ..kernels.autograd import op_for


def check_bool(owner: str, name: str, value: object) -> bool:
    """Accept only real booleans so that e.g. ``trainable='no'`` is not silently truthy."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}({name}=...) expects True or False, got {value!r}")
    return value


class ActivationModule(nn.Module):
    """Base of the generated activation modules: parameters from the declaration, the lean kernel."""

    declaration: ClassVar[Activation]
    constructor_signature: ClassVar[inspect.Signature]
    _names: ClassVar[tuple[str, ...]]
    _op: ClassVar[Any]  # the declaration's Elementwise (a class attribute: instances pickle without it)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        cls = type(self)
        decl = cls.declaration
        owner = cls.__name__
        bound = bind_arguments(cls, args, kwargs)
        learnable = any(p.trainable for p in decl.params)
        self.trainable = check_bool(owner, "trainable", bound.get("trainable", decl.trainable_default))
        self.inplace = check_bool(owner, "inplace", bound.get("inplace", False))
        if not learnable:
            self.trainable = False
        for p in decl.params:
            value = p.check(owner, bound.get(p.name, p.default))
            if not p.trainable:
                setattr(self, p.name, value)
            elif self.trainable:
                self.register_parameter(p.name, nn.Parameter(torch.tensor(value)))
            else:
                self.register_buffer(p.name, torch.tensor(value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._op(x, tuple(getattr(self, n) for n in self._names))

    def extra_repr(self) -> str:
        parts = [f"{n}={_show(getattr(self, n))}" for n in self._names]
        if any(p.trainable for p in self.declaration.params):
            parts.append(f"trainable={self.trainable}")
        return ", ".join(parts)


def _show(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return "<meta>" if value.is_meta else f"{float(value.detach()):.6g}"
    return f"{value:g}"


def bind_arguments(cls: type, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The constructor's arguments by name, or a TypeError that names the close matches and the valid ones."""
    signature = cls.constructor_signature
    try:
        return dict(signature.bind(*args, **kwargs).arguments)
    except TypeError as exc:
        valid = list(signature.parameters)
        unknown = [k for k in kwargs if k not in valid]
        if not unknown:
            raise TypeError(f"{cls.__name__}{signature}: {exc}") from None
        raise unexpected_keywords(f"{cls.__name__}()", unknown, valid) from None


@functools.cache
def module_class(declaration: Activation) -> type[ActivationModule]:
    """The generated module class of elementwise ``declaration`` (one class per declaration), published
    in :mod:`actplug.nn` for the built-ins and :mod:`actplug.nn.formulas` for plugins' formulas."""
    from ..activations import BUILTINS

    module = "actplug.nn" if any(declaration is b for b in BUILTINS) else "actplug.nn.formulas"
    if not declaration.elementwise:
        raise ValueError(f"activation {declaration.name!r} is not elementwise: it needs a hand-written module")
    params = [
        inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default)
        for p in declaration.params
    ]
    if any(p.trainable for p in declaration.params):
        params.append(
            inspect.Parameter(
                "trainable", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=declaration.trainable_default
            )
        )
    params.append(inspect.Parameter("inplace", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False))
    signature = inspect.Signature(params)
    name = declaration.module_class_name

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        ActivationModule.__init__(self, *args, **kwargs)

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    __init__.__signature__ = signature.replace(parameters=[self_param, *params])  # type: ignore[attr-defined]
    __init__.__qualname__ = f"{name}.__init__"
    namespace: dict[str, Any] = {
        "declaration": declaration,
        "constructor_signature": signature,
        "_names": declaration.param_names,
        "_op": op_for(declaration),
        "__init__": __init__,
        "__doc__": declaration.docstring,
        "__module__": module,
        "__qualname__": name,
    }
    if declaration.negative_slope is not None:
        slope = declaration.negative_slope
        namespace["negative_slope"] = property(
            lambda self: float(getattr(self, slope)), doc="The slope of the Leaky ReLU this unit smooths."
        )
    return type(name, (ActivationModule,), namespace)
