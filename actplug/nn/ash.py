"""ASH's module (ash.txt): adaptive Swish with per-sample statistics and trainable z and alpha."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..activations import ASH as DECLARATION
from ..declaration import Param
from ..kernels.autograd.persample import ash
from .module import check_bool

_EPS = Param("eps", 0.0, low=0.0, why="added to the variance")


class ASH(nn.Module):
    """Adaptive SwisH (Lee et al., ash.txt eq. 10): ``x sigmoid(2 alpha (x - mu_X - z sigma_X))``.

    mu_X and sigma_X (population std, ``sqrt(var + eps)``) are each sample's statistics: over
    (C, H, W) of an (N, C, H, W) input as in the paper, over the last dimension of (B, D) and
    (B, T, D) inputs (so causal sequence models stay causal), or over ``dim`` when given.
    z (the z-score of the kept percentile, z_k) and alpha are trainable scalars initialised to
    0 and 1 (authors' code). The paper's eq. 11 sign, sigmoid(-2 alpha ...), is a typo.
    """

    declaration = DECLARATION

    def __init__(
        self,
        z: float = 0.0,
        alpha: float = 1.0,
        dim: int | Sequence[int] | None = None,
        eps: float = 0.0,
        inplace: bool = False,
    ):
        super().__init__()
        self.z = nn.Parameter(torch.tensor(DECLARATION.param("z").check("ASH", z)))
        self.alpha = nn.Parameter(torch.tensor(DECLARATION.param("alpha").check("ASH", alpha)))
        if dim is not None and not isinstance(dim, int):
            if not isinstance(dim, Sequence) or not all(isinstance(d, int) for d in dim):
                raise TypeError(f"ASH(dim=...) expects None, an int or a sequence of ints, got {dim!r}")
            dim = tuple(dim)
        if isinstance(dim, bool):
            raise TypeError(f"ASH(dim=...) expects None, an int or a sequence of ints, got {dim!r}")
        self.dim = dim
        self.eps = _EPS.check("ASH", eps)
        self.inplace = check_bool("ASH", "inplace", inplace)  # accepted for timm/torchvision; ignored

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ash(x, self.z, self.alpha, self.dim, self.eps)

    def extra_repr(self) -> str:
        dim = "auto" if self.dim is None else self.dim
        return f"z={float(self.z.detach()):g}, alpha={float(self.alpha.detach()):g}, dim={dim}, eps={self.eps:g}"
