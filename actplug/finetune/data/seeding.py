"""Per-item random generators derived from a tuple of keys, the same in every process and every run.

The data never touches the global RNG: a resumed or multi-process run must see exactly the items and
augmentations an uninterrupted single-process run sees, whatever else consumed random numbers before.
"""

from __future__ import annotations

import hashlib
import operator

import torch


def _key(key: int | str) -> str:
    # numpy and torch integers (a sampler's indices) give the same key as the Python int they equal
    return f"s:{key}" if isinstance(key, str) else f"i:{operator.index(key)}"


def derive_seed(*keys: int | str) -> int:
    """A 63-bit seed from ``keys`` (integers and strings) through BLAKE2b, stable across processes and Python runs.

    Python's ``hash()`` is salted per process for strings, so it cannot serve here.
    """
    text = "\x1f".join(_key(key) for key in keys)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def item_generator(*keys: int | str) -> torch.Generator:
    """A fresh CPU ``torch.Generator`` seeded by :func:`derive_seed` of ``keys``."""
    return torch.Generator().manual_seed(derive_seed(*keys))
