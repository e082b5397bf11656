"""torchvision adapter: every model builder accepts ``act_layer=`` and ``act_kwargs=``.

``torchvision.models.resnet50(act_layer="lpflu")``, ``get_model("ssd300_vgg16", act_layer="smu",
act_kwargs={"mu": 2.5})`` and the detection and segmentation builders build the model as usual,
then :func:`actplug.swap` replaces its activation modules (the ReLU family, SiLU, GELU, Hardswish),
each occurrence by its own new module, so a trainable activation trains per layer. ``act_layer``
is a registered name or an ``nn.Module`` class. Without these arguments a builder is untouched.
torchvision's ResNet blocks call one ``self.relu`` module twice; it stays one module there, so the
two call sites of a block share its parameters.
"""

from __future__ import annotations

import functools
import inspect
import sys
from types import ModuleType
from typing import Any

from actplug.hookspecs import hookimpl


@hookimpl
def actplug_framework_modules() -> list[str]:
    return ["torchvision"]


@hookimpl
def actplug_framework_imported(name: str, module: ModuleType, registry) -> None:
    if name != "torchvision":
        return
    from torchvision.models import _api

    wrapped: dict[int, Any] = {}
    for model_name, builder in list(_api.BUILTIN_MODELS.items()):
        if getattr(builder, "_actplug_wrapped", False):
            continue
        new = wrapped.setdefault(id(builder), _with_act_layer(builder))
        _api.BUILTIN_MODELS[model_name] = new
    # The builders are also attributes of torchvision.models and its sub-packages.
    for mod in list(sys.modules.values()):
        if not getattr(mod, "__name__", "").startswith("torchvision.models"):
            continue
        for attr, value in list(vars(mod).items()):
            new = wrapped.get(id(value))
            if new is not None and value is not new:
                setattr(mod, attr, new)


def _with_act_layer(builder):
    """``builder`` with two more keyword arguments, ``act_layer`` and ``act_kwargs``."""

    @functools.wraps(builder)
    def build(*args: Any, act_layer: Any = None, act_kwargs: dict[str, Any] | None = None, **kwargs: Any):
        if act_layer is None:
            if act_kwargs:
                raise TypeError(f"{builder.__name__}(act_kwargs=...) needs act_layer= as well")
            return builder(*args, **kwargs)
        if act_kwargs is not None and not isinstance(act_kwargs, dict):
            raise TypeError(f"{builder.__name__}(act_kwargs=...) must be a dict, got {type(act_kwargs).__name__}")
        from .swap import activation_factory, swap

        activation_factory(act_layer, **(act_kwargs or {}))  # a bad name or kwarg fails before building
        model = builder(*args, **kwargs)
        return swap(model, act_layer, **(act_kwargs or {}))

    signature = inspect.signature(builder)
    extra = [
        inspect.Parameter("act_layer", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("act_kwargs", inspect.Parameter.KEYWORD_ONLY, default=None),
    ]
    params = list(signature.parameters.values())
    var_kw = [p for p in params if p.kind is p.VAR_KEYWORD]
    rest = [p for p in params if p.kind is not p.VAR_KEYWORD]
    build.__signature__ = signature.replace(parameters=rest + extra + var_kw)
    build._actplug_wrapped = True
    return build
