"""timm adapter: every registered name works in ``get_act_layer``, ``get_act_fn``,
``create_act_layer`` and ``timm.create_model(..., act_layer=NAME)``.

Names go into timm's own tables (``timm.layers.create_act._ACT_LAYER_DEFAULT`` and
``_ACT_FN_DEFAULT``) in place; timm's names are never replaced. A misspelled name raises a
``KeyError`` subclass that lists close matches (timm's lookup functions are wrapped for that, their
tables are not touched). Families that take ``act_layer`` as a class and never resolve names are
listed in docs/timm_families.md.
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType

from actplug.hookspecs import hookimpl

from ._tables import TableFiller, unknown_name_error

_LOOKUPS = ("get_act_layer", "get_act_fn")


@hookimpl
def actplug_framework_modules() -> list[str]:
    return ["timm"]


@hookimpl
def actplug_framework_imported(name: str, module: ModuleType, registry) -> None:
    if name != "timm":
        return
    from timm.layers import create_act

    registry.subscribe(
        TableFiller(
            [
                (create_act._ACT_LAYER_DEFAULT, lambda info: info.cls),
                (create_act._ACT_FN_DEFAULT, _act_fn),
            ]
        )
    )
    for lookup in _LOOKUPS:
        _wrap_lookup(create_act, lookup)


def _act_fn(info):
    """What ``get_act_fn(name)`` returns: the functional twin, called as timm calls its own
    functions (``fn(x, inplace=...)``; like the modules, actplug ignores ``inplace``). A plugin that
    registers no functional gets one that applies a default-built module, so its name works too."""
    fn = info.functional
    if fn is None:
        cls = info.cls

        def act_fn(x, inplace: bool = False):
            module = cls()
            if any(True for _ in (*module.parameters(), *module.buffers())):
                module = module.to(device=x.device)
            return module(x)

        act_fn.__name__ = act_fn.__qualname__ = info.name
        act_fn.__doc__ = f"{cls.__name__} with its default arguments, as a function (timm's get_act_fn)."
        return act_fn

    @functools.wraps(fn)
    def act_fn(x, *args, inplace: bool = False, **kwargs):
        return fn(x, *args, **kwargs)

    return act_fn


def _wrap_lookup(create_act: ModuleType, attr: str) -> None:
    """Replace timm's lookup function, wherever timm bound it, by one with a helpful KeyError."""
    original = getattr(create_act, attr)
    if getattr(original, "_actplug_wrapped", False):
        return
    table = create_act._ACT_LAYER_DEFAULT if attr == "get_act_layer" else create_act._ACT_FN_DEFAULT

    @functools.wraps(original)
    def lookup(name="relu"):
        try:
            return original(name)
        except KeyError as exc:
            if isinstance(name, str):
                raise unknown_name_error(name, table) from exc
            raise

    lookup._actplug_wrapped = True
    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("timm") and getattr(mod, attr, None) is original:
            setattr(mod, attr, lookup)


@hookimpl
def actplug_activation_types() -> list[type]:
    if "timm" not in sys.modules:
        return []
    from timm.layers import activations, activations_me

    names = ("Swish", "GELU", "GELUTanh", "QuickGELU", "HardSwish", "PReLU", "SwishMe", "HardSwishMe")
    return [getattr(mod, n) for mod in (activations, activations_me) for n in names if hasattr(mod, n)]
