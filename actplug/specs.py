"""Activation specs: a name with constructor arguments in one string, ``"smu:alpha=0.01,mu=2.5"``.

The one format that ``actplug plot`` reads on the command line and that a transformers config
holds in ``hidden_act`` after ``actplug.swap`` (``ACT2FN["smu:alpha=0.01"]`` builds the module).
Values are Python literals (numbers, booleans, ``None``, tuples, quoted strings); anything else is
kept as a plain string.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"smu:alpha=0.01,mu=2.5"`` -> ``("smu", {"alpha": 0.01, "mu": 2.5})``."""
    if not isinstance(spec, str):
        raise TypeError(f"an activation spec is a string like 'smu:alpha=0.01', got {spec!r}")
    name, _, rest = spec.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in _split_items(rest))):
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"cannot read {item!r} in {spec!r}; write NAME:key=value,key=value")
        key = key.strip()
        if key in kwargs:
            raise ValueError(f"{key!r} is given twice in {spec!r}")
        try:
            kwargs[key] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            kwargs[key] = raw.strip()
    return name.strip(), kwargs


def format_spec(name: str, kwargs: Mapping[str, Any] | None = None) -> str:
    """The spec that :func:`parse_spec` reads back as ``(name, kwargs)``: ``name`` alone without kwargs.

    Raises ``ValueError`` naming the argument whose value does not survive the trip (a tensor, a
    dtype, ``inf``: anything that is not a plain Python literal).
    """
    if not isinstance(name, str) or not name or any(ch in name for ch in ":,="):
        raise ValueError(f"an activation spec needs a name without ':', ',' or '=', got {name!r}")
    items = []
    for key, value in (kwargs or {}).items():
        text = repr(value)
        try:
            back = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            back = _NOT_LITERAL
        if back != value or type(back) is not type(value):
            raise ValueError(
                f"{name}({key}={value!r}) cannot be written as an activation spec: only plain Python literals "
                "(numbers, booleans, None, strings, tuples) read back the same"
            )
        items.append(f"{key}={text}")
    return f"{name}:{','.join(items)}" if items else name


_NOT_LITERAL = object()


def _split_items(text: str) -> list[str]:
    """Split at the commas outside brackets and quotes, so that ``dim=(1,2)`` stays one item."""
    items, current, depth, quote = [], [], 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth <= 0:
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    items.append("".join(current))
    return items
