"""The memory-lean autograd Functions: they save only x (and ASH's per-sample statistics).

:func:`function_for` turns a declaration into its lean function, the one ``actplug.functional.NAME``
is and its module calls: generated for elementwise declarations (:mod:`.elementwise`), hand-written
where the declaration names one (ASH's, :mod:`.persample`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from ...declaration import Activation, resolve
from .elementwise import Elementwise, lean_function


@functools.cache
def op_for(declaration: Activation) -> Elementwise:
    """The runnable form of an elementwise declaration (one per declaration)."""
    return Elementwise(declaration)


@functools.cache
def function_for(declaration: Activation) -> Callable[..., torch.Tensor]:
    """The memory-lean function of ``declaration``: its ``function=`` if it names one, else generated."""
    if declaration.function is not None:
        return resolve(declaration.function, f"the lean function of activation {declaration.name!r}")
    return lean_function(op_for(declaration))


__all__ = ["Elementwise", "function_for", "op_for"]
