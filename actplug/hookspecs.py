"""The plugin contract: the one hook through which every activation, built-in or third-party,
enters the registry.

A plugin is any object or module with a function marked ``@actplug.hookimpl`` and named like the
spec below. Publish it under the ``actplug`` entry-point group of your package::

    [project.entry-points.actplug]
    my_acts = "my_package.actplug_plugin"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .registry import Registry

PROJECT_NAME = "actplug"
ENTRY_POINT_GROUP = "actplug"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def actplug_register_activations(registry: Registry) -> None:
    """Register activations with ``registry.register(name, module_cls, aliases=(), **metadata)``.

    Metadata keys the registry understands: ``paper``, ``formula``, ``functional`` (the
    stateless twin), ``approximates`` ("relu" or "leaky_relu", used by ``actplug plot``) and
    ``parameters`` (names of trainable parameters, derived from a default instance if omitted).
    """
