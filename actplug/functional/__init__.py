"""Functional twins of every built-in activation: plain, stateless tensor functions.

Each has the same name as its module in :mod:`actplug.nn` and registry entry
(``actplug.functional.smu(x, alpha, mu)`` is what ``actplug.nn.SMU`` computes).
"""

from .ash import ash, ash_apply, ash_dims, ash_stats
from .gish import gish
from .pflu import fpflu, lpflu, pflu
from .smu import smu, smu1
from .srelu import srelu

__all__ = [
    "ash",
    "ash_apply",
    "ash_dims",
    "ash_stats",
    "fpflu",
    "gish",
    "lpflu",
    "pflu",
    "smu",
    "smu1",
    "srelu",
]
