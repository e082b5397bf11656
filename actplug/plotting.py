"""Activation curves and derivatives, drawn against the ReLU / Leaky ReLU they approximate
(the style of smu.txt Fig. 1-2 and lpflu.txt Fig. 1-2)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import atomic
from .functional import reference as F
from .nn import ASH
from .registry import registry


def curve(module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and first derivatives of ``module`` on the 1-D grid ``x`` (float64, eval mode).

    ASH depends on its input's statistics, so it is drawn for a standard-normal feature map
    (mu_X = 0, sigma_X = 1), where its threshold is z.
    """
    x = x.detach().to(torch.float64).requires_grad_(True)
    module = module.to(torch.float64).eval()
    if isinstance(module, ASH):
        y = F.ash_apply(x, torch.zeros(()), torch.ones(()), module.z, module.alpha)
    else:
        y = module(x)
    (dy,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), dy.detach()


def _label(name: str, kwargs: dict[str, Any]) -> str:
    if not kwargs:
        return name
    return f"{name} ({', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}' for k, v in kwargs.items())})"


def plot_activations(
    specs: Sequence[tuple[str, dict[str, Any]]],
    path: Path,
    *,
    derivative: bool = False,
    xlim: tuple[float, float] = (-4.0, 4.0),
    points: int = 801,
) -> Path:
    """Write a PNG with one curve per ``(name, kwargs)`` and dashed ReLU / Leaky ReLU references."""
    modules = [(name, kwargs, registry.create(name, **kwargs)) for name, kwargs in specs]  # fail before drawing
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plot output {str(path)!r} must end in .png")
    if not path.parent.exists():
        raise ValueError(f"the folder of plot output {str(path)!r} does not exist; create it first")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = torch.linspace(xlim[0], xlim[1], points, dtype=torch.float64)
    ncols = 2 if derivative else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 5), squeeze=False)
    ax_f, ax_d = axes[0][0], axes[0][-1]
    ax_f.plot(x, torch.relu(x), "--", color="0.55", lw=1.2, label="relu")
    if derivative:
        ax_d.plot(x, (x > 0).double(), "--", color="0.55", lw=1.2, label="relu'")
    slopes_drawn: set[float] = set()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, kwargs, module) in enumerate(modules):
        color = colors[i % len(colors)]
        y, dy = curve(module, x)
        label = _label(registry.info(name).name, kwargs)
        if isinstance(module, ASH):
            label += " [mu_X=0, sigma_X=1]"
        ax_f.plot(x, y, color=color, lw=1.8, label=label)
        if derivative:
            ax_d.plot(x, dy, color=color, lw=1.8, label=label)
        slope = getattr(module, "negative_slope", None)
        if registry.info(name).approximates == "leaky_relu" and slope is not None and slope not in slopes_drawn:
            slopes_drawn.add(slope)
            ax_f.plot(
                x,
                torch.nn.functional.leaky_relu(x, slope),
                ":",
                color=color,
                lw=1.2,
                label=f"leaky relu (slope {slope:g})",
            )
            if derivative:
                ax_d.plot(
                    x, torch.where(x > 0, 1.0, slope), ":", color=color, lw=1.2, label=f"leaky relu' (slope {slope:g})"
                )
    ax_f.set_title("activation f(x)")
    if derivative:
        ax_d.set_title("first derivative f'(x)")
    for ax in {id(a): a for a in (ax_f, ax_d)}.values():
        ax.axhline(0, color="0.85", lw=0.8, zorder=0)
        ax.axvline(0, color="0.85", lw=0.8, zorder=0)
        ax.set_xlabel("x")
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    try:
        atomic.write_figure(path, fig, dpi=120)
    finally:
        plt.close(fig)
    return path
