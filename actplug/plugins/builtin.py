"""The built-in activations, registered through the public hook exactly as a third party would."""

from __future__ import annotations

from .. import functional as F
from .. import nn as acts
from ..hookspecs import hookimpl


@hookimpl
def actplug_register_activations(registry) -> None:
    """Register SMU, SMU-1, LPFLU, SReLU, ASH and the PFLU / FPFLU / Gish baselines."""
    registry.register(
        "smu",
        acts.SMU,
        paper=(
            "Biswas et al., SMU: smooth activation function for deep networks using smoothing maximum "
            "technique (smu.txt, eq. 6)"
        ),
        formula="((1+a)x + (1-a) x erf(mu (1-a) x)) / 2",
        functional=F.smu,
        approximates="leaky_relu",
    )
    registry.register(
        "smu1",
        acts.SMU1,
        aliases=("smu-1", "smu_1"),
        paper="Biswas et al., SMU (smu.txt, eq. 3 with x1 = x, x2 = a x)",
        formula="((1+a)x + sqrt(((1-a)x)^2 + mu^2)) / 2",
        functional=F.smu1,
        approximates="leaky_relu",
    )
    registry.register(
        "lpflu",
        acts.LPFLU,
        paper="Leaky power function linear unit with EMA-trained slope (lpflu.txt, eqs. 8, 10, 11)",
        formula="(1-a) PFLU(x) + a x,  a ~ U(l, u) in training, EMA of a in evaluation",
        functional=F.lpflu,
        approximates="leaky_relu",
    )
    registry.register(
        "srelu",
        acts.SReLU,
        paper="Smooth rectified linear unit (srelu.txt, section III.A); not the S-shaped ReLU of Jin et al. 2015",
        formula="a x if x > 0 else b (exp(x) - 1)",
        functional=F.srelu,
        approximates="relu",
    )
    registry.register(
        "ash",
        acts.ASH,
        paper="Lee et al., ASH: adaptive Swish with stochastic percentile sampling (ash.txt, eq. 10)",
        formula="x sigmoid(2 a (x - mean_X - z std_X)), statistics per sample",
        functional=F.ash,
        approximates="relu",
    )
    registry.register(
        "pflu",
        acts.PFLU,
        paper="Zhu et al. 2021, PFLU and FPFLU (cited in lpflu.txt)",
        formula="x (1 + x / sqrt(1 + x^2)) / 2",
        functional=F.pflu,
        approximates="relu",
    )
    registry.register(
        "fpflu",
        acts.FPFLU,
        paper="Zhu et al. 2021, PFLU and FPFLU, eq. 13 (cited in lpflu.txt)",
        formula="max(x, x / (1 + x^2))",
        functional=F.fpflu,
        approximates="relu",
    )
    registry.register(
        "gish",
        acts.Gish,
        paper="Kaytan et al. 2023, Gish (cited in lpflu.txt)",
        formula="x ln(2 - exp(-exp(x)))",
        functional=F.gish,
        approximates="relu",
    )
