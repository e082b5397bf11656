"""Where the generated module classes of plugins' formulas live, by class name, so that pickles of
models holding them load again in any process that registers the same activation."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from ..registry import registry

    for info in registry:
        if info.cls.__module__ == __name__ and info.cls.__qualname__ == name:
            return info.cls
    raise AttributeError(f"no registered formula activation has the module class {name!r}")
