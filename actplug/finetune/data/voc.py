"""Pascal VOC folders (VOC2007 / VOC2012 layout) for segmentation and detection, checked up front.

Layout read (``ROOT`` is the folder holding ``JPEGImages``, e.g. ``VOCdevkit/VOC2012``)::

    ROOT/JPEGImages/ID.jpg
    ROOT/Annotations/ID.xml                       detection: <object><name>, <difficult>, <bndbox>
    ROOT/SegmentationClass/ID.png                 segmentation: palette PNG of class indices, 255 = border
    ROOT/ImageSets/Main/{train,val}.txt           detection split lists, one id per line
    ROOT/ImageSets/Segmentation/{train,val}.txt   segmentation split lists

Boxes: VOC's ``<bndbox>`` holds 1-based inclusive pixel indices; they become 0-based pixel-edge XYXY
``(xmin - 1, ymin - 1, xmax, ymax)``, clipped to the image.

``difficult`` objects follow the VOC protocol: left out of the train split's targets (their boxes are
ambiguous to learn from), and kept in the val split with ``iscrowd = 1``, which COCO-style mAP
(torchmetrics, pycocotools) treats as "ignore": they count neither as misses nor, when detected, as false
positives, as in the VOC devkit.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import FinetuneError
from .checks import (
    inspect_images,
    map_threads,
    name_some,
    read_split_list,
    require_files,
    require_modes,
    require_same_sizes,
    require_subfolders,
)
from .images import load_label, load_rgb
from .sample import Sample, detection_sample, segmentation_sample

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
IGNORE = 255
SPLITS = ("train", "val")
LIST_DIR = {"segmentation": "ImageSets/Segmentation", "detection": "ImageSets/Main"}
LABEL_DIR = {"segmentation": "SegmentationClass", "detection": "Annotations"}
MASK_MODES = ("P", "L")
REPAIR = "re-extract the VOC archive, or remove the id from the split list"


@dataclass(frozen=True)
class VocObjects:
    """The objects of one annotation file: boxes float32 [N, 4] (0-based XYXY), labels int64 [N] (1..20), difficult."""

    boxes: torch.Tensor
    labels: torch.Tensor
    difficult: torch.Tensor


def _hint(root: Path) -> str:
    """A pointer to the VOC folder when ``root`` is a parent of it (e.g. ``VOCdevkit`` instead of ``VOC2012``)."""
    found = sorted(str(p.parent) for p in root.glob("*/JPEGImages")) + sorted(
        str(p.parent) for p in root.glob("*/*/JPEGImages")
    )
    return f"; {str(root)!r} looks like a parent of the VOC folder: try voc:{found[0]}" if found else ""


def _text(element: ET.Element, tag: str, xml_path: Path, where: str) -> str:
    found = element.find(tag)
    if found is None or found.text is None or not found.text.strip():
        raise FinetuneError(f"malformed VOC annotation {str(xml_path)!r}: {where} has no <{tag}>; {REPAIR}")
    return found.text.strip()


def _number(element: ET.Element, tag: str, xml_path: Path, where: str) -> float:
    text = _text(element, tag, xml_path, where)
    try:
        return float(text)
    except ValueError:
        raise FinetuneError(
            f"malformed VOC annotation {str(xml_path)!r}: {where} <{tag}> is {text!r}, not a number; {REPAIR}"
        ) from None


def parse_annotation(xml_path: Path, width: int, height: int) -> VocObjects:
    """Read the objects of a VOC annotation file for an image of ``width`` x ``height`` pixels.

    Raises :class:`FinetuneError` for malformed XML, missing or non-numeric fields, an unknown class name,
    a box that is empty or lies outside the image, and a ``<size>`` that disagrees with the image.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise FinetuneError(f"malformed VOC annotation {str(xml_path)!r} ({exc}); {REPAIR}") from None
    size = root.find("size")
    if size is not None and size.find("width") is not None and size.find("height") is not None:
        stated = (int(_number(size, "width", xml_path, "<size>")), int(_number(size, "height", xml_path, "<size>")))
        if stated != (0, 0) and stated != (width, height):
            raise FinetuneError(
                f"VOC annotation {str(xml_path)!r} is for a {stated[0]}x{stated[1]} image but its image is "
                f"{width}x{height}; the annotation and the JPEG do not belong together ({REPAIR})"
            )
    boxes, labels, difficult = [], [], []
    for number, obj in enumerate(root.findall("object"), start=1):
        where = f"object {number}"
        name = _text(obj, "name", xml_path, where)
        if name not in VOC_CLASSES:
            raise FinetuneError(
                f"VOC annotation {str(xml_path)!r}: {where} has the unknown class {name!r}; "
                f"the 20 VOC classes are {', '.join(VOC_CLASSES)} (fix the <name> or remove the object)"
            )
        box = obj.find("bndbox")
        if box is None:
            raise FinetuneError(f"malformed VOC annotation {str(xml_path)!r}: {where} has no <bndbox>; {REPAIR}")
        xmin, ymin, xmax, ymax = (_number(box, tag, xml_path, where) for tag in ("xmin", "ymin", "xmax", "ymax"))
        x1, y1 = min(max(xmin - 1, 0.0), width), min(max(ymin - 1, 0.0), height)
        x2, y2 = min(max(xmax, 0.0), width), min(max(ymax, 0.0), height)
        if x2 <= x1 or y2 <= y1:
            raise FinetuneError(
                f"VOC annotation {str(xml_path)!r}: {where} ({name}) has the box xmin={xmin:g} ymin={ymin:g} "
                f"xmax={xmax:g} ymax={ymax:g}, empty inside the {width}x{height} image; fix or remove the object"
            )
        flag = obj.find("difficult")
        boxes.append([x1, y1, x2, y2])
        labels.append(VOC_CLASSES.index(name) + 1)
        difficult.append(flag is not None and (flag.text or "0").strip() == "1")
    return VocObjects(
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.int64),
        difficult=torch.tensor(difficult, dtype=torch.bool),
    )


def _split_ids(root: Path, task: str) -> dict[str, list[str]]:
    fix = f"put one image id per line in {LIST_DIR[task]}/train.txt and {LIST_DIR[task]}/val.txt"
    return {
        split: read_split_list(root / LIST_DIR[task] / f"{split}.txt", f"VOC {task} {split}", fix) for split in SPLITS
    }


def _check_folder(root: Path, task: str) -> None:
    needed = ["JPEGImages", LABEL_DIR[task], LIST_DIR[task]]
    require_subfolders("VOC", root, needed, f"VOC {task} reads {', '.join(needed)}", _hint)


class VocSegmentationSource:
    """VOC segmentation items of one split: JPEG and ``SegmentationClass`` mask (0 background, 1..20, 255)."""

    def __init__(self, images: list[Path], masks: list[Path]) -> None:
        self.images, self.masks = images, masks

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, index: int) -> Sample:
        return segmentation_sample(load_rgb(self.images[index]), load_label(self.masks[index]))


class VocDetectionSource:
    """VOC detection items of one split: JPEG and the parsed objects of its annotation."""

    def __init__(self, images: list[Path], objects: list[VocObjects], keep_difficult: bool) -> None:
        self.images, self.objects, self.keep_difficult = images, objects, keep_difficult

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, index: int) -> Sample:
        objs = self.objects[index]
        keep = torch.ones_like(objs.difficult) if self.keep_difficult else ~objs.difficult
        return detection_sample(
            load_rgb(self.images[index]), objs.boxes[keep], objs.labels[keep], objs.difficult[keep].to(torch.int64)
        )


def _wrong_mask_values(path: Path) -> str | None:
    values = torch.unique(load_label(path)).tolist()
    wrong = [v for v in values if v > len(VOC_CLASSES) and v != IGNORE]
    return f"{path} (values {wrong[:5]})" if wrong else None


def _check_mask_values(mask_paths: list[Path]) -> None:
    """Every mask holds only 0..20 and 255 (decodes each mask once: VOC's are small palette PNGs)."""
    bad = [reason for reason in map_threads(_wrong_mask_values, mask_paths) if reason]
    if bad:
        raise FinetuneError(
            f"{len(bad)} VOC mask(s) hold class indices outside 0..20 and 255: {name_some(bad)}; use the "
            f"SegmentationClass PNGs (class indices), not SegmentationObject (instance ids) or colour images"
        )


def voc_sources(root: Path, task: str) -> dict[str, VocSegmentationSource | VocDetectionSource]:
    """Check the VOC folder ``root`` for ``task`` and return its train and val sources.

    Every listed image is opened and verified, every annotation parsed (detection) or every mask checked
    for size, mode and class indices (segmentation) before this returns.
    """
    _check_folder(root, task)
    sources: dict[str, VocSegmentationSource | VocDetectionSource] = {}
    for split, ids in _split_ids(root, task).items():
        list_path = root / LIST_DIR[task] / f"{split}.txt"
        fix = f"{REPAIR} {str(list_path)!r}"
        images = [root / "JPEGImages" / f"{i}.jpg" for i in ids]
        require_files(images, f"image(s) listed in {str(list_path)!r} are", fix)
        if task == "segmentation":
            masks = [root / "SegmentationClass" / f"{i}.png" for i in ids]
            require_files(masks, f"mask(s) listed in {str(list_path)!r} are", fix)
            image_infos = inspect_images(images, fix)
            mask_infos = inspect_images(masks, fix)
            require_modes(mask_infos, MASK_MODES, "VOC masks are", "use the SegmentationClass palette PNGs")
            require_same_sizes(image_infos, mask_infos, fix)
            _check_mask_values(masks)
            sources[split] = VocSegmentationSource(images, masks)
        else:
            annotations = [root / "Annotations" / f"{i}.xml" for i in ids]
            require_files(annotations, f"annotation(s) listed in {str(list_path)!r} are", fix)
            image_infos = inspect_images(images, fix)
            objects = [parse_annotation(a, *info.size) for a, info in zip(annotations, image_infos, strict=True)]
            sources[split] = VocDetectionSource(images, objects, keep_difficult=split != "train")
    return sources
