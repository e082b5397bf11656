"""The plain reference math of every built-in activation: stateless tensor functions, and their
analytic backwards from x alone.

This is what autograd, ``torch.compile``, ``torch.export`` and functorch differentiate and trace,
and what the tests hold the fast paths to. Saving for backward whatever autograd keeps, it costs more
memory than :mod:`actplug.functional`'s lean twins, which compute the same values. Each backward
takes ``needs``, the names of the parameters whose gradients are wanted, and returns dL/dx (for
activations without parameters) or ``(dL/dx, {name: gradient})``.
"""

from ..activations.ash import ash, ash_apply, ash_backward, ash_backward_dx, ash_backward_sums, ash_dims, ash_stats
from ..activations.gish import gish, gish_backward
from ..activations.pflu import fpflu, fpflu_backward, lpflu, lpflu_backward, pflu, pflu_backward
from ..activations.smu import smu, smu1, smu1_backward, smu_backward
from ..activations.srelu import srelu, srelu_backward

__all__ = [
    "ash",
    "ash_apply",
    "ash_backward",
    "ash_backward_dx",
    "ash_backward_sums",
    "ash_dims",
    "ash_stats",
    "fpflu",
    "fpflu_backward",
    "gish",
    "gish_backward",
    "lpflu",
    "lpflu_backward",
    "pflu",
    "pflu_backward",
    "smu",
    "smu1",
    "smu1_backward",
    "smu_backward",
    "srelu",
    "srelu_backward",
]
