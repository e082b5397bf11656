"""The raw sample every source returns: a uint8 image and a target of torchvision ``tv_tensors``.

``(image, target)``: ``image`` a ``tv_tensors.Image`` uint8 [3, H, W]; ``target`` either ``{"mask":
tv_tensors.Mask uint8 [H, W]}`` (class indices, 255 ignored) or ``{"boxes": tv_tensors.BoundingBoxes
[N, 4] XYXY in pixels, "labels": int64 [N] (1..K), "iscrowd": int64 [N] (1 = ignored by mAP)}``.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors

Sample = tuple[tv_tensors.Image, dict[str, Any]]


def segmentation_sample(image: torch.Tensor, mask: torch.Tensor) -> Sample:
    """A segmentation sample from a uint8 image [3, H, W] and a uint8 class-index mask [H, W]."""
    return tv_tensors.Image(image), {"mask": tv_tensors.Mask(mask.to(torch.uint8))}


def detection_sample(
    image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, iscrowd: torch.Tensor | None = None
) -> Sample:
    """A detection sample from a uint8 image [3, H, W], XYXY pixel ``boxes`` [N, 4] and ``labels`` [N]."""
    height, width = image.shape[-2:]
    labels = labels.to(torch.int64).reshape(-1)
    return tv_tensors.Image(image), {
        "boxes": tv_tensors.BoundingBoxes(
            boxes.to(torch.float32).reshape(-1, 4), format="XYXY", canvas_size=(int(height), int(width))
        ),
        "labels": labels,
        "iscrowd": torch.zeros_like(labels) if iscrowd is None else iscrowd.to(torch.int64).reshape(-1),
    }
