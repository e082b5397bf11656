"""Adding registry names to a framework's own name tables, in place, without replacing its entries."""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from actplug.registry import ActivationInfo, UnknownActivationError


class TableFiller:
    """Puts every registered name (and alias) into ``tables``; a key the framework defined itself is
    left alone, a key actplug added earlier follows the registry (``override=True`` reaches it too)."""

    def __init__(self, tables: Iterable[tuple[MutableMapping[str, Any], Callable[[ActivationInfo], Any]]]):
        self.tables = list(tables)
        self.ours: list[set[str]] = [set() for _ in self.tables]
        self.native: list[frozenset[str]] = [frozenset(table) for table, _ in self.tables]

    def __call__(self, info: ActivationInfo) -> None:
        for (table, value_of), ours, native in zip(self.tables, self.ours, self.native, strict=True):
            value = value_of(info)
            if value is None:
                continue
            for key in (info.name, *info.aliases):
                if key in native or (key in table and key not in ours):
                    continue
                table[key] = value
                ours.add(key)


def unknown_name_error(name: str, framework_names: Iterable[str]) -> UnknownActivationError:
    """A KeyError subclass whose message lists close matches among the framework's and actplug's names."""
    from actplug.registry import registry

    return UnknownActivationError(name, {*framework_names, *registry.names(aliases=True)})
