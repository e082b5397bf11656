"""``actplug bench``: how fast and how memory-lean actplug's activations are, against ReLU and the naive formulas.

For each activation, in one run with alternating repetitions (medians kept): forward and
forward+backward time of ours (``actplug.create(name)``) as ratios to ReLU, to the naive formula
(:mod:`actplug.bench.naive`) and to ``torch.compile`` of it; the bytes autograd saves for backward
over the input's bytes; and a model-level row, a timm ResNet-50 training step per activation
against ReLU (time and memory). :func:`run_benchmark` returns it all as a JSON-ready dict;
:func:`main` is the command line (``actplug bench ...`` and ``benchmarks/bench_activations.py``).
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import activations, model, targets, timing

__all__ = ["machine_info", "main", "run_benchmark"]


def machine_info(device: torch.device) -> dict[str, Any]:
    """Versions, device name and CPU threads: what the timings depend on."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine() or "cpu"
        name = f"CPU ({name}, {torch.get_num_threads()} threads)"
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run_benchmark(
    acts: Sequence[str],
    shape: Sequence[int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    repeats: int = 10,
    *,
    compile_naive: bool = True,
    model_row: bool = True,
    model_batch: int | None = None,
    model_image_size: int | None = None,
    model_repeats: int | None = None,
    warmup: int = 2,
    memory: str = "fresh",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Benchmark ``acts`` (registered names) and return the JSON-ready result.

    ``memory`` (CPU): ``fresh``, every timed call's outputs on fresh pages, as in a plain PyTorch
    process; or ``reused``, glibc keeps freed memory for the rest of the process (as a caching
    allocator does), so the times are the kernels' own (see :mod:`actplug.bench.timing`).

    Keys: ``machine``, ``config``, ``activations`` (per name: ``path``, ``forward`` and
    ``forward_backward`` with ``median_ms``/``samples_ms`` per candidate, ``vs_relu``,
    ``ours_vs_naive``, ``ours_vs_compiled``; ``saved`` bytes and ratios; ``targets``) and
    ``model`` (None with ``model_row=False``). Every candidate's memory is treated alike: all fresh
    pages, or all reused.
    """
    import actplug.kernels

    device = torch.device(device)
    timing.check_memory_mode(memory)
    if memory == "reused" and device.type == "cpu" and not timing.keep_freed_memory():
        raise RuntimeError("memory='reused' needs glibc's mallopt, which this C library lacks; use memory='fresh'")
    shape = tuple(int(s) for s in shape)
    batch, image_size = model.default_size(device)
    batch = model_batch or batch
    image_size = model_image_size or image_size
    model_repeats = model_repeats or repeats
    settings = actplug.kernels.current()
    result: dict[str, Any] = {
        "machine": machine_info(device),
        "config": {
            "acts": list(acts),
            "shape": list(shape),
            "dtype": str(dtype).removeprefix("torch."),
            "device": device.type,
            "repeats": repeats,
            "calls_per_sample": activations.calls_per_sample(device),
            "warmup": warmup,
            "compile": compile_naive,
            "memory": memory,
            "kernels": {
                "cpu": settings.cpu,
                "cuda": settings.cuda,
                "cpu_min_numel": settings.cpu_min_numel,
                "compile": settings.compile,
            },
        },
        "activations": {},
        "model": None,
    }
    for name in acts:
        record = activations.bench_activation(
            name, shape, dtype, device, repeats, compile_naive=compile_naive, warmup=warmup, memory=memory, log=log
        )
        record["targets"] = [t.as_dict() for t in targets.evaluate(record, device.type)]
        result["activations"][record["name"]] = record
    if model_row:
        result["model"] = model.bench_model(
            list(result["activations"]), device, dtype, batch, image_size, model_repeats, memory=memory, log=log
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``actplug bench`` with ``argv`` (default: the process's arguments); returns the exit status."""
    import sys

    from ..cli import main as cli_main

    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])
