"""transformers adapter: every registered name works as ``hidden_act`` (and in ``get_activation``).

Names go into ``transformers.activations.ACT2CLS`` and ``ACT2FN`` (the mapping every model
imports) in place; the library's own names are never replaced. ``ACT2FN[name]`` builds the module
with its defaults; ASH then takes per-position statistics (over the hidden size), so causal models
stay causal. ``ACT2FN["smu:alpha=0.01"]`` (a spec, :mod:`actplug.specs`) builds it with those
arguments, without adding the spec to the table. A misspelled name raises a ``KeyError`` subclass
that lists close matches. ``actplug.swap`` on a ``PreTrainedModel`` writes the new activation into
the config keys its modules were built from (:mod:`.transformers_config`), so that
``save_pretrained`` / ``from_pretrained`` rebuild it.
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType

from actplug.hookspecs import hookimpl

from ._tables import TableFiller, unknown_name_error
from .transformers_config import apply_updates, build_from_spec, config_updates

#: ACT2CLS keys whose classes ``actplug.swap`` replaces by default (GELU, ReLU and SiLU variants).
_SWAPPABLE_PREFIXES = ("gelu", "quick_gelu", "relu", "leaky_relu", "silu", "swish")
_SWAPPABLE_EXCLUDE = ("relu2",)


@hookimpl
def actplug_framework_modules() -> list[str]:
    return ["transformers.activations"]


@hookimpl
def actplug_framework_imported(name: str, module: ModuleType, registry) -> None:
    if name != "transformers.activations":
        return
    registry.subscribe(TableFiller([(module.ACT2CLS, lambda info: info.cls), (module.ACT2FN, lambda info: info.cls)]))
    _wrap_getitem(module)
    _wrap_get_activation(module)


def _wrap_getitem(module: ModuleType) -> None:
    """``ACT2FN[spec]`` builds a spec's module, ``ACT2FN[typo]`` raises a KeyError listing close matches
    (the table itself is untouched)."""
    cls = type(module.ACT2FN)
    original = cls.__getitem__
    if getattr(original, "_actplug_wrapped", False):
        return

    def __getitem__(self, key):
        try:
            return original(self, key)
        except KeyError as exc:
            if isinstance(key, str) and self is module.ACT2FN:
                if ":" in key:
                    return build_from_spec(key)
                raise unknown_name_error(key, self.keys()) from exc
            raise

    __getitem__._actplug_wrapped = True
    cls.__getitem__ = __getitem__


def _wrap_get_activation(module: ModuleType) -> None:
    """``get_activation`` reads specs too, and a typo raises the helpful KeyError (transformers' lists every key).

    Model modules bind ``get_activation`` when imported (DistilBERT, GPT-2, Falcon, ...); those
    already imported are rebound, read through ``vars`` so that no lazy module is imported.
    """
    original = module.get_activation
    if getattr(original, "_actplug_wrapped", False):
        return

    @functools.wraps(original)
    def get_activation(activation_string):
        if isinstance(activation_string, str):
            return module.ACT2FN[activation_string]  # names, specs, and the helpful KeyError
        return original(activation_string)

    get_activation._actplug_wrapped = True
    for mod in list(sys.modules.values()):
        namespace = getattr(mod, "__dict__", None)
        if (
            isinstance(namespace, dict)
            and str(namespace.get("__name__", "")).startswith("transformers")
            and namespace.get("get_activation") is original
        ):
            namespace["get_activation"] = get_activation


@hookimpl
def actplug_activation_types() -> list[type]:
    module = sys.modules.get("transformers.activations")
    if module is None:
        return []
    types = []
    for key, value in module.ACT2CLS.items():
        cls = value[0] if isinstance(value, tuple) else value
        if (
            key.startswith(_SWAPPABLE_PREFIXES)
            and key not in _SWAPPABLE_EXCLUDE
            and cls.__module__.startswith("transformers")
        ):
            types.append(cls)
    return types


@hookimpl
def actplug_check_swap(model: object, plan: object) -> None:
    """Refuse a swap that would leave modules one config key describes with different activations."""
    if "transformers.modeling_utils" in sys.modules:
        config_updates(model, plan, check=True)


@hookimpl
def actplug_model_swapped(model: object, plan: object) -> None:
    """Write the new activation into the config keys the replaced modules were built from."""
    if "transformers.modeling_utils" in sys.modules:
        apply_updates(config_updates(model, plan, check=False))
