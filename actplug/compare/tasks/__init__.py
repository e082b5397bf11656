"""The tasks of ``actplug compare``: what one (activation, seed) run trains, on which data, and what it reports.

``get_task(spec, model=...)`` checks the task (and its ``--model``, or its folder) cheaply and returns a
:class:`CompareTask`; nothing trains until ``task.run(act, seed, epochs, device)`` is called, which
returns one run's record: ``{"metrics": {name: float}, "history": [{"epoch", "train_loss", "test_loss",
<main_metric>}, ...]}``.

Runs are paired: for a seed, every activation gets the same split, the same initial weights of every
layer that is not an activation, and the same batch order (:mod:`.training`). One module per task:
:mod:`.wdbc`, :mod:`.digits`, :mod:`.segmentation` and :mod:`.detection` (generated shapes) and
:mod:`.folder` (an image folder, checked by :mod:`.folder_checks`). Heavy libraries (torchvision, timm,
segmentation-models-pytorch) load only for the tasks that need them.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CompareError

__all__ = ["TASK_NAMES", "CompareTask", "get_task"]

#: What ``--task`` accepts (``folder:PATH`` with the image folder's path).
TASK_NAMES = ("wdbc", "digits", "shapes-seg", "shapes-det", "folder:PATH")


@dataclass(frozen=True)
class CompareTask:
    """One task of ``actplug compare``.

    ``name``: "wdbc", "digits", "shapes-seg", "shapes-det" or "folder"; ``main_metric``: the metric of the
    per-epoch history and the curves; ``metrics``: every final metric a record holds; ``default_epochs``:
    the epochs used when ``--epochs`` is not given; ``description``: one line for summary.md (data,
    model, split, optimiser); ``run(act, seed, epochs, device, **options)``: one run's record.
    """

    name: str
    main_metric: str
    metrics: tuple[str, ...]
    default_epochs: int
    description: str
    run: Callable[..., dict[str, Any]]


#: Task name -> the module whose ``make_task(model)`` builds it (imported only when that task is asked for).
_MODULES = {"wdbc": "wdbc", "digits": "digits", "shapes-seg": "segmentation", "shapes-det": "detection"}


def get_task(spec: str, *, model: str | None = None) -> CompareTask:
    """The task named by ``spec`` ("wdbc", "digits", "shapes-seg", "shapes-det" or "folder:PATH").

    Checked here, before any run: the task name (close matches suggested), ``model`` (``--model``: the
    model of shapes-seg, shapes-det and folder; refused by wdbc and digits, whose networks are fixed), and
    a folder's layout and images. Raises :class:`CompareError` naming the problem and the fix.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise CompareError(f"--task is empty (got {spec!r}); choose one of {', '.join(TASK_NAMES)}")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise CompareError(f"--model is empty (got {model!r}); give a model name or leave --model out")
    model = model.strip() if model is not None else None
    head, sep, rest = spec.strip().partition(":")
    key = head.strip().lower()
    if key == "folder":
        if not rest.strip():
            raise CompareError(
                f"--task {spec!r} needs the image folder: write folder:PATH, PATH holding train/ and val/ "
                "with one sub-folder per class (or the class sub-folders directly)"
            )
        from . import folder

        return folder.make_task(Path(rest.strip()).expanduser(), model)
    if key not in _MODULES:
        close = difflib.get_close_matches(key, [*_MODULES, "folder"], n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise CompareError(f"unknown --task {spec!r}.{hint} Choose one of {', '.join(TASK_NAMES)}")
    if sep:
        raise CompareError(f"--task {key} takes no ':{rest}' (only folder:PATH has a path); write --task {key}")
    module = importlib.import_module(f"{__name__}.{_MODULES[key]}")
    return module.make_task(model)
