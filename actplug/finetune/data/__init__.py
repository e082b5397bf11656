"""Data for the fine-tuning recipes: generated shapes, Pascal VOC and Cityscapes, checked before training starts.

``parse_data_spec`` reads ``--data``; ``build_datasets`` checks the folder and returns the train split
(augmented as in lpflu.txt §5.3, deterministically from (seed, epoch, index); call ``set_epoch``) and the
val split (never augmented); ``collate_segmentation`` / ``collate_detection`` batch their items.
"""

from __future__ import annotations

from .build import MIN_IMAGE_SIZE, Datasets, build_datasets
from .cityscapes import CITYSCAPES_CLASSES
from .collate import collate_detection, collate_segmentation
from .dataset import FinetuneDataset
from .spec import KINDS, TASKS, DataSpec, parse_data_spec
from .synthetic import SHAPE_NAMES
from .transforms import IMAGENET_MEAN, IMAGENET_STD
from .voc import VOC_CLASSES

__all__ = [
    "CITYSCAPES_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KINDS",
    "MIN_IMAGE_SIZE",
    "SHAPE_NAMES",
    "TASKS",
    "VOC_CLASSES",
    "DataSpec",
    "Datasets",
    "FinetuneDataset",
    "build_datasets",
    "collate_detection",
    "collate_segmentation",
    "parse_data_spec",
]
