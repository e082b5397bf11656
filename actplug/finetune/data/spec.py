"""``--data`` parsing: ``synthetic``, ``voc:PATH`` or ``cityscapes:PATH`` into a checked :class:`DataSpec`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import FinetuneError

TASKS = ("segmentation", "detection")
KINDS = ("synthetic", "voc", "cityscapes")
# Which tasks each kind of data has labels for: Cityscapes ships no boxes (gtFine is pixel labels and polygons).
KIND_TASKS = {"synthetic": TASKS, "voc": TASKS, "cityscapes": ("segmentation",)}


@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from: ``kind`` one of :data:`KINDS`; ``path`` the dataset folder (None for synthetic)."""

    kind: str
    path: Path | None


def check_task(task: str) -> None:
    """Raise :class:`FinetuneError` unless ``task`` is one of :data:`TASKS`."""
    if task not in TASKS:
        raise FinetuneError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


def check_kind_task(kind: str, task: str) -> None:
    """Raise :class:`FinetuneError` when data of ``kind`` has no labels for ``task`` (Cityscapes detection)."""
    check_task(task)
    if kind not in KINDS:
        raise FinetuneError(f"unknown data kind {kind!r}; choose one of {', '.join(KINDS)}")
    if task not in KIND_TASKS[kind]:
        usable = ", ".join(k for k in KINDS if task in KIND_TASKS[k])
        raise FinetuneError(
            f"{kind} has no {task} labels (it is a segmentation dataset); for {task} use --data with one of: {usable}"
        )


def check_folder(kind: str, path: Path) -> None:
    """Raise :class:`FinetuneError` unless ``path`` is an existing folder."""
    if not path.exists():
        raise FinetuneError(f"{kind} folder {str(path)!r} does not exist; pass the dataset's folder as {kind}:PATH")
    if not path.is_dir():
        raise FinetuneError(f"{kind} path {str(path)!r} is a file, not a folder; pass the dataset's root folder")


def parse_data_spec(text: str, task: str) -> DataSpec:
    """Parse ``--data``: ``synthetic``, ``voc:PATH`` or ``cityscapes:PATH`` (``~`` expanded), checked against ``task``.

    Raises :class:`FinetuneError` for an unknown kind, a missing PATH, a PATH that is not an existing folder,
    or a kind that has no labels for ``task``.
    """
    if not isinstance(text, str) or not text.strip():
        raise FinetuneError(f"--data is empty; write one of: synthetic, voc:PATH, cityscapes:PATH (got {text!r})")
    kind, sep, rest = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise FinetuneError(
            f"unknown --data kind {kind!r} in {text!r}; write one of: synthetic, voc:PATH, cityscapes:PATH"
        )
    check_kind_task(kind, task)
    if kind == "synthetic":
        if sep and rest.strip():
            raise FinetuneError(f"--data synthetic takes no path (got {text!r}); write just: synthetic")
        return DataSpec("synthetic", None)
    if not rest.strip():
        raise FinetuneError(f"--data {kind} needs the dataset folder; write {kind}:PATH (got {text!r})")
    path = Path(rest.strip()).expanduser()
    check_folder(kind, path)
    return DataSpec(kind, path)
