"""Up-front checks of a dataset folder: sub-folders, split lists, and every listed image opened and verified.

Everything here runs before training starts, so that a broken dataset fails in seconds with a message naming
the file and the fix instead of crashing a worker hours into a run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from PIL import Image, UnidentifiedImageError

from ..errors import FinetuneError

# How many offending paths an error message names before it says "and N more".
SHOWN = 3

T = TypeVar("T")
R = TypeVar("R")


def map_threads(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[function(item) for item in items]`` on a few threads (PIL and zlib release the GIL while reading)."""
    workers = max(1, min(8, (os.cpu_count() or 1) * 2, len(items)))
    if workers == 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))


def name_some(items: Sequence[object], shown: int = SHOWN) -> str:
    """``items`` as one line: the first ``shown`` of them, then how many more there are."""
    head = "; ".join(str(item) for item in items[:shown])
    return head if len(items) <= shown else f"{head}; and {len(items) - shown} more"


def require_subfolders(
    kind: str, root: Path, needed: Sequence[str], why: str, hint: Callable[[Path], str] | None = None
) -> None:
    """Raise :class:`FinetuneError` naming every folder of ``needed`` (relative to ``root``) that is missing.

    ``hint(root)``, asked only on failure, may add a pointer such as the right folder found below ``root``.
    """
    missing = [name for name in needed if not (root / name).is_dir()]
    if missing:
        extra = hint(root) if hint is not None else ""
        raise FinetuneError(
            f"{kind} folder {str(root)!r} lacks the sub-folder(s) {', '.join(missing)} ({why}){extra}; "
            f"pass the folder that holds {', '.join(needed)}"
        )


def read_split_list(path: Path, what: str, fix: str) -> list[str]:
    """The ids of a VOC-style split list (first token of each non-blank line); missing or empty lists raise."""
    if not path.is_file():
        raise FinetuneError(f"{what} split list {str(path)!r} does not exist; {fix}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FinetuneError(f"cannot read the {what} split list {str(path)!r} ({exc}); {fix}") from None
    ids = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not ids:
        raise FinetuneError(f"{what} split list {str(path)!r} is empty; list one image id per line ({fix})")
    return ids


def require_files(paths: Iterable[Path], what: str, fix: str) -> None:
    """Raise :class:`FinetuneError` naming the files of ``paths`` that do not exist."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FinetuneError(f"{len(missing)} {what} missing: {name_some(missing)}; {fix}")


@dataclass(frozen=True)
class ImageInfo:
    """What the header of a verified image file says: ``size`` is (width, height) as PIL gives it."""

    path: Path
    size: tuple[int, int]
    mode: str


def inspect_image(path: Path) -> ImageInfo:
    """Open and verify ``path`` with PIL; raise ``OSError``/``ValueError`` for an unreadable or corrupt file.

    ``verify()`` checks a PNG's chunk CRCs through to its end, but reads almost nothing of a JPEG, so a JPEG
    is also decoded in draft mode (scaled down by 8 in the DCT): cheap, and it still walks the whole
    entropy-coded stream, so a truncated file fails here rather than in a data-loader worker.
    """
    with Image.open(path) as image:
        info = ImageInfo(path, image.size, image.mode)
        image.verify()
    if info.size[0] < 1 or info.size[1] < 1:
        raise ValueError(f"image has size {info.size}")
    if _is_jpeg(path):
        with Image.open(path) as image:
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    return info


def _is_jpeg(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(3) == b"\xff\xd8\xff"


def _inspect_or_reason(path: Path) -> ImageInfo | str:
    try:
        return inspect_image(path)
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        return f"{path} ({type(exc).__name__}: {exc})"


def inspect_images(paths: Sequence[Path], fix: str) -> list[ImageInfo]:
    """:func:`inspect_image` for every path; one :class:`FinetuneError` names the unreadable files and ``fix``.

    Returns the infos in the order of ``paths``.
    """
    results = map_threads(_inspect_or_reason, paths)
    bad = [r for r in results if isinstance(r, str)]
    if bad:
        raise FinetuneError(f"{len(bad)} unreadable or corrupt image file(s): {name_some(bad)}; {fix}")
    return [r for r in results if isinstance(r, ImageInfo)]


def require_same_sizes(images: Sequence[ImageInfo], labels: Sequence[ImageInfo], fix: str) -> None:
    """Raise :class:`FinetuneError` naming every image/label pair whose sizes differ."""
    bad = [
        f"{img.path} is {img.size[0]}x{img.size[1]} but {lab.path} is {lab.size[0]}x{lab.size[1]}"
        for img, lab in zip(images, labels, strict=True)
        if img.size != lab.size
    ]
    if bad:
        raise FinetuneError(f"{len(bad)} image/label pair(s) of different sizes: {name_some(bad)}; {fix}")


def require_modes(labels: Sequence[ImageInfo], modes: Sequence[str], what: str, fix: str) -> None:
    """Raise :class:`FinetuneError` naming label images whose PIL mode is not one of ``modes``."""
    bad = [f"{info.path} (mode {info.mode})" for info in labels if info.mode not in modes]
    if bad:
        raise FinetuneError(
            f"{len(bad)} {what} not single-channel class-index PNGs (mode {' or '.join(modes)}): "
            f"{name_some(bad)}; {fix}"
        )
