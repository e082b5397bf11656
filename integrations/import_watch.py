"""Run callbacks when a module finishes importing, whether that happens before or after actplug.

A meta-path finder at the front of ``sys.meta_path`` wraps the loader of each watched module so
that the callbacks run right after the module's own code; modules already imported get their
callbacks at once. Nothing is imported on behalf of the user.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

Callback = Callable[[str, ModuleType], None]


class _NotifyingLoader(importlib.abc.Loader):
    """Delegates to the real loader, then runs the callbacks and puts the real loader back."""

    def __init__(self, loader: importlib.abc.Loader, watcher: ImportWatcher, name: str):
        self._loader = loader
        self._watcher = watcher
        self._name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._watcher._fire(self._name, module)

    def __getattr__(self, attr: str) -> Any:  # get_resource_reader, is_package, ... of the real loader
        return getattr(self._loader, attr)


class ImportWatcher(importlib.abc.MetaPathFinder):
    """Calls ``callback(name, module)`` once per watched module, after it is fully imported."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {}
        self._lock = threading.RLock()
        self._searching: set[str] = set()
        self._executed: set[str] = set()

    def watch(self, name: str, callback: Callback) -> None:
        """Run ``callback`` when ``name`` is imported, or now if it already is."""
        module = sys.modules.get(name)
        # A module counts as imported once its code has run: also while the import system still
        # flags it as initialising, i.e. when a plugin loaded by another callback of it asks.
        if module is not None and (name in self._executed or not _initialising(module)):
            _call(callback, name, module)
            return
        with self._lock:
            self._callbacks.setdefault(name, []).append(callback)
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None):
        if fullname not in self._callbacks or fullname in self._searching:
            return None
        self._searching.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._searching.discard(fullname)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _NotifyingLoader(spec.loader, self, fullname)
        return spec

    def _fire(self, name: str, module: ModuleType) -> None:
        with self._lock:
            self._executed.add(name)
            callbacks = self._callbacks.pop(name, [])
        for callback in callbacks:
            _call(callback, name, module)


def _initialising(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _call(callback: Callback, name: str, module: ModuleType) -> None:
    """An adapter that fails must not break the user's ``import``: report it and go on."""
    try:
        callback(name, module)
    except Exception as exc:
        from actplug.registry import ActplugPluginWarning

        warnings.warn(
            f"actplug could not adapt {name!r}: {type(exc).__name__}: {exc}", ActplugPluginWarning, stacklevel=3
        )


#: The process-wide watcher used by :func:`actplug.integrations.install`.
watcher = ImportWatcher()
