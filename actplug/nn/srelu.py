"""SReLU module (srelu.txt): the smooth rectified linear unit, not the S-shaped ReLU."""

from __future__ import annotations

import torch
from torch import nn

from .. import kernels
from ._base import check_bool, check_real


class SReLU(nn.Module):
    """Smooth Rectified Linear Unit (srelu.txt III.A): ``alpha x`` if x > 0, else ``beta (e^x - 1)``.

    Defaults alpha = 1.0, beta = 0.1 (the paper: "a small positive constant"; 0.1 is the authors'
    code). alpha = beta = 1 is ELU. The derivative jumps from beta to alpha at 0 unless
    alpha == beta: the paper's "fully differentiable" holds only then. ``trainable=True`` makes
    alpha and beta Parameters, else they are buffers. Not the S-shaped ReLU (Jin et al. 2015,
    keras-contrib) that shares the name.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 0.1, trainable: bool = False, inplace: bool = False):
        super().__init__()
        alpha = check_real("SReLU", "alpha", alpha)
        beta = check_real("SReLU", "beta", beta)
        self.trainable = check_bool("SReLU", "trainable", trainable)
        self.inplace = check_bool("SReLU", "inplace", inplace)  # accepted for timm/torchvision; ignored
        for name, value in (("alpha", alpha), ("beta", beta)):
            tensor = torch.tensor(value)
            if self.trainable:
                self.register_parameter(name, nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.srelu(x, self.alpha, self.beta)

    def extra_repr(self) -> str:
        return f"alpha={float(self.alpha.detach()):g}, beta={float(self.beta.detach()):g}, trainable={self.trainable}"
