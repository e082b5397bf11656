"""actplug: activation functions from recent papers as first-class citizens of PyTorch frameworks.

    >>> import actplug
    >>> act = actplug.create("smu", alpha=0.01, mu=2.5)
    >>> actplug.names()
    ['ash', 'fpflu', 'gish', 'lpflu', 'pflu', 'smu', 'smu1', 'srelu']

Third-party packages add activations through the ``actplug_register_activations`` hook
(:mod:`actplug.hookspecs`), published under the ``actplug`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch import nn as _nn

from . import functional, nn
from .declaration import Activation, Fused, Param
from .hookspecs import ENTRY_POINT_GROUP, hookimpl
from .registry import (
    ActivationInfo,
    ActivationNameTaken,
    ActplugPluginWarning,
    Registry,
    UnknownActivationError,
    registry,
)

__version__ = "0.1.0"

from .integrations import install as _install_integrations
from .integrations.fit import FitResult
from .integrations.optim import param_groups
from .integrations.swap import swap

_install_integrations(registry)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Activation",
    "ActivationInfo",
    "ActivationNameTaken",
    "ActplugPluginWarning",
    "FitResult",
    "Fused",
    "Param",
    "Registry",
    "UnknownActivationError",
    "__version__",
    "add_plugin",
    "create",
    "declare",
    "functional",
    "get",
    "hookimpl",
    "info",
    "names",
    "nn",
    "param_groups",
    "register",
    "register_formula",
    "registry",
    "swap",
]


def names(*, aliases: bool = False) -> list[str]:
    """Registered activation names, sorted (with ``aliases=True``, the aliases too)."""
    return registry.names(aliases=aliases)


def get(name: str) -> type[_nn.Module]:
    """The module class of activation ``name`` (case-insensitive; aliases work)."""
    return registry.get(name)


def create(name: str, **kwargs: Any) -> _nn.Module:
    """A new module of activation ``name`` built with ``kwargs``."""
    return registry.create(name, **kwargs)


def info(name: str) -> ActivationInfo:
    """Formula, paper, aliases, defaults and trainable parameters of activation ``name``."""
    return registry.info(name)


def register(
    name: str, cls: type[_nn.Module], aliases: tuple[str, ...] = (), override: bool = False, **metadata: Any
) -> ActivationInfo:
    """Register ``cls`` under ``name``; a taken name raises unless ``override=True``."""
    return registry.register(name, cls, aliases=aliases, override=override, **metadata)


def register_formula(
    name: str,
    forward: Callable[..., Any],
    *,
    backward: Callable[..., Any] | None = None,
    params: Mapping[str, float] | None = None,
    trainable: Iterable[str] = (),
    aliases: Iterable[str] = (),
    override: bool = False,
    **metadata: Any,
) -> ActivationInfo:
    """Register an elementwise activation by its formula, at run time (see :meth:`Registry.register_formula`).

    >>> actplug.register_formula("swishy", lambda x, beta: x * torch.sigmoid(beta * x),
    ...                          params={"beta": 1.5}, trainable=("beta",))
    """
    return registry.register_formula(
        name,
        forward,
        backward=backward,
        params=params,
        trainable=trainable,
        aliases=aliases,
        override=override,
        **metadata,
    )


def declare(declaration: Activation, override: bool = False) -> ActivationInfo:
    """Register a full :class:`Activation` declaration at run time (as the built-ins are registered)."""
    return registry.declare(declaration, override=override)


def add_plugin(plugin: object, name: str | None = None) -> bool:
    """Register a plugin object or module (with an ``@actplug.hookimpl``) without an entry point."""
    return registry.add_plugin(plugin, name=name)
