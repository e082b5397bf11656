"""Functional twins of every activation: the memory-lean functions the modules run.

``actplug.functional.smu(x, alpha, mu)`` computes what ``actplug.nn.SMU`` computes, with the same
autograd (only x is kept for backward) and the same fast paths, as torchmetrics' functional and
module twins share one implementation. Every name the registry knows works here, plugins' formulas
too (``actplug.functional.NAME``). The plain reference math, which autograd and tracers see, is
:mod:`actplug.functional.reference`.
"""

from __future__ import annotations

from typing import Any

from .. import activations as _declared
from ..kernels.autograd import function_for
from . import reference

smu = function_for(_declared.SMU)
smu1 = function_for(_declared.SMU1)
lpflu = function_for(_declared.LPFLU)
srelu = function_for(_declared.SRELU)
ash = function_for(_declared.ASH)
pflu = function_for(_declared.PFLU)
fpflu = function_for(_declared.FPFLU)
gish = function_for(_declared.GISH)

__all__ = ["ash", "fpflu", "gish", "lpflu", "pflu", "reference", "smu", "smu1", "srelu"]


def __getattr__(name: str) -> Any:
    """A registered activation's lean function by name (plugins' formulas, aliases with ``_``)."""
    from ..registry import UnknownActivationError, registry

    if name.startswith("__"):
        raise AttributeError(name)
    try:
        info = registry.info(name)
    except (UnknownActivationError, TypeError):
        raise AttributeError(
            f"module 'actplug.functional' has no attribute {name!r} (no activation of that name)"
        ) from None
    if info.functional is None:
        raise AttributeError(f"activation {name!r} was registered without a functional twin")
    return info.functional
