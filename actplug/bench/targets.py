"""The speed targets ``actplug bench`` checks each activation against.

CPU: eager forward+backward no slower than ``torch.compile`` of the naive formula, and forward
within 1.5x of ``torch.relu``. CUDA: forward and forward+backward within 1.15x of ReLU (ASH, which
needs per-sample statistics first, within 1.6x); the CUDA targets are stated for a
32x1024x56x56 input in float32 and bfloat16.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CUDA_REFERENCE_SHAPE = (32, 1024, 56, 56)
CPU_FORWARD_VS_RELU = 1.5
CPU_FORWARD_BACKWARD_VS_COMPILED = 1.0
CUDA_VS_RELU = 1.15
CUDA_VS_RELU_PER_SAMPLE = {"ash": 1.6}


@dataclass(frozen=True)
class Target:
    """``record[mode][metric] <= limit``; ``value`` and ``met`` are None when not measured."""

    mode: str  # "forward" or "forward_backward"
    metric: str  # a key of record[mode]: "ours_vs_compiled", or "vs_relu" (ours)
    limit: float
    value: float | None
    met: bool | None

    @property
    def label(self) -> str:
        """e.g. ``forward ours/relu <= 1.15``."""
        against = "compiled naive" if self.metric == "ours_vs_compiled" else "relu"
        return f"{self.mode.replace('_', '+')} ours/{against} <= {self.limit:g}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}


def limits(name: str, device_type: str) -> list[tuple[str, str, float]]:
    """``(mode, metric, limit)`` of every target of activation ``name`` on a ``device_type`` device."""
    if device_type == "cuda":
        limit = CUDA_VS_RELU_PER_SAMPLE.get(name, CUDA_VS_RELU)
        return [("forward", "vs_relu", limit), ("forward_backward", "vs_relu", limit)]
    return [
        ("forward", "vs_relu", CPU_FORWARD_VS_RELU),
        ("forward_backward", "ours_vs_compiled", CPU_FORWARD_BACKWARD_VS_COMPILED),
    ]


def _value(record: dict[str, Any], mode: str, metric: str) -> float | None:
    value = record[mode][metric]
    return value.get("ours") if isinstance(value, dict) else value


def evaluate(record: dict[str, Any], device_type: str) -> list[Target]:
    """The targets of one activation's record (from :func:`actplug.bench.activations.bench_activation`)."""
    found = []
    for mode, metric, limit in limits(record["name"], device_type):
        value = _value(record, mode, metric)
        found.append(Target(mode, metric, limit, value, None if value is None else value <= limit))
    return found


def target_for(record: dict[str, Any], mode: str, metric: str) -> dict[str, Any] | None:
    """The stored target (a dict in ``record["targets"]``) for ``mode`` and ``metric``, if there is one."""
    for target in record.get("targets", []):
        if target["mode"] == mode and target["metric"] == metric:
            return target
    return None
