"""The literal paper formulas as plain autograd code: the "naive formula" baseline of ``actplug bench``.

Each function takes x and the module's parameters and writes the formula as printed, with no
care for memory (autograd keeps every intermediate it needs) or for numerics (no float32 upcast
of half inputs). :func:`make_pair` builds one such function together with an ``actplug.create``
module holding the same parameter values, so that both sides of a comparison compute the same
thing and train the same parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def smu(x: torch.Tensor, mu: torch.Tensor, alpha: float) -> torch.Tensor:
    """SMU (smu.txt eq. 6): ``((1+a)x + (1-a) x erf(mu (1-a) x)) / 2``."""
    return ((1 + alpha) * x + (1 - alpha) * x * torch.erf(mu * (1 - alpha) * x)) / 2


def smu1(x: torch.Tensor, mu: torch.Tensor, alpha: float) -> torch.Tensor:
    """SMU-1 (smu.txt eq. 3): ``((1+a)x + sqrt(((1-a)x)^2 + mu^2)) / 2``."""
    return ((1 + alpha) * x + torch.sqrt(((1 - alpha) * x) ** 2 + mu**2)) / 2


def pflu(x: torch.Tensor) -> torch.Tensor:
    """PFLU (Zhu et al. 2021): ``x (1 + x / sqrt(1 + x^2)) / 2``."""
    return x * (1 + x / torch.sqrt(1 + x**2)) / 2


def lpflu(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """LPFLU (lpflu.txt eq. 8): ``(1 - a) PFLU(x) + a x``."""
    return (1 - slope) * pflu(x) + slope * x


def fpflu(x: torch.Tensor) -> torch.Tensor:
    """FPFLU (Zhu et al. 2021, eq. 13): ``max(x, x / (1 + x^2))``."""
    return torch.maximum(x, x / (1 + x**2))


def gish(x: torch.Tensor) -> torch.Tensor:
    """Gish (Kaytan et al. 2023): ``x log(2 - exp(-exp(x)))``."""
    return x * torch.log(2 - torch.exp(-torch.exp(x)))


def srelu(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """SReLU (srelu.txt III.A): ``alpha x`` for x > 0, ``beta (exp(x) - 1)`` otherwise."""
    return torch.where(x > 0, alpha * x, beta * (torch.exp(x) - 1))


def ash(x: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """ASH (ash.txt eq. 10): ``x sigmoid(2 alpha (x - mean - z std))``, population statistics over ``dims``."""
    mean = torch.mean(x, dim=dims, keepdim=True)
    std = torch.std(x, dim=dims, keepdim=True, unbiased=False)
    return x * torch.sigmoid(2 * alpha * (x - mean - z * std))


def ash_dims(ndim: int) -> tuple[int, ...]:
    """ASH's default per-sample dimensions: (C, H, W, ...) of 4-D and larger inputs, else the last one."""
    if ndim >= 4:
        return tuple(range(1, ndim))
    return (ndim - 1,) if ndim >= 1 else ()


FORMULAS: dict[str, Callable[..., torch.Tensor]] = {
    "smu": smu,
    "smu1": smu1,
    "pflu": pflu,
    "lpflu": lpflu,
    "fpflu": fpflu,
    "gish": gish,
    "srelu": srelu,
    "ash": ash,
}


@dataclass
class Pair:
    """One activation's two contestants: ``fn(x, *args)`` (the naive formula) and ``module(x)`` (actplug).

    ``args`` holds the module's own parameter and buffer tensors where the formula uses them, so
    trainable parameters require gradients on both sides; ``state`` names the tensors that belong
    to the module (they live as long as the model, so they are not counted as saved activations).
    """

    name: str
    fn: Callable[..., torch.Tensor]
    args: tuple[Any, ...]
    module: nn.Module

    def naive(self, x: torch.Tensor) -> torch.Tensor:
        """The naive formula on ``x``."""
        return self.fn(x, *self.args)

    def state(self) -> list[torch.Tensor]:
        """The module's parameters and buffers (shared with ``args``)."""
        return [*self.module.parameters(), *self.module.buffers()]


def _formula_args(name: str, module: nn.Module, ndim: int) -> tuple[Any, ...]:
    if name in ("smu", "smu1"):
        return (module.mu, float(module.alpha))
    if name == "lpflu":
        # The module draws a new slope per training call; the formula gets the midpoint, as a tensor.
        slope = (module.lower + module.upper) / 2.0
        return (torch.tensor(slope, device=module.running_slope.device),)
    if name == "srelu":
        return (module.alpha, module.beta)
    if name == "ash":
        return (module.z, module.alpha, ash_dims(ndim))
    return ()


def make_pair(name: str, device: torch.device | str = "cpu", ndim: int = 4) -> Pair:
    """``Pair`` for built-in activation ``name`` on ``device``, for inputs with ``ndim`` dimensions.

    The module is ``actplug.create(name)`` with its defaults, in training mode, parameters in
    float32 (as under autocast); the naive formula reads the very same parameter tensors.
    """
    import actplug

    canonical = actplug.info(name).name
    if canonical not in FORMULAS:
        raise KeyError(f"no naive formula for activation {canonical!r}; the benchmark knows {sorted(FORMULAS)}")
    module = actplug.create(canonical).to(device).train()
    return Pair(canonical, FORMULAS[canonical], _formula_args(canonical, module, ndim), module)
