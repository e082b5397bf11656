"""What differs between segmentation and detection in the loop: batches, loss and evaluation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import data, metrics


@dataclass(frozen=True)
class Task:
    """One task's pieces: how batches are collated, the training loss, and the evaluation metrics."""

    name: str
    collate: Callable[[list[Any]], Any]
    loss: Callable[[nn.Module, Any, int], torch.Tensor]
    evaluate: Callable[[nn.Module, Any, Any, int], tuple[float, int]]
    make_metrics: Callable[[data.Datasets], Any]

    def batch_size_of(self, batch: Any) -> int:
        """How many images a batch holds."""
        images = batch[0]
        return len(images)


def _segmentation_loss(model: nn.Module, batch: Any, ignore_index: int) -> torch.Tensor:
    images, masks = batch
    return F.cross_entropy(model(images), masks, ignore_index=ignore_index)


def _segmentation_evaluate(model: nn.Module, batch: Any, tracker: Any, ignore_index: int) -> tuple[float, int]:
    """Update the metrics; returns (summed pixel loss, counted pixels) for the validation loss."""
    images, masks = batch
    logits = model(images)
    tracker.update(logits, masks)
    loss = F.cross_entropy(logits.float(), masks, ignore_index=ignore_index, reduction="sum")
    return float(loss), int((masks != ignore_index).sum())


def _detection_loss(model: nn.Module, batch: Any, ignore_index: int) -> torch.Tensor:
    images, targets = batch
    losses = model(images, targets)
    return sum(losses.values())


def _detection_evaluate(model: nn.Module, batch: Any, tracker: Any, ignore_index: int) -> tuple[float, int]:
    """Update the metrics with the model's detections; SSD gives no loss in evaluation mode."""
    images, targets = batch
    predictions = model(images)
    tracker.update([{k: v.float() if v.is_floating_point() else v for k, v in p.items()} for p in predictions], targets)
    return 0.0, 0


TASKS = {
    "segmentation": Task(
        "segmentation",
        data.collate_segmentation,
        _segmentation_loss,
        _segmentation_evaluate,
        lambda ds: metrics.SegmentationMetrics(ds.num_classes, ignore_index=ds.ignore_index),
    ),
    "detection": Task(
        "detection",
        data.collate_detection,
        _detection_loss,
        _detection_evaluate,
        lambda ds: metrics.DetectionMetrics(),
    ),
}
