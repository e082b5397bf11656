"""actplug.finetune.data: --data parsing, VOC and Cityscapes readers on small folders written here, the generated
shapes, train augmentation (consistent and deterministic), collation, and every bad input failing up front."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from actplug.finetune.data import (
    CITYSCAPES_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VOC_CLASSES,
    Datasets,
    DataSpec,
    build_datasets,
    collate_detection,
    collate_segmentation,
    parse_data_spec,
)
from actplug.finetune.data.sample import detection_sample
from actplug.finetune.data.seeding import item_generator
from actplug.finetune.data.synthetic import ShapesSource
from actplug.finetune.data.transforms import augment
from actplug.finetune.errors import FinetuneError

REPO = Path(__file__).resolve().parents[1]
S = 64  # the image size of the VOC tests: the 32x16 fixture images scale by exactly (2, 4)
RED, BLUE = (220, 30, 30), (30, 30, 220)


# ----------------------------------------------------------------------------- fixture writers


def voc_palette() -> list[int]:
    """The VOC colour map (the devkit's bit-interleaving construction), 256 RGB triples flattened."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_palette_png(path: Path, classes: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = classes.shape
    image = Image.frombytes("P", (width, height), classes.astype(np.uint8).tobytes())
    image.putpalette(voc_palette())
    image.save(path)


def write_grey_png(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8)).save(path)


def write_rgb(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=95)


def rect_image(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Blue everywhere, red on the 0-based half-open pixel box (x1, y1, x2, y2)."""
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = BLUE
    x1, y1, x2, y2 = box
    pixels[y1:y2, x1:x2] = RED
    return pixels


def write_xml(path: Path, size: tuple[int, int] | None, objects: list[tuple[str, tuple, int]]) -> None:
    """A VOC annotation: ``objects`` are (name, (xmin, ymin, xmax, ymax) 1-based inclusive, difficult)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = ["<annotation><folder>VOC2012</folder>"]
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, (xmin, ymin, xmax, ymax), difficult in objects:
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    path.write_text("".join(parts))


def mask_1() -> np.ndarray:
    """Mask of image A: dog (12) on the red box, a 255 border ring around it, background 0 elsewhere."""
    mask = np.zeros((16, 32), np.uint8)
    mask[1:11, 3:21] = 255
    mask[2:10, 4:20] = 12
    return mask


def mask_3() -> np.ndarray:
    """Mask of image C: car (7) on the top-left, bicycle (2) on the bottom-right, a 255 column between."""
    mask = np.zeros((16, 32), np.uint8)
    mask[:8, :15] = 7
    mask[8:, 16:] = 2
    mask[:, 15] = 255
    return mask


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    """A VOC2012-style folder for both tasks: 3 detection train ids, 2 segmentation train ids, 1 val id."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    # A (32x16): a dog on the red box, 0-based pixels x 4..19, y 2..9, i.e. VOC's 1-based 5..20, 3..10
    write_rgb(root / "JPEGImages/2007_000001.jpg", rect_image(32, 16, (4, 2, 20, 10)))
    write_xml(
        root / "Annotations/2007_000001.xml",
        (32, 16),
        [("dog", (5, 3, 20, 10), 0), ("person", (22, 2, 30, 14), 1)],
    )
    write_palette_png(root / "SegmentationClass/2007_000001.png", mask_1())
    # B (24x24): a cat over the whole image, with a 255 frame in the mask
    write_rgb(root / "JPEGImages/2007_000002.jpg", rect_image(24, 24, (0, 0, 24, 24)))
    write_xml(root / "Annotations/2007_000002.xml", (24, 24), [("cat", (1, 1, 24, 24), 0)])
    frame = np.full((24, 24), 255, np.uint8)
    frame[1:-1, 1:-1] = 8
    write_palette_png(root / "SegmentationClass/2007_000002.png", frame)
    # C (32x16), the val image: a car and a difficult bicycle
    write_rgb(root / "JPEGImages/2007_000003.jpg", rect_image(32, 16, (2, 1, 16, 8)))
    write_xml(
        root / "Annotations/2007_000003.xml",
        (32, 16),
        [("car", (3, 2, 16, 8), 0), ("bicycle", (17, 9, 32, 16), 1)],
    )
    write_palette_png(root / "SegmentationClass/2007_000003.png", mask_3())
    # D (20x20), detection only: nothing but a difficult object
    write_rgb(root / "JPEGImages/2008_000004.jpg", rect_image(20, 20, (0, 0, 0, 0)))
    write_xml(root / "Annotations/2008_000004.xml", None, [("bottle", (2, 2, 10, 18), 1)])
    lists = {
        "Main/train.txt": "2007_000001\n2007_000002\n\n2008_000004\n",
        "Main/val.txt": "2007_000003\n",
        "Segmentation/train.txt": "2007_000001\n2007_000002\n",
        "Segmentation/val.txt": "2007_000003\n",
    }
    for name, text in lists.items():
        (root / "ImageSets" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / name).write_text(text)
    return root


# label ids across the 16 columns of every Cityscapes label image, and the train ids they must become
CITY_IDS = [0, 1, 7, 8, 11, 17, 21, 23, 24, 26, 31, 33, 9, 29, 34, 200]
CITY_TRAIN_IDS = [255, 255, 0, 1, 2, 5, 8, 10, 11, 13, 16, 18, 255, 255, 255, 255]
CITY_FILES = {
    "train": ["aachen/aachen_000000_000019", "aachen/aachen_000001_000019", "bremen/bremen_000000_000019"],
    "val": ["frankfurt/frankfurt_000000_000294"],
}


@pytest.fixture
def city_root(tmp_path: Path) -> Path:
    """A Cityscapes folder: 16x8 leftImg8bit PNGs and gtFine labelIds PNGs, 3 train and 1 val image."""
    root = tmp_path / "cityscapes"
    labels = np.tile(np.array(CITY_IDS, np.uint8), (8, 1))
    for split, stems in CITY_FILES.items():
        for n, stem in enumerate(stems):
            write_rgb(root / "leftImg8bit" / split / f"{stem}_leftImg8bit.png", np.full((8, 16, 3), 40 * n, np.uint8))
            write_grey_png(root / "gtFine" / split / f"{stem}_gtFine_labelIds.png", labels)
            # the colour and instance files of a real gtFine folder sit beside them and must be left alone
            write_rgb(root / "gtFine" / split / f"{stem}_gtFine_color.png", np.zeros((8, 16, 3), np.uint8))
    return root


def voc(root: Path, task: str, size: int = S, seed: int = 0) -> Datasets:
    return build_datasets(DataSpec("voc", root), task, size, seed)


def fails(match: str, *paths: Path) -> pytest.RaisesContext:
    """``pytest.raises(FinetuneError)`` whose message must name every path of ``paths`` and match ``match``."""
    named = "".join(f"(?=.*{re.escape(str(p))})" for p in paths)
    return pytest.raises(FinetuneError, match=f"(?s){named}.*{match}" if paths else match)


# ----------------------------------------------------------------------------- parse_data_spec


def test_parse_data_spec_reads_each_kind(voc_root: Path, city_root: Path):
    assert parse_data_spec("synthetic", "detection") == DataSpec("synthetic", None)
    assert parse_data_spec(" Synthetic ", "segmentation") == DataSpec("synthetic", None)
    assert parse_data_spec(f"voc:{voc_root}", "detection") == DataSpec("voc", voc_root)
    assert parse_data_spec(f"cityscapes:{city_root}", "segmentation") == DataSpec("cityscapes", city_root)


@pytest.mark.parametrize(
    ("text", "task", "match"),
    [
        ("imagenet:/data", "segmentation", r"unknown --data kind 'imagenet'.*synthetic, voc:PATH, cityscapes:PATH"),
        ("", "segmentation", r"--data is empty; write one of: synthetic, voc:PATH"),
        ("voc", "detection", r"--data voc needs the dataset folder; write voc:PATH"),
        ("cityscapes:  ", "segmentation", r"needs the dataset folder; write cityscapes:PATH"),
        ("synthetic:/data", "detection", r"synthetic takes no path"),
        ("synthetic", "classification", r"unknown task 'classification'; choose one of segmentation, detection"),
    ],
)
def test_parse_data_spec_rejects_bad_text(text: str, task: str, match: str):
    with pytest.raises(FinetuneError, match=match):
        parse_data_spec(text, task)


def test_parse_data_spec_rejects_missing_folder_and_file(tmp_path: Path):
    missing = tmp_path / "no" / "VOC2012"
    with fails(r"does not exist; pass the dataset's folder as voc:PATH", missing):
        parse_data_spec(f"voc:{missing}", "detection")
    afile = tmp_path / "voc.tar"
    afile.write_bytes(b"x")
    with fails(r"is a file, not a folder", afile):
        parse_data_spec(f"voc:{afile}", "segmentation")


def test_cityscapes_for_detection_is_refused(city_root: Path):
    with pytest.raises(FinetuneError, match=r"cityscapes has no detection labels.*one of: synthetic, voc"):
        parse_data_spec(f"cityscapes:{city_root}", "detection")
    with pytest.raises(FinetuneError, match=r"cityscapes has no detection labels"):
        build_datasets(DataSpec("cityscapes", city_root), "detection", S, 0)


# ----------------------------------------------------------------------------- VOC


def test_voc_detection_parses_boxes_labels_and_difficult(voc_root: Path):
    data = voc(voc_root, "detection")
    assert data.num_classes == 20 and data.class_names == list(VOC_CLASSES) and data.ignore_index == 255
    assert len(data.train) == 3 and len(data.val) == 1

    # val is never augmented: boxes exact. (car: 1-based 3..16 x 2..8 -> 0-based edges (2,1,16,8) -> x2, x4)
    image, target = data.val[0]
    assert image.shape == (3, S, S) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    torch.testing.assert_close(target["boxes"], torch.tensor([[4.0, 4.0, 32.0, 32.0], [32.0, 32.0, 64.0, 64.0]]))
    assert target["labels"].tolist() == [VOC_CLASSES.index("car") + 1, VOC_CLASSES.index("bicycle") + 1] == [7, 2]
    assert target["iscrowd"].tolist() == [0, 1]  # the difficult bicycle is kept in val and ignored by mAP

    # train drops difficult objects: A keeps its dog only, D (only a difficult bottle) has no boxes at all
    boxes_a = data.train[0][1]
    assert boxes_a["labels"].tolist() == [VOC_CLASSES.index("dog") + 1]
    assert boxes_a["boxes"].tolist() in ([[8.0, 8.0, 40.0, 40.0]], [[S - 40.0, 8.0, S - 8.0, 40.0]])
    empty = data.train[2][1]
    assert empty["boxes"].shape == (0, 4) and empty["boxes"].dtype == torch.float32
    assert empty["labels"].shape == (0,) and empty["labels"].dtype == torch.int64


def test_voc_detection_val_image_is_the_plain_resized_jpeg(voc_root: Path):
    image, _ = voc(voc_root, "detection").val[0]
    with Image.open(voc_root / "JPEGImages/2007_000003.jpg") as pil:
        expected = F.resize(F.pil_to_tensor(pil.convert("RGB")), [S, S], antialias=True).float() / 255
    torch.testing.assert_close(image, expected)


def test_voc_segmentation_masks_resize_exactly_and_keep_255(voc_root: Path):
    data = voc(voc_root, "segmentation")
    assert data.num_classes == 21 and data.class_names == ["background", *VOC_CLASSES]
    image, mask = data.val[0]
    assert image.shape == (3, S, S) and image.dtype == torch.float32
    assert mask.shape == (S, S) and mask.dtype == torch.int64
    # 32x16 -> 64x64 nearest is exactly a repeat by 2 along x and 4 along y
    expected = torch.from_numpy(mask_3()).long().repeat_interleave(4, 0).repeat_interleave(2, 1)
    assert torch.equal(mask, expected)
    assert set(mask.unique().tolist()) == {0, 2, 7, 255}
    # normalised with the ImageNet statistics: undoing it gives the [0, 1] image back
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    det_image, _ = voc(voc_root, "detection").val[0]
    torch.testing.assert_close(image * std + mean, det_image, atol=1e-5, rtol=0)


def test_voc_train_flip_moves_image_mask_and_boxes_together(voc_root: Path):
    seg, det = voc(voc_root, "segmentation").train, voc(voc_root, "detection").train
    plain = torch.from_numpy(mask_1()).long().repeat_interleave(4, 0).repeat_interleave(2, 1)
    box, mirrored = [[8.0, 8.0, 40.0, 40.0]], [[24.0, 8.0, 56.0, 40.0]]
    seen_seg, seen_det = set(), set()
    for epoch in range(12):
        seg.set_epoch(epoch)
        det.set_epoch(epoch)
        image, mask = seg[0]
        assert torch.equal(mask, plain) or torch.equal(mask, plain.flip(-1))
        seen_seg.add(torch.equal(mask, plain))
        red = image[:, mask == 12].mean(dim=1)
        rest = image[:, mask == 0].mean(dim=1)
        assert red[0] > red[2] + 0.1 and rest[2] > rest[0] + 0.1  # the red box sits under the dog's pixels
        image, target = det[0]
        assert target["boxes"].tolist() in (box, mirrored)
        seen_det.add(target["boxes"].tolist() == box)
        x1, y1, x2, y2 = (int(v) for v in target["boxes"][0])
        inside = image[:, y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].mean(dim=(1, 2))
        outside = image[:, 48:, :].mean(dim=(1, 2))  # the bottom rows lie below the box either way
        assert inside[0] > inside[2] + 0.1 and outside[2] > outside[0] + 0.1  # and under the dog's box
    assert seen_seg == {True, False} and seen_det == {True, False}


def test_augment_flips_a_mask_and_its_box_together():
    image = torch.zeros(3, 20, 40, dtype=torch.uint8)
    mask = torch.zeros(20, 40, dtype=torch.uint8)
    mask[5:15, 2:12] = 1
    image[0, 5:15, 2:12] = 200
    sample_image, target = detection_sample(image, torch.tensor([[2.0, 5.0, 12.0, 15.0]]), torch.tensor([1]))
    target["mask"] = tv_tensors.Mask(mask)
    flips = set()
    for seed in range(8):
        out_image, out = augment(sample_image, target, item_generator(seed))
        rows, cols = torch.nonzero(out["mask"] == 1, as_tuple=True)
        mask_box = [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]
        assert out["boxes"].tolist() == [mask_box]
        assert bool((out_image[0][out["mask"] == 1] > out_image[0][out["mask"] == 0].max()).all())
        flips.add(mask_box[0] == 28.0)
    assert flips == {True, False}


def test_train_augmentation_is_fixed_by_seed_epoch_and_index(voc_root: Path):
    first, second = voc(voc_root, "segmentation", seed=5).train, voc(voc_root, "segmentation", seed=5).train
    other_seed = voc(voc_root, "segmentation", seed=6).train
    for ds in (first, second, other_seed):
        ds.set_epoch(3)
    for index in range(len(first)):
        a, b = first[index], second[index]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert torch.equal(first[index][0], a[0])  # asking again draws nothing new
        assert torch.equal(first[np.int64(index)][0], a[0])  # a sampler's numpy or torch index is the same item
        assert torch.equal(first[torch.tensor(index)][0], a[0])
        assert not torch.equal(other_seed[index][0], a[0])
    # the same epoch set later gives the same items back: what a resumed run sees
    first.set_epoch(4)
    later = [first[i][0] for i in range(len(first))]
    first.set_epoch(3)
    assert all(torch.equal(first[i][0], second[i][0]) for i in range(len(first)))
    assert all(not torch.equal(later[i], second[i][0]) for i in range(len(first)))


def test_val_is_never_augmented(voc_root: Path):
    data = voc(voc_root, "detection")
    image0, target0 = data.val[0]
    for epoch in (1, 7):
        data.val.set_epoch(epoch)
        image, target = data.val[0]
        assert torch.equal(image, image0) and torch.equal(target["boxes"], target0["boxes"])
    assert data.train.augment and not data.val.augment


def test_set_epoch_rejects_bad_values(voc_root: Path):
    train = voc(voc_root, "detection").train
    for bad in (-1, 1.5, True):
        with pytest.raises(FinetuneError, match=r"set_epoch takes a whole number >= 0"):
            train.set_epoch(bad)


# ----------------------------------------------------------------------------- VOC bad input


def test_voc_missing_subfolders_are_named(voc_root: Path):
    (voc_root / "Annotations").rename(voc_root / "Annotations_old")
    with fails(r"lacks the sub-folder\(s\) Annotations \(VOC detection reads JPEGImages, Annotations", voc_root):
        voc(voc_root, "detection")
    for name in ("SegmentationClass", "ImageSets/Segmentation"):
        (voc_root / name).rename(voc_root / (name.replace("/", "_") + "_old"))
    with fails(r"lacks the sub-folder\(s\) SegmentationClass, ImageSets/Segmentation", voc_root):
        voc(voc_root, "segmentation")


def test_voc_parent_folder_gets_a_pointer_to_the_right_one(voc_root: Path):
    with fails(r"looks like a parent of the VOC folder: try voc:" + re.escape(str(voc_root)), voc_root.parent):
        voc(voc_root.parent, "detection")


def test_voc_missing_or_empty_split_list(voc_root: Path):
    val_list = voc_root / "ImageSets/Main/val.txt"
    val_list.unlink()
    with fails(r"val split list .* does not exist; put one image id per line in .*ImageSets/Main/val.txt", val_list):
        voc(voc_root, "detection")
    train_list = voc_root / "ImageSets/Segmentation/train.txt"
    train_list.write_text("\n  \n")
    with fails(r"is empty; list one image id per line", train_list):
        voc(voc_root, "segmentation")


@pytest.mark.parametrize(
    ("task", "gone", "what"),
    [
        ("detection", "JPEGImages/2007_000002.jpg", "image"),
        ("detection", "Annotations/2007_000003.xml", "annotation"),
        ("segmentation", "SegmentationClass/2007_000001.png", "mask"),
    ],
)
def test_voc_listed_ids_without_files(voc_root: Path, task: str, gone: str, what: str):
    (voc_root / gone).unlink()
    with fails(rf"1 {what}\(s\) listed in .* missing: .*remove the id from the split list", voc_root / gone):
        voc(voc_root, task)


def test_voc_listed_id_that_never_existed(voc_root: Path):
    (voc_root / "ImageSets/Main/train.txt").write_text("2007_000001\nghost_0001\n")
    with fails(r"image\(s\) listed in .*train.txt' are missing", voc_root / "JPEGImages/ghost_0001.jpg"):
        voc(voc_root, "detection")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_voc_corrupt_jpeg_fails_before_training(voc_root: Path, damage: str):
    path = voc_root / "JPEGImages/2007_000003.jpg"
    # a noisy 32x16 JPEG whose entropy-coded data is most of the file: cut at 80% it still opens and passes
    # PIL's verify() (which reads no JPEG data), so only decoding it finds the damage
    write_rgb(path, np.random.default_rng(0).integers(0, 256, (16, 32, 3)))
    data = path.read_bytes()
    damaged = {"garbage": b"not a jpeg at all" * 20, "truncated": data[: len(data) * 4 // 5], "empty": b""}[damage]
    path.write_bytes(damaged)
    if damage == "truncated":
        with Image.open(path) as image:
            image.verify()
    with fails(r"1 unreadable or corrupt image file\(s\).*re-extract the VOC archive", path):
        voc(voc_root, "detection")


def test_voc_corrupt_mask_fails(voc_root: Path):
    path = voc_root / "SegmentationClass/2007_000002.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    with fails(r"unreadable or corrupt image file", path):
        voc(voc_root, "segmentation")


@pytest.mark.parametrize(
    ("xml", "match"),
    [
        ("<annotation><object><name>dog</name>", r"malformed VOC annotation"),
        ("<annotation><object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax></bndbox>"
         "</object></annotation>", r"object 1 has no <ymax>"),
        ("<annotation><object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>five</xmax><ymax>5</ymax>"
         "</bndbox></object></annotation>", r"object 1 <xmax> is 'five', not a number"),
        ("<annotation><object><bndbox/></object></annotation>", r"object 1 has no <name>"),
        ("<annotation><object><name>dog</name></object></annotation>", r"object 1 has no <bndbox>"),
    ],
)  # fmt: skip
def test_voc_malformed_xml(voc_root: Path, xml: str, match: str):
    path = voc_root / "Annotations/2007_000002.xml"
    path.write_text(xml)
    with fails(match, path):
        voc(voc_root, "detection")


def test_voc_unknown_class_name(voc_root: Path):
    path = voc_root / "Annotations/2007_000001.xml"
    write_xml(path, (32, 16), [("dog", (5, 3, 20, 10), 0), ("dragon", (1, 1, 4, 4), 0)])
    with fails(r"object 2 has the unknown class 'dragon'; the 20 VOC classes are aeroplane, .*tvmonitor", path):
        voc(voc_root, "detection")


def test_voc_empty_box_and_wrong_size(voc_root: Path):
    path = voc_root / "Annotations/2007_000001.xml"
    write_xml(path, (32, 16), [("dog", (20, 3, 5, 10), 0)])
    with fails(r"object 1 \(dog\) has the box xmin=20 .* empty inside the 32x16 image", path):
        voc(voc_root, "detection")
    write_xml(path, (500, 375), [("dog", (5, 3, 20, 10), 0)])
    with fails(r"is for a 500x375 image but its image is 32x16", path):
        voc(voc_root, "detection")


def test_voc_mask_of_another_size(voc_root: Path):
    mask = voc_root / "SegmentationClass/2007_000003.png"
    write_palette_png(mask, np.zeros((16, 30), np.uint8))
    with fails(r"image/label pair\(s\) of different sizes: .* is 32x16 but .* is 30x16", mask):
        voc(voc_root, "segmentation")


def test_voc_mask_that_is_not_class_indices(voc_root: Path):
    rgb = voc_root / "SegmentationClass/2007_000001.png"
    write_rgb(rgb, np.zeros((16, 32, 3), np.uint8))
    with fails(r"VOC masks are not single-channel class-index PNGs \(mode P or L\).*\(mode RGB\)", rgb):
        voc(voc_root, "segmentation")
    write_palette_png(rgb, np.full((16, 32), 42, np.uint8))
    with fails(r"outside 0..20 and 255: .*\(values \[42\]\).*not SegmentationObject", rgb):
        voc(voc_root, "segmentation")


# ----------------------------------------------------------------------------- Cityscapes


def test_cityscapes_maps_label_ids_to_the_19_train_ids(city_root: Path):
    data = build_datasets(DataSpec("cityscapes", city_root), "segmentation", 32, 0)
    assert data.num_classes == 19 and data.class_names == list(CITYSCAPES_CLASSES) and data.ignore_index == 255
    assert len(data.train) == 3 and len(data.val) == 1
    image, mask = data.val[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32) and mask.dtype == torch.int64
    expected = torch.tensor(CITY_TRAIN_IDS).repeat_interleave(2).expand(32, 32)  # 16x8 -> 32x32
    assert torch.equal(mask, expected)
    # train items come from the same files, sorted by city and name; the flip mirrors the mapped columns
    _, train_mask = data.train[2]
    assert torch.equal(train_mask, expected) or torch.equal(train_mask, expected.flip(-1))


def test_cityscapes_train_ids_follow_the_official_table():
    from actplug.finetune.data.cityscapes import train_id_table

    table = train_id_table()
    assert CITYSCAPES_CLASSES[int(table[26])] == "car" and CITYSCAPES_CLASSES[int(table[7])] == "road"
    assert CITYSCAPES_CLASSES[int(table[33])] == "bicycle" and CITYSCAPES_CLASSES[int(table[24])] == "person"
    assert sorted(int(v) for v in table if v != 255) == list(range(19))
    assert all(int(table[i]) == 255 for i in (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, *range(34, 256)))


def test_cityscapes_missing_folders_are_named(city_root: Path):
    (city_root / "gtFine").rename(city_root / "gtFine_elsewhere")
    with fails(r"lacks the sub-folder\(s\) gtFine/train, gtFine/val", city_root):
        build_datasets(DataSpec("cityscapes", city_root), "segmentation", 32, 0)
    with fails(r"try cityscapes:" + re.escape(str(city_root)), city_root.parent):
        build_datasets(DataSpec("cityscapes", city_root.parent), "segmentation", 32, 0)


def test_cityscapes_empty_split(city_root: Path):
    for path in (city_root / "leftImg8bit/val").rglob("*.png"):
        path.unlink()
    with fails(r"holds no CITY/\*_leftImg8bit.png images", city_root / "leftImg8bit/val"):
        build_datasets(DataSpec("cityscapes", city_root), "segmentation", 32, 0)


def test_cityscapes_image_without_label(city_root: Path):
    label = city_root / "gtFine/train/bremen/bremen_000000_000019_gtFine_labelIds.png"
    label.unlink()
    with fails(r"1 Cityscapes label file\(s\) of the train images are missing: .*unzip gtFine_trainvaltest.zip", label):
        build_datasets(DataSpec("cityscapes", city_root), "segmentation", 32, 0)


def test_cityscapes_bad_label_files(city_root: Path):
    label = city_root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png"
    write_grey_png(label, np.zeros((8, 15), np.uint8))
    with fails(r"different sizes: .* is 16x8 but .* is 15x8", label):
        build_datasets(DataSpec("cityscapes", city_root), "segmentation", 32, 0)
    write_rgb(label, np.zeros((8, 16, 3), np.uint8))
    with fails(r"use the \*_gtFine_labelIds.png files \(not \*_color.png\)", label):
        build_datasets(DataSpec("cityscapes", city_root), "segmentation", 32, 0)
    label.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with fails(r"unreadable or corrupt image file", label):
        build_datasets(DataSpec("cityscapes", city_root), "segmentation", 32, 0)


# ----------------------------------------------------------------------------- build_datasets arguments


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 16}, r"image_size must be a whole number >= 32, got 16"),
        ({"seed": -1}, r"seed must be a whole number >= 0"),
        ({"synthetic_train": 0}, r"synthetic_train must be a whole number >= 1"),
        ({"synthetic_val": 2.5}, r"synthetic_val must be a whole number >= 1"),
        ({"task": "classify"}, r"unknown task 'classify'"),
        ({"spec": "synthetic"}, r"takes a DataSpec \(see parse_data_spec\)"),
        ({"spec": DataSpec("voc", None)}, r"--data voc needs the dataset folder"),
        ({"spec": DataSpec("coco", None)}, r"unknown data kind 'coco'"),
    ],
)
def test_build_datasets_rejects_bad_arguments(kwargs: dict, match: str):
    args = {"spec": DataSpec("synthetic", None), "task": "segmentation", "image_size": 64, "seed": 0, **kwargs}
    with pytest.raises(FinetuneError, match=match):
        build_datasets(
            args.pop("spec"),
            args.pop("task"),
            args.pop("image_size"),
            args.pop("seed"),
            **args,
        )


# ----------------------------------------------------------------------------- generated shapes


def digest(dataset, count: int) -> str:
    sha = hashlib.sha256()
    for index in range(count):
        image, target = dataset[index]
        sha.update(image.numpy().tobytes())
        parts = [target] if isinstance(target, torch.Tensor) else [target["boxes"], target["labels"]]
        for part in parts:
            sha.update(part.numpy().tobytes())
    return sha.hexdigest()


DIGEST_SCRIPT = """
import hashlib, sys, torch
sys.path.insert(0, sys.argv[1])
from test_finetune_data import digest
from actplug.finetune.data import DataSpec, build_datasets
out = []
for task in ("segmentation", "detection"):
    data = build_datasets(DataSpec("synthetic", None), task, 64, 7, synthetic_train=3, synthetic_val=3)
    data.train.set_epoch(2)
    out += [digest(data.train, 3), digest(data.val, 3)]
print(",".join(out))
"""


def test_shapes_are_identical_in_another_process():
    expected = []
    for task in ("segmentation", "detection"):
        data = build_datasets(DataSpec("synthetic", None), task, 64, 7, synthetic_train=3, synthetic_val=3)
        data.train.set_epoch(2)
        expected += [digest(data.train, 3), digest(data.val, 3)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "123"}  # other threads, other str hashes
    run = subprocess.run(
        [sys.executable, "-c", DIGEST_SCRIPT, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().split(",") == expected
    assert len(set(expected)) == 4  # train (augmented) and val differ; segmentation and detection items differ


def test_shapes_depend_on_seed_and_split():
    a = ShapesSource("val", 4, 64, 0, "detection")
    b = ShapesSource("val", 4, 64, 1, "detection")
    c = ShapesSource("train", 4, 64, 0, "detection")
    for i in range(4):
        assert torch.equal(a.scene(i).image, ShapesSource("val", 4, 64, 0, "segmentation").scene(i).image)
        assert not torch.equal(a.scene(i).image, b.scene(i).image)
        assert not torch.equal(a.scene(i).image, c.scene(i).image)
    assert not torch.equal(a.scene(0).image, a.scene(1).image)


@pytest.mark.parametrize("size", [64, 320])
def test_shapes_boxes_and_masks_agree(size: int):
    count = 24 if size == 64 else 4
    det = build_datasets(DataSpec("synthetic", None), "detection", size, 3, synthetic_val=count).val
    seg = build_datasets(DataSpec("synthetic", None), "segmentation", size, 3, synthetic_val=count).val
    labels_seen = set()
    for index in range(count):
        image, target = det[index]
        seg_image, mask = seg[index]
        assert image.shape == (3, size, size) and mask.shape == (size, size)
        boxes, labels = target["boxes"], target["labels"]
        assert 1 <= len(boxes) <= 4 and labels.shape == (len(boxes),)
        assert set(labels.tolist()) <= {1, 2, 3}
        assert bool((boxes >= 0).all() and (boxes <= size).all())
        assert bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all())
        extents = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        assert bool((extents <= 0.45 * size + 1).all())  # no shape larger than 45% of the image
        classes = set(mask.unique().tolist())
        assert classes <= {0, 1, 2, 3} and 0 in classes
        assert set(labels.tolist()) <= classes
        for (x1, y1, x2, y2), label in zip(boxes.long().tolist(), labels.tolist(), strict=True):
            inside = mask[y1:y2, x1:x2] == label  # the box is tight around visible pixels of its class
            assert bool(inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any())
            assert int(inside.sum()) >= 0.3 * (x2 - x1) * (y2 - y1)
        # the same scene under both tasks: undo the normalisation of the segmentation image
        mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
        torch.testing.assert_close(seg_image * std + mean, image, atol=1e-5, rtol=0)
        # a textured background: not one flat colour
        assert float(image[:, mask == 0].std(dim=1).max()) > 0.03
        labels_seen |= set(labels.tolist())
    if size == 64:
        assert labels_seen == {1, 2, 3}


def test_shapes_occlusion_is_the_same_in_mask_and_boxes():
    """Later shapes cover earlier ones; a box is the tight box of a shape's visible pixels, kept iff >= half shows."""
    source = ShapesSource("train", 120, 64, 11, "detection")
    occluded = dropped = 0
    for index in range(120):
        scene = source.scene(index)
        assert 1 <= len(scene.kinds) <= 4 and len(scene.areas) == len(scene.kinds)
        kind_of = torch.tensor([0, *scene.kinds])
        assert torch.equal(scene.classes.long(), kind_of[scene.instances.long()])
        expected_boxes, expected_labels = [], []
        for k, (kind, area) in enumerate(zip(scene.kinds, scene.areas, strict=True), start=1):
            visible = scene.instances == k
            shown = int(visible.sum())
            assert area > 0 and shown <= area
            occluded += shown < area
            if shown < 0.5 * area:
                dropped += 1
                continue
            rows, cols = torch.nonzero(visible, as_tuple=True)
            expected_boxes.append([int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1])
            expected_labels.append(kind)
        assert scene.boxes.tolist() == expected_boxes and scene.labels.tolist() == expected_labels
        assert int(scene.areas[-1]) == int((scene.instances == len(scene.kinds)).sum())  # the last shape is whole
    assert occluded > 0 and dropped > 0  # both cases really happen in the data


# ----------------------------------------------------------------------------- collate


def test_collate_segmentation_and_detection():
    seg = build_datasets(DataSpec("synthetic", None), "segmentation", 64, 0, synthetic_train=4).train
    images, masks = collate_segmentation([seg[i] for i in range(4)])
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.float32
    assert masks.shape == (4, 64, 64) and masks.dtype == torch.int64
    assert torch.equal(masks[2], seg[2][1])

    det = build_datasets(DataSpec("synthetic", None), "detection", 64, 0, synthetic_train=4).train
    images, targets = collate_detection([det[i] for i in range(4)])
    assert isinstance(images, list) and isinstance(targets, list) and len(images) == len(targets) == 4
    assert all(img.shape == (3, 64, 64) and img.dtype == torch.float32 for img in images)
    for index, target in enumerate(targets):
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape[1] == 4
        assert target["labels"].dtype == torch.int64 and target["labels"].shape == (len(target["boxes"]),)
        assert torch.equal(target["boxes"], det[index][1]["boxes"])


def test_datasets_work_in_a_dataloader_with_workers(voc_root: Path):
    """Items pickle into worker processes and come back the same as in the main process."""
    data = voc(voc_root, "detection")
    data.train.set_epoch(5)
    loader = torch.utils.data.DataLoader(data.train, batch_size=3, num_workers=1, collate_fn=collate_detection)
    images, targets = next(iter(loader))
    for index in range(3):
        assert torch.equal(images[index], data.train[index][0])
        assert torch.equal(targets[index]["boxes"], data.train[index][1]["boxes"])
