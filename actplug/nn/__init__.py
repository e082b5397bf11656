"""``nn.Module`` classes of every built-in activation, with the constructor kwargs of their papers.

SMU, SMU-1, PFLU, FPFLU, Gish and SReLU are generated from their declarations
(:mod:`actplug.activations`, :func:`.module.module_class`); LPFLU (a slope drawn per call, its
moving average in evaluation) and ASH (per-sample statistics) are written by hand. A plugin's
formula gets a generated class too, importable from :mod:`actplug.nn.formulas`.
"""

from .. import activations as _declared
from .ash import ASH
from .lpflu import LPFLU
from .module import ActivationModule, module_class

SMU = module_class(_declared.SMU)
SMU1 = module_class(_declared.SMU1)
PFLU = module_class(_declared.PFLU)
FPFLU = module_class(_declared.FPFLU)
Gish = module_class(_declared.GISH)
SReLU = module_class(_declared.SRELU)

__all__ = ["ASH", "FPFLU", "LPFLU", "PFLU", "SMU", "SMU1", "ActivationModule", "Gish", "SReLU", "module_class"]
