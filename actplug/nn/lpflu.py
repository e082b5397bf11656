"""LPFLU's module (lpflu.txt eqs. 8, 10, 11): a slope drawn per call in training, its moving average in evaluation."""

from __future__ import annotations

import torch
from torch import nn

from ..activations import LPFLU as DECLARATION
from ..declaration import Param
from ..kernels.autograd import op_for
from .module import check_bool

_LOWER = Param("lower", 0.0, low=0.0, high=1.0, open_high=True, why="lpflu.txt eq. 10: slopes in [0, 1)")
_UPPER = Param("upper", 0.02, low=0.0, high=1.0, open_high=True, why="lpflu.txt eq. 10: slopes in [0, 1)")
_MOMENTUM = Param("momentum", 0.1, low=0.0, high=1.0, why="BatchNorm's convention")


class LPFLU(nn.Module):
    """Leaky PFLU (lpflu.txt eqs. 8, 10, 11): ``(1 - a) PFLU(x) + a x``.

    Training: one slope ``a ~ U(lower, upper)`` per forward call (eq. 10), and the buffer
    ``running_slope`` moves towards it by ``momentum`` in BatchNorm's convention,
    ``running = (1 - momentum) running + momentum a`` (eq. 11 with m = 1 - momentum; the paper
    sets m like BN's momentum, the authors' code uses momentum 0.00125). Evaluation uses
    ``running_slope``, initialised to (lower + upper) / 2. ``randomized=False`` always uses
    (lower + upper) / 2, as the paper does in plain feed-forward blocks. No trainable parameters.
    """

    declaration = DECLARATION
    _op = op_for(DECLARATION)

    def __init__(
        self,
        lower: float = 0.0,
        upper: float = 0.02,
        momentum: float = 0.1,
        randomized: bool = True,
        inplace: bool = False,
    ):
        super().__init__()
        self.lower = _LOWER.check("LPFLU", lower)
        self.upper = _UPPER.check("LPFLU", upper)
        if self.lower > self.upper:
            raise ValueError(
                f"LPFLU(lower={lower!r}, upper={upper!r}) needs 0 <= lower <= upper < 1 (lpflu.txt eq. 10)"
            )
        self.momentum = _MOMENTUM.check("LPFLU", momentum)
        self.randomized = check_bool("LPFLU", "randomized", randomized)
        self.inplace = check_bool("LPFLU", "inplace", inplace)  # accepted for timm/torchvision; ignored
        self.register_buffer("running_slope", torch.tensor((self.lower + self.upper) / 2.0))

    @property
    def negative_slope(self) -> float:
        """The slope evaluation uses now (the moving average, or the fixed midpoint)."""
        if self.randomized:
            return float(self.running_slope)
        return (self.lower + self.upper) / 2.0

    def sample_slope(self, device: torch.device) -> torch.Tensor:
        """Draw a ~ U(lower, upper) (one scalar) and fold it into ``running_slope``."""
        slope = torch.empty((), device=device).uniform_(self.lower, self.upper)
        with torch.no_grad():
            self.running_slope.lerp_(slope.to(self.running_slope), self.momentum)
        return slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.randomized:
            return self._op(x, ((self.lower + self.upper) / 2.0,))
        if self.training:
            return self._op(x, (self.sample_slope(x.device),))
        return self._op(x, (self.running_slope,))

    def extra_repr(self) -> str:
        return f"lower={self.lower:g}, upper={self.upper:g}, momentum={self.momentum:g}, randomized={self.randomized}"
