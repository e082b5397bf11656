"""``build_datasets``: the checked train and val datasets of a :class:`DataSpec`, with their class conventions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from ..errors import FinetuneError
from .cityscapes import CITYSCAPES_CLASSES, cityscapes_sources
from .dataset import FinetuneDataset
from .spec import DataSpec, check_folder, check_kind_task
from .synthetic import SHAPE_NAMES, ShapesSource
from .voc import VOC_CLASSES, voc_sources

MIN_IMAGE_SIZE = 32


@dataclass
class Datasets:
    """Train and val datasets and their classes.

    ``num_classes``: for segmentation the number of classes including background (VOC 21, Cityscapes 19
    train ids, shapes 4); for detection the number of foreground classes (VOC 20, shapes 3), whose labels in
    targets are 1..num_classes. ``class_names`` has ``num_classes`` entries in class-id order (segmentation
    from id 0, detection from label 1). Mask pixels equal to ``ignore_index`` count for no class.
    """

    train: Dataset
    val: Dataset
    num_classes: int
    class_names: list[str]
    ignore_index: int = 255


def _check_whole(name: str, value: object, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise FinetuneError(f"{name} must be a whole number >= {least}, got {value!r}")


def build_datasets(
    spec: DataSpec, task: str, image_size: int, seed: int, *, synthetic_train: int = 64, synthetic_val: int = 16
) -> Datasets:
    """Check the data of ``spec`` for ``task`` and build its train (augmented) and val (never augmented) datasets.

    Items are ``image_size`` x ``image_size``. A dataset folder is checked as a whole before this returns
    (sub-folders, split lists, every listed file present and readable, annotations parsed), raising
    :class:`FinetuneError` that names the path and the fix. ``seed`` fixes the generated shapes and every
    train augmentation; ``synthetic_train`` / ``synthetic_val`` are the generated split sizes.
    """
    if not isinstance(spec, DataSpec):
        raise FinetuneError(f"build_datasets takes a DataSpec (see parse_data_spec), got {type(spec).__name__}")
    check_kind_task(spec.kind, task)
    _check_whole("image_size", image_size, MIN_IMAGE_SIZE)
    _check_whole("seed", seed, 0)
    if spec.kind == "synthetic":
        _check_whole("synthetic_train", synthetic_train, 1)
        _check_whole("synthetic_val", synthetic_val, 1)
        sources = {
            split: ShapesSource(split, length, image_size, seed, task)
            for split, length in (("train", synthetic_train), ("val", synthetic_val))
        }
        names = list(SHAPE_NAMES)
    else:
        if spec.path is None:
            raise FinetuneError(f"--data {spec.kind} needs the dataset folder; write {spec.kind}:PATH")
        path = Path(spec.path)
        check_folder(spec.kind, path)
        if spec.kind == "voc":
            sources = voc_sources(path, task)
            names = list(VOC_CLASSES)
        else:
            sources = cityscapes_sources(path)
            names = list(CITYSCAPES_CLASSES)
    if task == "segmentation" and spec.kind != "cityscapes":
        names = ["background", *names]
    return Datasets(
        train=FinetuneDataset(sources["train"], task, image_size, seed, augment=True),
        val=FinetuneDataset(sources["val"], task, image_size, seed, augment=False),
        num_classes=len(names),
        class_names=names,
    )
