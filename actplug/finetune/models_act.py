"""The recipe's activation: name and kwargs checked once, then handed to timm, torchvision and swap.

Registered actplug names and PyTorch's baselines (:mod:`actplug.baselines`) are both accepted. The
frameworks get :func:`actplug.baselines.activation_layer`, a factory that builds a new module per call
with the user's kwargs.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Mapping
from typing import Any

from torch import nn

from actplug.baselines import activation_class, activation_layer
from actplug.integrations.swap import count_activations, default_replace_types, swap
from actplug.registry import UnknownActivationError

from .errors import FinetuneError

__all__ = ["activation_counts", "activation_layer", "check_activation", "swap_remaining"]


def check_activation(act: str, act_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Build ``act`` once with ``act_kwargs``; returns the kwargs as a plain dict, or raises FinetuneError."""
    if not isinstance(act, str) or not act.strip():
        raise FinetuneError(f"--act needs an activation name, got {act!r}; run `actplug list` for the names")
    try:
        cls = activation_class(act)
    except UnknownActivationError as exc:
        raise FinetuneError(f"--act: {exc} PyTorch baselines are accepted too.") from None
    if act_kwargs is None:
        act_kwargs = {}
    if not isinstance(act_kwargs, Mapping) or not all(isinstance(k, str) for k in act_kwargs):
        raise FinetuneError(
            f"--act-kwargs must be a JSON object of keyword arguments (e.g. '{{\"mu\": 2.5}}'), got {act_kwargs!r}"
        )
    kwargs = dict(act_kwargs)
    takes = _keywords(cls)
    if takes is not None:
        unknown = [k for k in kwargs if k not in takes]
        if unknown:
            raise FinetuneError(
                f"--act-kwargs: activation {act!r} ({cls.__name__}) does not take {', '.join(map(repr, unknown))}"
                f"{_did_you_mean(unknown, takes)}; it takes {', '.join(takes) or 'no keyword arguments'}"
            )
    try:
        activation_layer(act, kwargs)()
    except Exception as exc:  # a bad value: the class's own message says which and why
        raise FinetuneError(
            f"--act-kwargs {kwargs} are not valid for activation {act!r} ({cls.__name__}): {exc}"
        ) from None
    return kwargs


def _keywords(cls: type[nn.Module]) -> list[str] | None:
    """Keyword arguments of ``cls`` (None when it takes ``**kwargs`` or has no readable signature)."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _did_you_mean(unknown: list[str], takes: list[str]) -> str:
    import difflib

    close = {k: difflib.get_close_matches(k, takes, n=1) for k in unknown}
    hints = [f"{k!r} -> {m[0]!r}" for k, m in close.items() if m]
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def swap_remaining(model: nn.Module, act: str, act_kwargs: Mapping[str, Any]) -> nn.Module:
    """Replace every default activation module not yet of ``act``'s class (decoders, heads, extras)."""
    cls = activation_class(act)
    replace = tuple(t for t in default_replace_types() if not issubclass(cls, t))
    if replace and count_activations(model, replace):  # swap warns when nothing matches
        swap(model, activation_layer(act, act_kwargs), replace=replace)
    return model


def activation_counts(model: nn.Module) -> Counter[str]:
    """Activation modules per class name: the chosen one and any default left (there should be none)."""
    return count_activations(model)
