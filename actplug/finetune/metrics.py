"""Evaluation metrics of the recipes, all torchmetrics ``Metric`` objects: states summed across processes.

``compute()`` syncs every state over the default process group (one collective per metric), so every
process must call it, and each process must have updated with its own, disjoint share of the
evaluation images: "samples" then counts each image once. ``reset()`` before each evaluation.

Segmentation: ``miou`` is torchmetrics' ``MulticlassJaccardIndex(average="macro")`` over the confusion
matrix of the whole evaluation set; a class absent from both the predictions and the targets of the
whole set has no IoU and is left out of the mean (torchmetrics gives it weight 0), as in the VOC and
Cityscapes evaluations; a class present in either counts, with IoU 0 if never predicted right.
Pixels labelled ``ignore_index`` count nowhere. ``pixel_acc`` is correct / valid pixels.

Detection: COCO-style mAP of torchmetrics' ``MeanAveragePrecision`` (pycocotools backend, boxes in
xyxy pixels, up to 100 detections per image and class as COCO evaluates; 101-point interpolated
precision). ``map`` averages IoU thresholds 0.50:0.05:0.95; with no ground-truth box at all
torchmetrics reports -1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchmetrics.aggregation import SumMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from .metrics_sync import UnevenMeanAveragePrecision

__all__ = ["DetectionMetrics", "SegmentationMetrics"]


class SegmentationMetrics(nn.Module):
    """mIoU, pixel accuracy and the number of images, over a whole evaluation set and every process."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2 (classes including the background), got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.miou = MulticlassJaccardIndex(num_classes, average="macro", ignore_index=ignore_index)
        self.pixel_acc = MulticlassAccuracy(num_classes, average="micro", ignore_index=ignore_index)
        # Per class, NaN for a class absent from predictions and targets (left out of "miou").
        self.class_iou = MulticlassJaccardIndex(
            num_classes, average="none", ignore_index=ignore_index, zero_division=float("nan")
        )
        self.samples = SumMetric()

    @torch.no_grad()
    def update(self, output: Tensor, target: Tensor) -> None:
        """``output``: logits ``[B,C,H,W]`` or predicted classes ``[B,H,W]``; ``target``: ``[B,H,W]`` class ids."""
        if output.ndim == 4:
            if output.shape[1] != self.num_classes:
                raise ValueError(f"logits have {output.shape[1]} channels, the metrics expect {self.num_classes}")
            preds = output.argmax(dim=1)
        elif output.ndim == 3 and not output.is_floating_point():
            preds = output
        else:
            raise ValueError(
                f"expected logits [B,C,H,W] or class ids [B,H,W], got {tuple(output.shape)} {output.dtype}"
            )
        if target.shape != preds.shape:
            raise ValueError(f"target {tuple(target.shape)} does not match predictions {tuple(preds.shape)}")
        target = target.long()
        for metric in (self.miou, self.pixel_acc, self.class_iou):
            metric.update(preds, target)
        self.samples.update(float(preds.shape[0]))

    def compute(self) -> dict[str, float | int]:
        """``{"miou", "pixel_acc", "samples"}`` over every process (a collective: call it on all of them)."""
        return {
            "miou": float(self.miou.compute()),
            "pixel_acc": float(self.pixel_acc.compute()),
            "samples": round(float(self.samples.compute())),
        }

    def per_class_iou(self) -> list[float]:
        """IoU of each class over every process, NaN for a class seen nowhere (a collective too)."""
        return [float(v) for v in self.class_iou.compute()]

    def reset(self) -> None:
        for metric in (self.miou, self.pixel_acc, self.class_iou, self.samples):
            metric.reset()


class DetectionMetrics(nn.Module):
    """COCO mAP, mAP@50, mAP@75 and the number of images, over a whole evaluation set and every process."""

    def __init__(self) -> None:
        super().__init__()
        self.mean_ap = UnevenMeanAveragePrecision(iou_type="bbox", box_format="xyxy", backend="pycocotools")
        # SSD keeps up to 200-300 detections per image; COCO's evaluation reads the best 100 per class.
        self.mean_ap.warn_on_many_detections = False
        self.samples = SumMetric()

    @torch.no_grad()
    def update(self, preds: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Tensor]]) -> None:
        """Per image: ``preds`` with ``boxes [N,4]`` (xyxy pixels), ``scores [N]``, ``labels [N]``;
        ``targets`` with ``boxes`` and ``labels`` (1..num_classes, 0 being the background) and optionally
        ``iscrowd`` (VOC's "difficult" objects: neither hits nor misses, as in the VOC devkit)."""
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions for {len(targets)} targets; give one of each per image")
        detections = [
            {"boxes": p["boxes"].detach().float(), "scores": p["scores"].detach().float(), "labels": p["labels"].long()}
            for p in preds
        ]
        truths = [
            {"boxes": t["boxes"].detach().float(), "labels": t["labels"].long()}
            | ({"iscrowd": t["iscrowd"].long()} if "iscrowd" in t else {})
            for t in targets
        ]
        self.mean_ap.update(detections, truths)
        self.samples.update(float(len(preds)))

    def compute(self) -> dict[str, float | int]:
        """``{"map", "map_50", "map_75", "samples"}`` over every process (a collective: call it on all of them)."""
        result = self.mean_ap.compute()
        return {
            "map": float(result["map"]),
            "map_50": float(result["map_50"]),
            "map_75": float(result["map_75"]),
            "samples": round(float(self.samples.compute())),
        }

    def reset(self) -> None:
        self.mean_ap.reset()
        self.samples.reset()
