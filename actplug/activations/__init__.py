"""The built-in activations: one module per family, each holding its math and its declarations.

Every file has the same three parts: the plain math (forward and analytic backward, the reference
that autograd, ``torch.compile`` and exporters see), the same functions written for Inductor's fused
CPU loops, and the :class:`~actplug.declaration.Activation` declarations that the rest of actplug
generates the modules, the lean functions, the registry entries and the kernels' dispatch from.
Adding a built-in activation means the math, one declaration here, tests and docs.
"""

from __future__ import annotations

from ..declaration import Activation
from .ash import ASH
from .gish import GISH
from .pflu import FPFLU, LPFLU, PFLU
from .smu import SMU, SMU1
from .srelu import SRELU

#: The built-in declarations, registered by :mod:`actplug.plugins.builtin` through the public hook.
BUILTINS: tuple[Activation, ...] = (SMU, SMU1, LPFLU, SRELU, ASH, PFLU, FPFLU, GISH)

__all__ = ["ASH", "BUILTINS", "FPFLU", "GISH", "LPFLU", "PFLU", "SMU", "SMU1", "SRELU"]
