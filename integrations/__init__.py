"""Framework adapters, installed as ``actplug.integrations``: one plugin module per framework.

``import actplug`` calls :func:`install`, which registers the adapters below as pluggy plugins and
watches for their frameworks' imports; no framework is imported here. Every name in the registry,
third-party plugins' too, reaches every framework, whichever of actplug and the framework is
imported first.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from .import_watch import watcher

if TYPE_CHECKING:
    from actplug.registry import Registry

#: Built-in adapters: entry-point name -> module (also published under the ``actplug`` group).
ADAPTERS = {
    "timm": "actplug.integrations.timm",
    "transformers": "actplug.integrations.transformers",
    "torchvision": "actplug.integrations.torchvision",
}

_installed: set[int] = set()


def install(registry: Registry) -> None:
    """Register the built-in adapters with ``registry`` and watch every plugin's framework modules."""
    if id(registry) in _installed:
        return
    _installed.add(id(registry))
    registry.on_plugin_added(lambda plugin: _watch_plugin(registry, plugin))
    for name, module_name in ADAPTERS.items():
        if not registry.plugin_manager.has_plugin(name):
            registry.plugin_manager.register(importlib.import_module(module_name), name=name)
            _watch_plugin(registry, registry.plugin_manager.get_plugin(name))


def _watch_plugin(registry: Registry, plugin: object) -> None:
    """Watch the modules that ``plugin`` names in ``actplug_framework_modules``."""
    hook = registry.plugin_manager.subset_hook_caller(
        "actplug_framework_modules",
        remove_plugins=[p for p in registry.plugin_manager.get_plugins() if p is not plugin],
    )
    for names in hook():
        for module_name in names:
            watcher.watch(module_name, lambda name, module, p=plugin: _adapt(registry, p, name, module))


def _adapt(registry: Registry, plugin: object, name: str, module: ModuleType) -> None:
    caller = registry.plugin_manager.subset_hook_caller(
        "actplug_framework_imported",
        remove_plugins=[p for p in registry.plugin_manager.get_plugins() if p is not plugin],
    )
    caller(name=name, module=module, registry=registry)
