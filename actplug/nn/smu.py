"""SMU and SMU-1 modules (smu.txt): smooth Leaky ReLU with a trainable smoothing scalar mu."""

from __future__ import annotations

import torch
from torch import nn

from .. import kernels
from ._base import check_bool, check_real


class _SmoothMaximum(nn.Module):
    """Common shape of SMU and SMU-1: fixed alpha, scalar mu as a Parameter or a buffer."""

    _default_mu: float

    def __init__(self, alpha: float = 0.25, mu: float | None = None, trainable: bool = True, inplace: bool = False):
        super().__init__()
        owner = type(self).__name__
        self.alpha = check_real(owner, "alpha", alpha)
        mu = self._default_mu if mu is None else check_real(owner, "mu", mu)
        self.trainable = check_bool(owner, "trainable", trainable)
        # Accepted because timm and torchvision pass inplace=True; the result is always a new tensor.
        self.inplace = check_bool(owner, "inplace", inplace)
        value = torch.tensor(float(mu))
        if self.trainable:
            self.mu = nn.Parameter(value)
        else:
            self.register_buffer("mu", value)

    @property
    def negative_slope(self) -> float:
        """The slope of the Leaky ReLU this unit smooths."""
        return self.alpha

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, mu={float(self.mu.detach()):.6g}, trainable={self.trainable}"


class SMU(_SmoothMaximum):
    """Smooth Maximum Unit (Biswas et al., smu.txt eq. 6).

    ``f(x) = ((1+alpha) x + (1-alpha) x erf(mu (1-alpha) x)) / 2``, smoothing max(x, alpha x).
    alpha is fixed (default 0.25, paper 2.2); mu is a trainable scalar initialised to 1e6 (paper).
    The authors later recommended ``alpha=0.01, mu=2.5``: at 1e6 erf saturates and mu barely trains.
    ``trainable=False`` keeps mu as a buffer. alpha = 0, mu = 1/sqrt(2) is GELU.
    """

    _default_mu = 1e6

    def __init__(self, alpha: float = 0.25, mu: float = 1e6, trainable: bool = True, inplace: bool = False):
        super().__init__(alpha=alpha, mu=mu, trainable=trainable, inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.smu(x, self.alpha, self.mu)


class SMU1(_SmoothMaximum):
    """SMU-1 (Biswas et al., smu.txt, from eq. 3 with x1 = x, x2 = alpha x).

    ``f(x) = ((1+alpha) x + sqrt(((1-alpha) x)^2 + mu^2)) / 2``, smoothing max(x, alpha x).
    alpha is fixed (default 0.25); mu is a trainable scalar initialised to 4.352665993287951e-09.
    """

    _default_mu = 4.352665993287951e-09

    def __init__(
        self, alpha: float = 0.25, mu: float = 4.352665993287951e-09, trainable: bool = True, inplace: bool = False
    ):
        super().__init__(alpha=alpha, mu=mu, trainable=trainable, inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.smu1(x, self.alpha, self.mu)
