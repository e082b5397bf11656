"""Shared checks for activation modules' constructor arguments."""

from __future__ import annotations

import math
import numbers


def check_real(owner: str, name: str, value: object, *, positive: bool = False) -> float:
    """Return ``value`` as a float, or raise naming the module, the argument and what is wanted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}({name}=...) expects a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}({name}={value!r}) must be finite")
    if positive and value <= 0:
        raise ValueError(f"{owner}({name}={value!r}) must be > 0")
    return value


def check_bool(owner: str, name: str, value: object) -> bool:
    """Accept only real booleans so that e.g. ``trainable='no'`` is not silently truthy."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}({name}=...) expects True or False, got {value!r}")
    return value
