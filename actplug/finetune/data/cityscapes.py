"""Cityscapes folders (``leftImg8bit`` + ``gtFine``) for segmentation with the 19 train ids, checked up front.

Layout read (``ROOT`` holds both folders, as after unzipping leftImg8bit_trainvaltest and gtFine_trainvaltest
into one place)::

    ROOT/leftImg8bit/{train,val}/CITY/CITY_SEQ_FRAME_leftImg8bit.png
    ROOT/gtFine/{train,val}/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png

``*_gtFine_labelIds.png`` holds the label ids 0..33 of the official table (cityscapesscripts'
``helpers/labels.py``); they are mapped to its 19 train ids, and every id whose train id is 255 or -1
(void, parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer, license plate) and any
value outside the table become 255, ignored.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import FinetuneError
from .checks import inspect_images, require_files, require_modes, require_same_sizes, require_subfolders
from .images import load_label, load_rgb
from .sample import Sample, segmentation_sample

IGNORE = 255
SPLITS = ("train", "val")
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"

# (label id, train id) of the official table; ids not listed here (0-6, 9, 10, 14-16, 18, 29, 30) have train id 255.
TRAIN_IDS = {
    7: 0,  # road
    8: 1,  # sidewalk
    11: 2,  # building
    12: 3,  # wall
    13: 4,  # fence
    17: 5,  # pole
    19: 6,  # traffic light
    20: 7,  # traffic sign
    21: 8,  # vegetation
    22: 9,  # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}
CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)


def train_id_table() -> torch.Tensor:
    """A uint8 lookup table of 256 entries: label id -> train id (255 = ignored)."""
    table = torch.full((256,), IGNORE, dtype=torch.uint8)
    for label_id, train_id in TRAIN_IDS.items():
        table[label_id] = train_id
    return table


class CityscapesSource:
    """Cityscapes items of one split: the ``leftImg8bit`` image and its labelIds mapped to train ids."""

    def __init__(self, images: list[Path], labels: list[Path]) -> None:
        self.images, self.labels = images, labels
        self.table = train_id_table()

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, index: int) -> Sample:
        label_ids = load_label(self.labels[index])
        return segmentation_sample(load_rgb(self.images[index]), self.table[label_ids.long()])


def _hint(root: Path) -> str:
    """A pointer to the Cityscapes folder when ``root`` is a parent of it."""
    nested = sorted(str(p.parent) for p in root.glob("*/leftImg8bit"))
    return f"; try cityscapes:{nested[0]}" if nested else ""


def label_path(root: Path, split: str, image: Path) -> Path:
    """The ``gtFine`` labelIds file of a ``leftImg8bit`` image."""
    stem = image.name[: -len(IMAGE_SUFFIX)]
    return root / "gtFine" / split / image.parent.name / f"{stem}{LABEL_SUFFIX}"


def cityscapes_sources(root: Path) -> dict[str, CityscapesSource]:
    """Check the Cityscapes folder ``root`` and return its train and val sources.

    Every image and label file is opened and verified, and each pair checked for equal sizes, before this returns.
    """
    needed = [f"{top}/{split}" for top in ("leftImg8bit", "gtFine") for split in SPLITS]
    require_subfolders("Cityscapes", root, needed, "Cityscapes segmentation reads leftImg8bit and gtFine", _hint)
    sources = {}
    for split in SPLITS:
        folder = root / "leftImg8bit" / split
        images = sorted(folder.glob(f"*/*{IMAGE_SUFFIX}"))
        if not images:
            raise FinetuneError(
                f"Cityscapes split folder {str(folder)!r} holds no CITY/*{IMAGE_SUFFIX} images; "
                f"unzip leftImg8bit_trainvaltest.zip into {str(root)!r}"
            )
        labels = [label_path(root, split, image) for image in images]
        fix = f"unzip gtFine_trainvaltest.zip into {str(root)!r} (the *{LABEL_SUFFIX} files), or remove the image"
        require_files(labels, f"Cityscapes label file(s) of the {split} images are", fix)
        repair = "re-extract the Cityscapes archives"
        image_infos = inspect_images(images, repair)
        label_infos = inspect_images(labels, repair)
        require_modes(
            label_infos, ("L", "P"), "Cityscapes label files are", f"use the *{LABEL_SUFFIX} files (not *_color.png)"
        )
        require_same_sizes(image_infos, label_infos, repair)
        sources[split] = CityscapesSource(images, labels)
    return sources
