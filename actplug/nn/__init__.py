"""``nn.Module`` classes of every built-in activation, with the constructor kwargs of their papers."""

from .ash import ASH
from .gish import Gish
from .pflu import FPFLU, LPFLU, PFLU
from .smu import SMU, SMU1
from .srelu import SReLU

__all__ = ["ASH", "FPFLU", "LPFLU", "PFLU", "SMU", "SMU1", "Gish", "SReLU"]
