"""Functional twins of every built-in activation: plain, stateless tensor functions.

Each has the same name as its module in :mod:`actplug.nn` and registry entry
(``actplug.functional.smu(x, alpha, mu)`` is what ``actplug.nn.SMU`` computes), and a
``*_backward`` twin with its analytic gradients from x alone. This is the reference math that
autograd and ``torch.compile`` see; :mod:`actplug.kernels` holds the fast, memory-lean twins
(same signatures) that the modules call.
"""

from .ash import ash, ash_apply, ash_backward, ash_backward_dx, ash_backward_sums, ash_dims, ash_stats
from .gish import gish, gish_backward
from .pflu import fpflu, fpflu_backward, lpflu, lpflu_backward, pflu, pflu_backward
from .smu import smu, smu1, smu1_backward, smu_backward
from .srelu import srelu, srelu_backward

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
