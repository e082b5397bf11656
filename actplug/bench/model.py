"""The model-level row of ``actplug bench``: a timm ResNet-50 training step per activation against ReLU.

One model per activation (``timm.create_model("resnet50", act_layer=name)``, random weights), each
with its own SGD optimiser; the training steps (forward, cross-entropy, backward, SGD step) of all
models alternate, and the median step time is kept. Memory: on CUDA the peak allocated during a
step above what was allocated before it (``torch.cuda.max_memory_allocated``); on CPU, which has no
peak-memory counter, the bytes autograd saves for backward during the forward (the activation
memory, distinct storages, parameters and buffers left out).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import memory, timing

ARCH = "resnet50"
NUM_CLASSES = 10
BASELINE = "relu"

Log = Callable[[str], None]


def default_size(device: torch.device) -> tuple[int, int]:
    """(batch, image size) small enough for a CPU, or ResNet-50's usual 64 x 224 on CUDA."""
    return (64, 224) if device.type == "cuda" else (8, 112)


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class TrainStep:
    """One training step of ``model`` on a fixed batch: forward, cross-entropy, backward, SGD step."""

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype):
        self.model = model
        self.images, self.labels, self.dtype = images, labels, dtype
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def loss(self) -> torch.Tensor:
        """Forward and cross-entropy (under autocast for half dtypes)."""
        with _autocast(self.images.device, self.dtype):
            return F.cross_entropy(self.model(self.images), self.labels)

    def __call__(self) -> None:
        self.loss().backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state(self) -> list[torch.Tensor]:
        """Parameters and buffers: resident model state, not activation memory."""
        return [*self.model.parameters(), *self.model.buffers()]


def build(name: str, device: torch.device, batch: int, image_size: int, dtype: torch.dtype) -> TrainStep:
    """A ResNet-50 with activation ``name`` (and its training step) on ``device``."""
    import timm

    import actplug  # noqa: F401  (puts actplug's names into timm's tables)

    model = timm.create_model(ARCH, pretrained=False, act_layer=name, num_classes=NUM_CLASSES)
    model = model.to(device).train()
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, image_size, image_size, generator=generator).to(device)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=generator).to(device)
    return TrainStep(model, images, labels, dtype)


def measure_memory(step: TrainStep) -> int:
    """Bytes of one step: CUDA peak allocated above the start, or CPU saved-for-backward bytes."""
    device = step.images.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    with memory.SavedTensorsMeter(exclude=step.state()) as meter:
        loss = step.loss()
    del loss  # frees the graph; no backward needed to count what it saved
    return meter.bytes


def memory_kind(device: torch.device) -> str:
    """What the memory column holds: ``cuda_max_allocated`` or ``saved_for_backward``."""
    return "cuda_max_allocated" if device.type == "cuda" else "saved_for_backward"


def bench_model(
    names: Sequence[str],
    device: torch.device,
    dtype: torch.dtype,
    batch: int,
    image_size: int,
    repeats: int,
    *,
    warmup: int = 1,
    memory: str = "fresh",
    log: Log = print,
) -> dict[str, Any]:
    """Training-step time and memory of ResNet-50 with ReLU and with each of ``names``; JSON-ready."""
    order = [BASELINE, *(n for n in names if n != BASELINE)]
    log(f"building {len(order)} {ARCH} models (batch {batch}, {image_size}x{image_size})")
    steps = {n: build(n, device, batch, image_size, dtype) for n in order}
    import actplug.kernels

    for step in steps.values():  # actplug's kernels compile in the background: done before any timed step
        step()
    actplug.kernels.wait()
    candidates = [timing.Candidate(n, step) for n, step in steps.items()]
    log(f"timing {ARCH} training steps: {len(order)} models x {repeats} alternating repetitions")
    timings = timing.alternate(candidates, device, repeats, warmup, memory)
    memories = {n: measure_memory(step) for n, step in steps.items()}
    base_ms, base_bytes = timings.median_ms(BASELINE), memories[BASELINE]
    rows = {
        n: {
            "step_ms": timings.median_ms(n),
            "step_samples_ms": timings.samples_ms(n),
            "step_vs_relu": timings.median_ms(n) / base_ms,
            "memory_bytes": memories[n],
            "memory_vs_relu": memories[n] / base_bytes if base_bytes else None,
        }
        for n in order
    }
    return {
        "arch": ARCH,
        "batch": batch,
        "image_size": image_size,
        "num_classes": NUM_CLASSES,
        "repeats": repeats,
        "peak_memory_kind": memory_kind(device),
        "rows": rows,
    }
