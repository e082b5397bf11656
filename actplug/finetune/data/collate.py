"""DataLoader ``collate_fn``s: segmentation batches stack; detection batches stay lists (boxes differ in number)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def collate_segmentation(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Items (image [3, S, S], mask [S, S]) -> (images float32 [B, 3, S, S], masks int64 [B, S, S])."""
    images, masks = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(masks)


def collate_detection(
    batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Items (image [3, S, S], target dict) -> (list of images, list of targets), as torchvision detectors take them."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
