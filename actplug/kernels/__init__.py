"""The kernels behind every activation: memory-lean autograd and a fast path per device.

Laid out by role and backend:

* :mod:`.autograd`: the autograd Functions, which keep only the input (plus scalar parameters, and
  ASH's per-sample statistics) and compute every gradient from it: analytically where the
  declaration has a backward, by differentiating the recomputed forward where it has not; a backward
  with ``create_graph=True`` differentiates the plain math, so double backward works;
* :mod:`.cpu`: Inductor's fused C++ loops for large CPU tensors (:mod:`.inductor` builds them from a
  declaration's math; :mod:`.compiler` has them compiled by a compile server, :mod:`.server`, while
  the first calls run the eager math, and :mod:`.build` traces, compiles and loads them);
* :mod:`.cuda`: the hand-written Triton kernels of the built-ins, Inductor's Triton for the rest.

Under ``torch.compile``, ``torch.export`` and functorch transforms the plain math is used as is, so
that those tools trace and fuse it themselves. :mod:`.settings` chooses the path per device
(``ACTPLUG_CPU_KERNELS``, ``ACTPLUG_CUDA_KERNELS``, ``ACTPLUG_COMPILE``), e.g.
``with actplug.kernels.use(cpu="eager"): ...``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .compiler import compiler
from .settings import KernelSettings, configure, current, use

__all__ = ["KernelSettings", "compiler", "configure", "current", "status", "use", "wait", "warmup"]


def wait(timeout: float | None = None) -> bool:
    """Wait until every kernel queued so far is compiled (or failed); False if ``timeout`` (s) ran out."""
    return compiler.wait(timeout)


def status() -> list[dict[str, Any]]:
    """Every kernel met so far: ``label``, ``state`` (queued, compiling, ready, failed), ``seconds``, ``error``."""
    return compiler.status()


def warmup(
    acts: Iterable[str | nn.Module] | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    timeout: float | None = None,
) -> bool:
    """Compile the fast-path kernels of ``acts`` now (names or modules; default every registered name) and wait.

    One forward and backward of a copy of each module (its parameters requiring grad as they do) on a
    tensor large enough for the fused path, in training mode and in evaluation; for users who want
    compiled speed from the first step. Returns :func:`wait`'s answer.
    """
    from ..registry import registry

    x_numel = max(current().cpu_min_numel, 2 * 4096)
    x = torch.randn(16, x_numel // 16, dtype=dtype, device=device)
    for act in registry.names() if acts is None else acts:
        module = registry.create(act) if isinstance(act, str) else copy.deepcopy(act)
        module = module.to(device=device)
        for training in (True, False):
            module.train(training)
            leaf = x.detach().clone().requires_grad_(training)
            y = module(leaf)
            if training:
                y.backward(torch.ones_like(y))
    return wait(timeout)
