"""Gish module (Kaytan et al. 2023)."""

from __future__ import annotations

import torch
from torch import nn

from .. import kernels
from ._base import check_bool


class Gish(nn.Module):
    """Gish (Kaytan et al. 2023, cited in lpflu.txt): ``x ln(2 - exp(-exp(x)))``."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = check_bool("Gish", "inplace", inplace)  # accepted for timm/torchvision; ignored

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.gish(x)
