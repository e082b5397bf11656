"""Checks of a ``folder:PATH`` image-classification set, all done before any run starts.

Two layouts, as ``torchvision.datasets.ImageFolder`` reads them: ``PATH/train/<class>/*`` and
``PATH/val/<class>/*`` (the given split, the same classes in both), or ``PATH/<class>/*`` (split 80/20,
stratified, per seed). Images are the files ImageFolder takes (.jpg, .jpeg, .png, .ppm, .bmp, .pgm,
.tif, .tiff, .webp, in any depth below the class folder); every one is opened and verified with PIL.
Each problem raises :class:`CompareError` naming the path and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import CompareError
from .training import TEST_FRACTION

#: Unreadable images named in the message (the rest are counted).
SHOWN = 5


@dataclass(frozen=True)
class FolderLayout:
    """A checked image folder: its classes (ImageFolder's order) and where the splits come from.

    ``val_dir`` None means there is no given split: ``train_dir`` (the folder itself) is split 80/20 per seed.
    ``train_count`` / ``test_count``: the images each split holds (for a seeded split, as
    scikit-learn's ``train_test_split`` sizes it).
    """

    root: Path
    classes: tuple[str, ...]
    train_dir: Path
    val_dir: Path | None
    train_count: int
    test_count: int

    @property
    def given_split(self) -> bool:
        """True when the folder has its own train/ and val/."""
        return self.val_dir is not None


def _layout_hint(root: Path) -> str:
    return (
        f"put each class's images in {root}/<class>/ (split 80/20 per seed), or in {root}/train/<class>/ and "
        f"{root}/val/<class>/"
    )


def _classes(directory: Path, root: Path) -> list[str]:
    classes = sorted(entry.name for entry in directory.iterdir() if entry.is_dir())
    if not classes:
        loose = [p.name for p in directory.iterdir() if p.is_file()]
        found = f" (it holds {len(loose)} file(s) but no sub-folder)" if loose else ""
        raise CompareError(f"image folder {str(directory)!r} has no class sub-folders{found}; {_layout_hint(root)}")
    if len(classes) < 2:
        raise CompareError(
            f"image folder {str(directory)!r} has only one class sub-folder ({classes[0]!r}); a classifier needs at "
            "least 2 classes: add another class folder with its images"
        )
    return classes


def _images(directory: Path, classes: list[str]) -> dict[str, list[Path]]:
    """Image files per class, exactly those ImageFolder would take; CompareError for a class with none."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    index = {name: i for i, name in enumerate(classes)}
    samples = make_dataset(str(directory), index, extensions=IMG_EXTENSIONS, allow_empty=True)
    found: dict[str, list[Path]] = {name: [] for name in classes}
    for path, target in samples:
        found[classes[target]].append(Path(path))
    for name, files in found.items():
        if not files:
            raise CompareError(
                f"class folder {str(directory / name)!r} has no images ({', '.join(IMG_EXTENSIONS)}); add the "
                "class's images there, or remove the folder if it is not a class"
            )
    return found


def _verify(files: list[Path]) -> None:
    """Open and verify every image with PIL; CompareError naming the unreadable ones."""
    from PIL import Image

    bad: list[str] = []
    for path in files:
        try:
            with Image.open(path) as image:
                image.verify()
        except Exception as exc:  # PIL raises many types for a broken file
            bad.append(f"{path} ({type(exc).__name__})")
    if bad:
        shown = "; ".join(bad[:SHOWN]) + (f"; and {len(bad) - SHOWN} more" if len(bad) > SHOWN else "")
        raise CompareError(f"{len(bad)} image(s) cannot be read by PIL: {shown}; replace or delete the broken file(s)")


def _check_seeded_split(root: Path, found: dict[str, list[Path]]) -> tuple[int, int]:
    """Train and test sizes of the stratified 80/20 split; CompareError when it cannot be made."""
    small = [f"{name!r} ({len(files)})" for name, files in found.items() if len(files) < 2]
    if small:
        raise CompareError(
            f"image folder {str(root)!r}: class(es) {', '.join(small)} have fewer than 2 images, too few for a "
            "stratified 80/20 split; add images, or give train/ and val/ folders"
        )
    total = sum(len(files) for files in found.values())
    test = math.ceil(TEST_FRACTION * total)
    if test < len(found) or total - test < len(found):
        raise CompareError(
            f"image folder {str(root)!r}: {total} images are too few for a stratified 80/20 split of {len(found)} "
            f"classes (the test split needs one image per class); add images (at least {5 * len(found)}), or "
            "give train/ and val/ folders"
        )
    return total - test, test


def inspect_folder(path: Path) -> FolderLayout:
    """Check ``path`` as an image-classification folder (see the module docstring); its layout."""
    root = Path(path)
    if not root.exists():
        raise CompareError(f"image folder {str(root)!r} does not exist; give an existing folder as folder:PATH")
    if not root.is_dir():
        raise CompareError(f"{str(root)!r} is a file, not a folder; give the image folder as folder:PATH")
    train_dir, val_dir = root / "train", root / "val"
    if train_dir.is_dir() or val_dir.is_dir():
        if not (train_dir.is_dir() and val_dir.is_dir()):
            have, lack = ("train", "val") if train_dir.is_dir() else ("val", "train")
            raise CompareError(
                f"image folder {str(root)!r} has {have}/ but no {lack}/; add {root}/{lack}/<class>/ images, or put "
                f"the class folders directly in {root} (split 80/20 per seed)"
            )
        classes = _classes(train_dir, root)
        val_classes = _classes(val_dir, root)
        if classes != val_classes:
            only_train = sorted(set(classes) - set(val_classes))
            only_val = sorted(set(val_classes) - set(classes))
            parts = [
                f"only in train/: {', '.join(only_train)}" if only_train else "",
                f"only in val/: {', '.join(only_val)}" if only_val else "",
            ]
            raise CompareError(
                f"image folder {str(root)!r}: train/ and val/ must hold the same class folders "
                f"({'; '.join(p for p in parts if p)}); add or remove class folders so that they match"
            )
        train, val = _images(train_dir, classes), _images(val_dir, classes)
        _verify([f for files in (*train.values(), *val.values()) for f in files])
        return FolderLayout(
            root, tuple(classes), train_dir, val_dir, sum(map(len, train.values())), sum(map(len, val.values()))
        )
    classes = _classes(root, root)
    found = _images(root, classes)
    _verify([f for files in found.values() for f in files])
    train_count, test_count = _check_seeded_split(root, found)
    return FolderLayout(root, tuple(classes), root, None, train_count, test_count)
