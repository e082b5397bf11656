"""Activations by name for recipes and comparisons: every registered one, plus PyTorch's own baselines.

The papers compare against ReLU, Leaky ReLU, PReLU, ELU, GELU, SiLU (Swish), Mish and Softplus;
those keep PyTorch's classes and are accepted wherever a recipe takes an activation name.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .registry import UnknownActivationError, registry

#: PyTorch activations accepted by name next to the registered ones.
TORCH_BASELINES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "softplus": nn.Softplus,
}


def activation_names() -> list[str]:
    """Every name :func:`make_activation` accepts: the registered activations, then the baselines."""
    return [*registry.names(), *TORCH_BASELINES]


def is_baseline(name: str) -> bool:
    """True if ``name`` is one of PyTorch's baselines (and not a registered activation)."""
    return name.strip().lower() in TORCH_BASELINES and name.strip().lower() not in registry.names(aliases=True)


def activation_class(name: str) -> type[nn.Module]:
    """The module class for ``name``; an unknown name raises ``UnknownActivationError`` with close matches."""
    if not isinstance(name, str):
        raise TypeError(f"an activation name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key in registry.names(aliases=True):
        return registry.get(key)
    if key in TORCH_BASELINES:
        return TORCH_BASELINES[key]
    raise UnknownActivationError(name, [*registry.names(aliases=True), *TORCH_BASELINES])


def make_activation(name: str, **kwargs: Any) -> nn.Module:
    """A new module for ``name`` with ``kwargs``; a keyword the class does not take raises ``TypeError``."""
    key = name.strip().lower() if isinstance(name, str) else name
    if isinstance(key, str) and key in registry.names(aliases=True):
        return registry.create(key, **kwargs)
    cls = activation_class(name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise TypeError(f"activation {name!r} ({cls.__name__}) does not take {sorted(kwargs)}: {exc}") from None


def _build_isolated(name: str, kwargs: Mapping[str, Any], *, inplace: bool | None = None, **extra: Any) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        return make_activation(name, **{**extra, **kwargs})


def activation_layer(name: str, kwargs: Mapping[str, Any] | None = None) -> functools.partial:
    """A module factory for frameworks' ``act_layer=`` (timm, torchvision) and ``actplug.swap``.

    Each call builds a new ``name`` module with ``kwargs`` (they win over the framework's keywords; the
    ``inplace=`` timm passes is dropped, since ``nn.GELU`` and friends do not take it). It is a
    ``functools.partial`` because timm asserts ``act_layer`` is a class, name, function or partial.
    Modules are built inside ``torch.random.fork_rng``: an activation that draws random numbers when
    built cannot shift the initial weights of the layers built after it, so runs that differ only in
    the activation start from the same weights.
    """
    return functools.partial(_build_isolated, name, dict(kwargs or {}))
