"""The built-in activations, registered through the public hook exactly as a third party would."""

from __future__ import annotations

from ..activations import BUILTINS
from ..hookspecs import hookimpl


@hookimpl
def actplug_register_activations(registry) -> None:
    """Register SMU, SMU-1, LPFLU, SReLU, ASH and the PFLU / FPFLU / Gish baselines from their declarations."""
    for declaration in BUILTINS:
        registry.declare(declaration)
