"""Fast, memory-lean twins of :mod:`actplug.functional`: what the modules in :mod:`actplug.nn` call.

Same names, signatures and values as the plain math; different costs:

* autograd keeps only the input (plus scalar parameters, and ASH's per-sample statistics), and
  every gradient (x, SMU's mu, ASH's z and alpha, SReLU's alpha and beta) is computed analytically
  from it; a backward with ``create_graph=True`` differentiates the plain math instead, so double
  backward works;
* CUDA tensors run Triton kernels (float32, float16, bfloat16); large CPU tensors run the plain math
  fused by Inductor into one C++ loop, writing large outputs into memory the kernels keep and reuse
  (:mod:`actplug.kernels.pool`, a caching allocator like PyTorch's on CUDA); everything else runs
  the plain math eagerly;
* under ``torch.compile``, ``torch.export`` and functorch transforms the plain math is used as is,
  so that those tools trace and fuse it themselves (no graph breaks).

:mod:`actplug.kernels.settings` chooses the path per device (``ACTPLUG_CPU_KERNELS``,
``ACTPLUG_CUDA_KERNELS``), e.g. ``with actplug.kernels.use(cpu="eager"): ...``.
"""

from __future__ import annotations

import torch

from .elementwise import apply
from .persample import ash
from .pool import empty_cache
from .settings import KernelSettings, configure, current, use

__all__ = [
    "KernelSettings",
    "ash",
    "configure",
    "current",
    "empty_cache",
    "fpflu",
    "gish",
    "lpflu",
    "pflu",
    "smu",
    "smu1",
    "srelu",
    "use",
]


def smu(x: torch.Tensor, alpha: float = 0.25, mu: torch.Tensor | float = 1e6) -> torch.Tensor:
    """SMU (smu.txt eq. 6): ``((1+a)x + (1-a) x erf(mu (1-a) x)) / 2``; see :func:`actplug.functional.smu`."""
    return apply("smu", x, (mu,), (float(alpha),))


def smu1(x: torch.Tensor, alpha: float = 0.25, mu: torch.Tensor | float = 4.352665993287951e-09) -> torch.Tensor:
    """SMU-1 (smu.txt eq. 3): ``((1+a)x + sqrt(((1-a)x)^2 + mu^2)) / 2``; see :func:`actplug.functional.smu1`."""
    return apply("smu1", x, (mu,), (float(alpha),))


def pflu(x: torch.Tensor) -> torch.Tensor:
    """PFLU (Zhu et al. 2021): ``x (1 + x / sqrt(1 + x^2)) / 2``."""
    return apply("pflu", x)


def lpflu(x: torch.Tensor, negative_slope: torch.Tensor | float = 0.01) -> torch.Tensor:
    """LPFLU (lpflu.txt eq. 8) for a given slope a: ``(1 - a) PFLU(x) + a x``."""
    return apply("lpflu", x, (negative_slope,))


def fpflu(x: torch.Tensor) -> torch.Tensor:
    """FPFLU (Zhu et al. 2021, eq. 13): ``max(x, x / (1 + x^2))``."""
    return apply("fpflu", x)


def gish(x: torch.Tensor) -> torch.Tensor:
    """Gish (Kaytan et al. 2023): ``x ln(2 - exp(-exp(x)))``."""
    return apply("gish", x)


def srelu(x: torch.Tensor, alpha: torch.Tensor | float = 1.0, beta: torch.Tensor | float = 0.1) -> torch.Tensor:
    """SReLU (srelu.txt III.A): ``alpha x`` for x > 0, ``beta (exp(x) - 1)`` for x <= 0."""
    return apply("srelu", x, (alpha, beta))
