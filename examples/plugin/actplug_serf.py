"""Serf (Nag et al. 2023) and Swish-beta (Ramachandran et al. 2017), published to actplug by formula.

Each activation is its forward as plain PyTorch math plus its parameters; actplug generates the
module, the memory-lean functional twin (only x is kept for backward) and the fused CPU and CUDA
kernels, and the names work in timm, transformers and torchvision. Swish-beta's backward is left to
actplug (the derivative of the forward, recomputed from x); Serf's is written out.
"""

import torch
import torch.nn.functional as F

import actplug


def serf(x):
    """Serf (Nag et al. 2023): ``x erf(ln(1 + e^x))``."""
    return x * torch.erf(F.softplus(x))


def serf_backward(x, grad, *, needs=()):
    """dL/dx of Serf: ``erf(s) + x e^(-s^2) (2 / sqrt(pi)) sigmoid(x)`` with ``s = ln(1 + e^x)``."""
    s = F.softplus(x)
    return grad * (torch.erf(s) + x * torch.exp(-s * s) * (2.0 / torch.pi**0.5) * torch.sigmoid(x))


def swish_beta(x, beta):
    """Swish with a trainable slope (Ramachandran et al. 2017): ``x sigmoid(beta x)``."""
    return x * torch.sigmoid(beta * x)


@actplug.hookimpl
def actplug_register_activations(registry):
    registry.register_formula(
        "serf",
        serf,
        backward=serf_backward,
        paper="Nag et al. 2023, Serf: log-Softplus ERror activation Function",
        formula="x erf(ln(1 + exp(x)))",
        approximates="relu",
    )
    registry.register_formula(
        "swish_beta",
        swish_beta,
        params={"beta": 1.0},
        trainable=("beta",),
        aliases=("swish-beta",),
        paper="Ramachandran et al. 2017, Searching for activation functions",
        formula="x sigmoid(beta x)",
        approximates="relu",
    )
