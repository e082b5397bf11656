"""The dataset the training loop sees: a source's raw samples resized, augmented (train only) and converted."""

from __future__ import annotations

import operator
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from ..errors import FinetuneError
from .sample import Sample
from .seeding import item_generator
from .spec import check_task
from .transforms import augment, resize, to_detection_item, to_segmentation_item


class Source(Protocol):
    """Raw samples of one split at their own size, in the format of :mod:`.sample`."""

    def __len__(self) -> int: ...

    def sample(self, index: int) -> Sample: ...


class FinetuneDataset(Dataset):
    """Items of ``source`` for ``task`` at ``image_size`` x ``image_size``; augmented when ``augment`` is true.

    The augmentation of item ``index`` is drawn from a generator seeded by ``(seed, epoch, index)``, so it is
    the same in every process, after a resume, and whatever DataLoader worker loads it. Call
    :meth:`set_epoch` before each epoch's iteration starts (workers pickle the dataset when they start).
    """

    def __init__(self, source: Source, task: str, image_size: int, seed: int, *, augment: bool) -> None:
        check_task(task)
        self.source = source
        self.task = task
        self.image_size = image_size
        self.seed = seed
        self.augment = augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentations :meth:`__getitem__` draws (no effect on an unaugmented split)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise FinetuneError(f"set_epoch takes a whole number >= 0, got {epoch!r}")
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        index = operator.index(index)  # a numpy or torch integer from a sampler is the same item as its int
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        image, target = resize(*self.source.sample(index), self.image_size)
        if self.augment:
            image, target = augment(image, target, item_generator(self.seed, "augment", self.epoch, index))
        if self.task == "segmentation":
            return to_segmentation_item(image, target)
        return to_detection_item(image, target)

    def __repr__(self) -> str:
        kind = "augmented" if self.augment else "plain"
        return (
            f"{type(self).__name__}({type(self.source).__name__}, task={self.task!r}, items={len(self)}, "
            f"size={self.image_size}, {kind}, epoch={self.epoch})"
        )
