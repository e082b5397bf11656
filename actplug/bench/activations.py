"""One activation's row of ``actplug bench``: forward and forward+backward times and saved bytes.

Candidates, all timed in one alternating run: ``torch.relu`` (the baseline), the naive formula,
``torch.compile`` of the naive formula, and ours (``actplug.create(name)``, training mode).
Forward calls take an input that does not require grad; forward+backward calls take one that
does, and backpropagate a fixed gradient into x and the trainable parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from . import memory, naive, timing

CANDIDATES = ("relu", "naive", "compiled", "ours")
# On CUDA a sample is the mean of this many back-to-back calls (see timing.time_call); on CPU, of one.
CUDA_CALLS = 20
MODES = ("forward", "forward_backward")

Log = Callable[[str], None]


def _forward_candidate(name: str, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> timing.Candidate:
    return timing.Candidate(f"forward/{name}", lambda: fn(x))


def _backward_candidate(
    name: str,
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    grad: torch.Tensor,
    reset: Callable[[], None],
) -> timing.Candidate:
    def call() -> None:
        fn(x).backward(grad)

    return timing.Candidate(f"forward_backward/{name}", call, reset)


def kernel_path(x: torch.Tensor) -> str:
    """The fast path actplug's kernels take for ``x`` with scalar parameters: triton, compiled or eager."""
    from ..kernels import dispatch

    return dispatch.fast_path(x, (), triton=True)


def calls_per_sample(device: torch.device) -> int:
    """Calls averaged into one timed sample on ``device``: :data:`CUDA_CALLS` on CUDA, 1 elsewhere."""
    return CUDA_CALLS if device.type == "cuda" else 1


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def bench_activation(
    name: str,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    repeats: int,
    *,
    compile_naive: bool = True,
    warmup: int = 2,
    memory: str = "fresh",
    log: Log = print,
) -> dict[str, Any]:
    """Time and measure activation ``name``; returns its JSON-ready record (see :mod:`actplug.bench`)."""
    pair = naive.make_pair(name, device, len(shape))
    x = torch.randn(shape, dtype=dtype, device=device)
    x_grad = x.detach().clone().requires_grad_(True)
    grad = torch.randn_like(x)
    trainable = [p for p in pair.module.parameters() if p.requires_grad]
    reset = timing.clear_grads([x_grad, *trainable])

    contestants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "relu": torch.relu,
        "naive": pair.naive,
        "ours": pair.module,
    }
    if compile_naive:
        compiled_fn = torch.compile(pair.fn)
        contestants["compiled"] = lambda t: compiled_fn(t, *pair.args)
        log(f"compiling the naive {pair.name} with torch.compile (forward and forward+backward; takes seconds)")
        reset()
        contestants["compiled"](x)
        contestants["compiled"](x_grad).backward(grad)
        reset()
    backward_fns = dict(contestants, relu=F.relu)
    _compile_ours(pair.module, x, x_grad, grad, reset)

    candidates = [_forward_candidate(n, contestants[n], x) for n in CANDIDATES if n in contestants]
    candidates += [_backward_candidate(n, backward_fns[n], x_grad, grad, reset) for n in CANDIDATES if n in contestants]
    log(f"timing {pair.name}: {len(candidates)} candidates x {repeats} alternating repetitions")
    timings = timing.alternate(candidates, device, repeats, warmup, memory, calls_per_sample(device))

    record: dict[str, Any] = {"name": pair.name, "path": kernel_path(x)}
    for mode in MODES:
        medians = {n: timings.median_ms(f"{mode}/{n}") for n in CANDIDATES if n in contestants}
        record[mode] = {
            "median_ms": medians,
            "samples_ms": {n: timings.samples_ms(f"{mode}/{n}") for n in medians},
            "vs_relu": {n: _ratio(medians[n], medians["relu"]) for n in medians if n != "relu"},
            "ours_vs_naive": _ratio(medians["ours"], medians["naive"]),
            "ours_vs_compiled": _ratio(medians["ours"], medians.get("compiled")),
        }
    reset()
    record["saved"] = _saved(pair, x, contestants)
    return record


def _compile_ours(module: torch.nn.Module, x: torch.Tensor, x_grad: torch.Tensor, grad: torch.Tensor, reset) -> None:
    """Run ours once each way and wait for its kernels: they compile in the background, never in a timed call."""
    import actplug.kernels

    module(x)
    module(x_grad).backward(grad)
    reset()
    actplug.kernels.wait()


def _saved(pair: naive.Pair, x: torch.Tensor, contestants: dict[str, Callable]) -> dict[str, Any]:
    """Saved-for-backward bytes of one call of each contestant but ReLU, and their ratios to x's bytes."""
    exclude = [*pair.state(), *(a for a in pair.args if isinstance(a, torch.Tensor))]
    input_bytes = memory.tensor_bytes(x)
    saved: dict[str, int | None] = {}
    for n in ("ours", "naive", "compiled"):
        if n not in contestants:
            continue
        try:
            saved[n] = memory.saved_bytes(contestants[n], x, exclude)
        except Exception:  # saved-tensor hooks under torch.compile are best effort
            saved[n] = None
    return {
        "input_bytes": input_bytes,
        "bytes": saved,
        "ratio": {n: (b / input_bytes if b is not None else None) for n, b in saved.items()},
    }
