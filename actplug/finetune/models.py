"""The recipes' models by name, with any registered activation or PyTorch baseline in every activation slot.

Segmentation: smp's ``Unet`` and ``DeepLabV3Plus`` on a timm encoder (:mod:`.models_segmentation`);
detection: torchvision's SSD300 on VGG16-BN and SSDLite320 (:mod:`.models_detection`). Nothing is
downloaded unless ``pretrained`` names framework weights. :func:`check_model_options` validates
everything cheaply (on the meta device), and :func:`check_pretrained` the weights source (offline), so
that a bad name, keyword, size or file fails before data or weights are touched; :func:`build_model`
builds for real.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from typing import Any

from torch import nn

from .config import NEEDS_PRETRAINED
from .errors import FinetuneError
from .models_act import activation_counts, calibration_batch, check_activation, swap_remaining
from .models_detection import BUILDERS as DETECTION_BUILDERS
from .models_detection import MIN_TRAIN_BATCH as DETECTION_MIN_BATCH
from .models_detection import check_detection_size
from .models_segmentation import (
    build_pretrained_segmentation,
    build_segmentation,
    check_encoder_name,
    check_segmentation_size,
    probe_segmentation,
)
from .pretrained import Pretrained, resolve_pretrained

__all__ = [
    "DETECTION_MODELS",
    "SEGMENTATION_MODELS",
    "build_model",
    "calibration_batch",
    "check_model_options",
    "check_pretrained",
    "min_train_batch_size",
]

logger = logging.getLogger("actplug")

SEGMENTATION_MODELS = ("unet", "deeplabv3plus")
DETECTION_MODELS = ("ssd300_vgg16bn", "ssdlite320")
_MODELS = {"segmentation": SEGMENTATION_MODELS, "detection": DETECTION_MODELS}


def check_model_options(
    task: str, model: str, encoder: str, act: str, act_kwargs: Mapping[str, Any] | None, image_size: int
) -> None:
    """Raise FinetuneError for an unknown task, model, encoder or activation, act_kwargs the activation
    does not take, or an image size the model cannot take. ``encoder`` is used by segmentation only.

    Cheap: no weights, no real model (segmentation builds its model on the meta device to ask timm
    and smp whether the encoder takes ``act_layer`` and the size).
    """
    _check_task_model(task, model)
    kwargs = check_activation(act, act_kwargs)
    _check_image_size(image_size)
    if task == "segmentation":
        name = check_encoder_name(encoder)
        check_segmentation_size(model, image_size)
        probe_segmentation(model, name, act, kwargs, image_size)
    else:
        check_detection_size(model, image_size)


def _check_task_model(task: str, model: str) -> None:
    if task not in _MODELS:
        raise FinetuneError(f"unknown task {task!r}; choose one of {', '.join(_MODELS)}")
    choices = _MODELS[task]
    if model in choices:
        return
    other = next((t for t, names in _MODELS.items() if model in names), None)
    if other is not None:
        raise FinetuneError(f"--model {model} is a {other} model; for {task} choose one of {', '.join(choices)}")
    close = difflib.get_close_matches(str(model).lower(), choices, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise FinetuneError(f"unknown {task} --model {model!r}.{hint} Choose one of {', '.join(choices)}")


def _check_image_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise FinetuneError(f"--image-size must be a positive whole number of pixels, got {image_size!r}")


def _check_num_classes(task: str, num_classes: int) -> None:
    least = 2 if task == "segmentation" else 1
    what = "classes including the background" if task == "segmentation" else "foreground classes"
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < least:
        raise FinetuneError(f"num_classes for {task} counts {what}: at least {least}, got {num_classes!r}")


def check_pretrained(task: str, model: str, encoder: str, pretrained: str | None) -> Pretrained | None:
    """``--pretrained`` resolved for ``model`` (None for none): an existing weights file, or a weights name its
    framework knows (see :mod:`.pretrained`); FinetuneError naming the valid names otherwise. Offline."""
    if pretrained is None:
        return None
    _check_task_model(task, model)
    return resolve_pretrained(task, model, check_encoder_name(encoder) if task == "segmentation" else "", pretrained)


def build_model(
    task: str,
    model: str,
    *,
    num_classes: int,
    act: str,
    act_kwargs: Mapping[str, Any] | None = None,
    encoder: str = "resnet34",
    image_size: int = 300,
    pretrained: str | None = None,
    fit: bool = False,
    calibration: Any = None,
    report: dict[str, Any] | None = None,
) -> nn.Module:
    """Build ``model`` for ``task`` with ``act`` (and ``act_kwargs``) in every activation slot.

    segmentation: ``num_classes`` includes the background; ``model(images [B,3,S,S])`` gives logits
    ``[B,num_classes,S,S]``. detection: ``num_classes`` counts foreground classes (labels
    1..num_classes); in training mode ``model(images, targets)`` gives a loss dict, in eval mode
    ``model(images)`` a list of dicts with boxes, scores and labels. Raises FinetuneError on bad input.

    ``pretrained`` (a file or a framework weights name, see :mod:`.pretrained`): the model is built
    with its frameworks' own activations, the weights loaded, and then ``act`` swapped in by
    ``actplug.swap``; with ``fit`` the swap fits each new activation to the one it replaces on the
    inputs of ``calibration`` (:func:`calibration_batch`). ``report``, a dict, receives
    ``"pretrained"`` (source, checksum, what was loaded) and ``"fit"`` (one dict per swapped layer, or None).
    """
    check_model_options(task, model, encoder, act, act_kwargs, image_size)
    _check_num_classes(task, num_classes)
    kwargs = dict(act_kwargs or {})
    if fit and pretrained is None:
        raise FinetuneError(NEEDS_PRETRAINED)
    if pretrained is None:
        if task == "segmentation":
            net = build_segmentation(model, check_encoder_name(encoder), num_classes, act, kwargs)
        else:
            net = DETECTION_BUILDERS[model](num_classes, image_size, act, kwargs)
        source, fitted = None, None
    else:
        source = check_pretrained(task, model, encoder, pretrained)
        if task == "segmentation":
            net = build_pretrained_segmentation(model, check_encoder_name(encoder), num_classes, source)
        else:
            net = DETECTION_BUILDERS[model](num_classes, image_size, act, kwargs, pretrained=source)
        results: list = []
        swap_remaining(net, act, kwargs, fit=fit, calibration=calibration if fit else None, report=results)
        fitted = [r.as_dict() for r in results] if fit else None
    if report is not None:
        report["pretrained"] = source.as_dict() if source is not None else None
        report["fit"] = fitted
    counts = ", ".join(f"{n} {name}" for name, n in sorted(activation_counts(net).items()))
    logger.info("actplug finetune: built %s with activations: %s", model, counts)
    return net


def min_train_batch_size(task: str, model: str, *, encoder: str = "resnet34", image_size: int = 300) -> int:
    """The smallest per-process training batch the model takes (1 or 2).

    BatchNorm in training mode needs more than one value per channel, so a batch of one fails where a
    feature map is 1 x 1: DeepLabV3+'s image pooling, SSDLite's last blocks, U-Net's deepest stage
    at small sizes. A training loader should then drop a last batch of one (``drop_last``).
    """
    _check_task_model(task, model)
    if task == "detection":
        return DETECTION_MIN_BATCH[model]
    return probe_segmentation(model, check_encoder_name(encoder), "relu", {}, image_size)
