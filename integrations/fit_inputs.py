"""The inputs a fit runs over: what each old activation sees on a calibration batch, or a standard range.

Calibration: the model runs once on the caller's batch, in evaluation mode under ``torch.no_grad``,
with hooks on the old activation modules that keep a random subsample (a fixed generator, so the
fit is repeatable) of each one's inputs, and for per-sample targets (ASH) each kept element's
sample mean and standard deviation over the whole sample. Without calibration, the standard range:
a quadrature of the standard normal density on [-6, 6], on points spaced geometrically from 1e-8
out to 6 on either side of 0 (so that the gap of a sharp kink, as in ReLU's limits, is resolved
at every scale), or, for per-sample targets, 16 samples of 1024 standard normal values, each
centred to mean 0 (the zero-mean samples that ASH's statistics assume).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from actplug.activations.ash import ash_stats

#: Elements kept per layer (and per call of a layer) from a calibration run.
SAMPLES = 4096
#: Points on each side of 0 in the standard range, spaced geometrically between these bounds.
GRID_POINTS = 2000
GRID_SMALLEST = 1e-8
GRID_LARGEST = 6.0
#: The standard per-sample inputs: this many samples of this many values.
STANDARD_SAMPLES = (16, 1024)
SEED = 0


@dataclass(frozen=True)
class SampleStats:
    """How a per-sample target (ASH) takes its statistics: over ``dim`` (None: ASH's default), with ``eps``."""

    dim: int | tuple[int, ...] | None
    eps: float


@dataclass
class Inputs:
    """One layer's fit inputs, float64 1-D tensors on the CPU.

    ``x`` the inputs, ``weight`` their weights (summing to 1), ``mean``/``std`` each element's
    sample statistics (per-sample targets only), ``observed`` the old module's own outputs at x
    (calibration only, kept where the old module is not one function of x), ``origin``
    ``"calibration"`` or ``"standard"``.
    """

    x: torch.Tensor
    weight: torch.Tensor
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    observed: torch.Tensor | None = None
    origin: str = "standard"

    @property
    def size(self) -> int:
        """How many inputs the fit runs over."""
        return int(self.x.numel())


def standard(stats: SampleStats | None) -> Inputs:
    """The standard range (see the module docstring), elementwise or per sample."""
    if stats is None:
        positive = torch.logspace(
            torch.log10(torch.tensor(GRID_SMALLEST)).item(),
            torch.log10(torch.tensor(GRID_LARGEST)).item(),
            GRID_POINTS,
            dtype=torch.float64,
        )
        x = torch.cat([-positive.flip(0), torch.zeros(1, dtype=torch.float64), positive])
        # Trapezoid weights of the N(0, 1) density on the uneven grid.
        width = torch.zeros_like(x)
        gaps = x[1:] - x[:-1]
        width[:-1] += gaps / 2
        width[1:] += gaps / 2
        weight = torch.exp(-x * x / 2) * width
        return Inputs(x, weight / weight.sum(), origin="standard")
    generator = torch.Generator().manual_seed(SEED)
    rows = torch.randn(*STANDARD_SAMPLES, generator=generator, dtype=torch.float64)
    rows = rows - rows.mean(dim=-1, keepdim=True)
    mean, std = ash_stats(rows, -1, stats.eps)
    x = rows.reshape(-1)
    n = x.numel()
    return Inputs(
        x,
        torch.full((n,), 1.0 / n, dtype=torch.float64),
        mean.expand_as(rows).reshape(-1),
        std.expand_as(rows).reshape(-1),
        origin="standard",
    )


def run_model(model: nn.Module, calibration: Any) -> None:
    """Run ``model`` on ``calibration``: a tensor as model(t), a tuple/list as model(*t), a dict as model(**t)."""
    if isinstance(calibration, torch.Tensor):
        model(calibration)
    elif isinstance(calibration, Mapping):
        model(**calibration)
    elif isinstance(calibration, Sequence) and not isinstance(calibration, (str, bytes)):
        model(*calibration)
    else:
        raise TypeError(
            "swap(calibration=...) needs a tensor (run as model(t)), a tuple or list of positional inputs "
            f"(model(*t)) or a dict of keyword inputs (model(**t)), got {type(calibration).__name__}"
        )


class _Recorder:
    """Forward hooks on one old module: a subsample of its inputs (and outputs) at every call."""

    def __init__(self, stats: SampleStats | None, outputs: bool, generator: torch.Generator) -> None:
        self.stats, self.outputs, self.generator = stats, outputs, generator
        self.pieces: list[dict[str, torch.Tensor]] = []
        self.pending: list[tuple[torch.Tensor, torch.Size] | None] = []
        self.error: Exception | None = None

    def before(self, module: nn.Module, args: tuple) -> None:
        x = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if x is None or not x.is_floating_point() or x.numel() == 0:
            self.pending.append(None)
            return
        x = x.detach()
        flat = x.reshape(-1)
        index = torch.randint(flat.numel(), (min(SAMPLES, flat.numel()),), generator=self.generator)
        index = index.to(flat.device)
        piece = {"x": flat[index].to(device="cpu", dtype=torch.float64)}
        if self.stats is not None:
            try:
                # In x's own precision, as the new module will compute them (float32 for half inputs).
                mean, std = ash_stats(x, self.stats.dim, self.stats.eps)
            except (ValueError, RuntimeError) as exc:  # a dim the new module could not take either
                self.error = self.error or exc
                self.pending.append(None)
                return
            piece["mean"] = mean.expand_as(x).reshape(-1)[index].to(device="cpu", dtype=torch.float64)
            piece["std"] = std.expand_as(x).reshape(-1)[index].to(device="cpu", dtype=torch.float64)
        self.pieces.append(piece)
        self.pending.append((index, x.shape))

    def after(self, module: nn.Module, args: tuple, output: Any) -> None:
        pending = self.pending.pop() if self.pending else None
        if pending is None or not self.outputs:
            return
        index, shape = pending
        if isinstance(output, torch.Tensor) and output.shape == shape:
            self.pieces[-1]["observed"] = output.detach().reshape(-1)[index].to(device="cpu", dtype=torch.float64)

    def inputs(self, generator: torch.Generator) -> Inputs | None:
        """All calls' pieces as one :class:`Inputs`, subsampled to :data:`SAMPLES`; None if never called."""
        if not self.pieces:
            return None
        keys = [k for k in self.pieces[0] if all(k in p for p in self.pieces)]
        joined = {k: torch.cat([p[k] for p in self.pieces]) for k in keys}
        keep = torch.isfinite(joined["x"])
        for k in keys:
            keep &= torch.isfinite(joined[k])
        joined = {k: v[keep] for k, v in joined.items()}
        n = int(joined["x"].numel())
        if n == 0:
            return None
        if n > SAMPLES:
            pick = torch.randperm(n, generator=generator)[:SAMPLES]
            joined = {k: v[pick] for k, v in joined.items()}
            n = SAMPLES
        return Inputs(
            joined["x"],
            torch.full((n,), 1.0 / n, dtype=torch.float64),
            joined.get("mean"),
            joined.get("std"),
            joined.get("observed"),
            origin="calibration",
        )


def collect(
    model: nn.Module,
    modules: Sequence[tuple[nn.Module, bool]],
    stats: SampleStats | None,
    calibration: Any,
) -> dict[int, Inputs]:
    """Run ``model`` once on ``calibration`` and return, by ``id`` of each old module, the inputs it saw.

    ``modules`` holds ``(old module, keep its outputs)`` pairs. The model runs in evaluation mode
    under ``torch.no_grad``; every module's train/eval flag is restored afterwards, whatever happens.
    A module the run never called is missing from the result.
    """
    generator = torch.Generator().manual_seed(SEED)
    recorders: dict[int, _Recorder] = {}
    handles = []
    for module, outputs in modules:
        if id(module) in recorders:
            continue
        recorder = _Recorder(stats, outputs, generator)
        recorders[id(module)] = recorder
        handles.append(module.register_forward_pre_hook(recorder.before))
        handles.append(module.register_forward_hook(recorder.after))
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            try:
                run_model(model, calibration)
            except TypeError as exc:
                if str(exc).startswith("swap(calibration=...)"):
                    raise
                raise _cannot_run(model, calibration, exc) from exc
            except Exception as exc:
                raise _cannot_run(model, calibration, exc) from exc
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in flags:
            module.training = flag
    for recorder in recorders.values():
        if recorder.error is not None:
            raise ValueError(
                f"swap(fit=True): the new activation's statistics (dim={stats.dim!r}) do not fit the inputs the old "
                f"one sees on the calibration batch ({recorder.error}); pass a dim= that suits them"
            ) from recorder.error
    found = {}
    for key, recorder in recorders.items():
        inputs = recorder.inputs(generator)
        if inputs is not None:
            found[key] = inputs
    return found


def _cannot_run(model: nn.Module, calibration: Any, exc: Exception) -> ValueError:
    form = (
        "model(t)"
        if isinstance(calibration, torch.Tensor)
        else "model(**t)"
        if isinstance(calibration, Mapping)
        else "model(*t)"
    )
    return ValueError(
        f"swap(calibration=...): {type(model).__name__} could not run on the calibration input as {form} "
        f"({type(exc).__name__}: {exc}); pass what the model takes: a tensor (model(t)), a tuple or list of "
        "positional inputs (model(*t)) or a dict of keyword inputs (model(**t))"
    )
