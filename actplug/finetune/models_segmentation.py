"""U-Net and DeepLabV3+ from segmentation-models-pytorch on timm encoders, with the chosen activation.

The timm encoder receives ``act_layer`` (smp passes extra kwargs to ``timm.create_model``); the
decoder's and the ASPP's ``nn.ReLU`` modules are then swapped. Encoder names are timm names
("resnet34", "efficientnet_b0", ...), given to smp as ``"tu-<name>"``; nothing is downloaded
(``encoder_weights=None``). Kept on purpose: sigmoid gates of squeeze-excitation blocks (a gate, not
an activation of the features), and the segmentation head, which has no activation (it gives logits).

With pretrained weights (:func:`build_pretrained_segmentation`) the model is built with the encoder's
own activations, so that the weights meet the function they were trained with; the caller swaps after.
A timm tag goes to smp as ``"tu-<name>.<tag>"`` with ``encoder_weights=True``, and timm fetches and
loads it; a file is loaded by :mod:`.state_dicts` into the whole model or the encoder.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .errors import FinetuneError
from .models_act import activation_layer, swap_remaining
from .pretrained import Pretrained, fetch_failed, load_weights
from .state_dicts import WHOLE_MODEL, Target

#: Model name -> smp class name.
SMP_CLASSES = {"unet": "Unet", "deeplabv3plus": "DeepLabV3Plus"}

#: Image sizes: DeepLabV3+ checks that the size divides by its encoder output stride (16, smp's default);
#: smp's U-Net pads its skips and takes any size, so 32 (the encoder's deepest stride) is our floor:
#: below it the deepest feature map is a single cell padded from less than one stride.
SIZE_MULTIPLE = {"unet": 1, "deeplabv3plus": 16}
MIN_SIZE = {"unet": 32, "deeplabv3plus": 16}

#: Encoders known to take ``act_layer`` and work with both models (suggested when one does not).
SUGGESTED_ENCODERS = ("resnet34", "resnet50", "efficientnet_b0", "convnext_tiny", "regnety_002")


def normalise_encoder(encoder: str) -> str:
    """The timm name of ``encoder`` ("tu-resnet34" and "resnet34" both give "resnet34")."""
    if not isinstance(encoder, str) or not encoder.strip():
        raise FinetuneError(f"--encoder needs a timm model name such as 'resnet34', got {encoder!r}")
    name = encoder.strip()
    return name[3:] if name.startswith("tu-") else name


def check_encoder_name(encoder: str) -> str:
    """``encoder`` as a timm name that exists (a pretrained tag such as ".a1_in1k" is allowed); else FinetuneError."""
    import timm

    name = normalise_encoder(encoder)
    base = name.split(".", 1)[0]
    known = timm.list_models()
    if base not in known:
        close = difflib.get_close_matches(base.lower(), known, n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise FinetuneError(
            f"--encoder {encoder!r} is not a timm model.{hint} Give a timm model name (timm.list_models()), "
            f"e.g. {', '.join(SUGGESTED_ENCODERS)}"
        )
    return name


def check_segmentation_size(model: str, image_size: int) -> None:
    """FinetuneError when ``model`` cannot take ``image_size`` x ``image_size`` images."""
    multiple, least = SIZE_MULTIPLE[model], MIN_SIZE[model]
    if image_size < least:
        raise FinetuneError(
            f"--image-size {image_size} is too small for {model}: it needs at least {least} pixels; "
            f"use --image-size {max(least, 64)} or more"
        )
    if image_size % multiple:
        lower, upper = image_size // multiple * multiple, (image_size // multiple + 1) * multiple
        raise FinetuneError(
            f"--image-size {image_size} does not suit {model}: it must be a multiple of {multiple} (the encoder's "
            f"output stride); use --image-size {lower} or {upper}"
        )


#: Key prefixes a file of the encoder alone may carry (smp's own, timm-style wrappers, or none).
ENCODER_PREFIXES = ("", "encoder.model.", "encoder.", "backbone.", "model.")


def _smp_model(
    model: str,
    encoder: str,
    num_classes: int,
    act: str | None,
    act_kwargs: Mapping[str, Any],
    *,
    timm_weights: bool = False,
) -> nn.Module:
    """smp's ``model`` on timm's ``encoder``; ``act`` None keeps the encoder's own activations.

    ``timm_weights``: smp asks timm for the pretrained weights that ``encoder``'s tag names.
    """
    import segmentation_models_pytorch as smp

    cls = getattr(smp, SMP_CLASSES[model])
    extra = {} if act is None else {"act_layer": activation_layer(act, act_kwargs)}
    return cls(
        encoder_name=f"tu-{encoder}", encoder_weights=True if timm_weights else None, classes=num_classes, **extra
    )


def probe_segmentation(model: str, encoder: str, act: str, act_kwargs: Mapping[str, Any], image_size: int) -> int:
    """Build ``model`` on the meta device (no memory, no weights) and run it at ``image_size``.

    Finds the encoders smp or timm cannot use here (no ``act_layer`` argument, no dilation for
    DeepLabV3+'s output stride 16, an input size fixed by the encoder, ...) before anything real is
    built. Returns the smallest training batch the model takes at this size (BatchNorm needs more than
    one value per channel: 2 when a feature map shrinks to 1 x 1, as DeepLabV3+'s image pooling always does).
    Results are remembered, so :func:`build_model` after :func:`check_model_options` probes once.
    """
    key = (model, encoder, act, repr(sorted(act_kwargs.items())), image_size)
    if key not in _PROBED:
        _PROBED[key] = _run_probe(model, encoder, act, act_kwargs, image_size)
    return _PROBED[key]


_PROBED: dict[tuple, int] = {}


def _run_probe(model: str, encoder: str, act: str, act_kwargs: Mapping[str, Any], image_size: int) -> int:
    where = f"--encoder {encoder!r} with --model {model}"
    try:
        with torch.device("meta"):
            net = _smp_model(model, encoder, 2, act, act_kwargs)
            net.eval()
            net(torch.empty(1, 3, image_size, image_size))
    except Exception as exc:
        if is_meta_limitation(exc):
            return 1  # the meta device cannot run something here; the real build will tell
        raise FinetuneError(_encoder_problem(where, encoder, exc)) from None
    try:
        with torch.device("meta"):
            net.train()
            net(torch.empty(1, 3, image_size, image_size))
    except Exception as exc:
        return 2 if "more than 1 value per channel" in str(exc) else 1
    return 1


def is_meta_limitation(exc: Exception) -> bool:
    """True for an error of the meta device itself (no data: ``.item()``, an operator without a meta
    kernel), which says nothing about the model; shape and argument errors are the model's own."""
    return isinstance(exc, NotImplementedError) or re.search(r"\bmeta\b", str(exc), re.IGNORECASE) is not None


def _encoder_problem(where: str, encoder: str, exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    others = ", ".join(e for e in SUGGESTED_ENCODERS if e != encoder)
    if isinstance(exc, TypeError) and "act_layer" in text:
        return (
            f"{where}: timm's {encoder} takes no act_layer argument, so its activations cannot be chosen; "
            f"use an encoder that takes one, e.g. {others}"
        )
    if isinstance(exc, TypeError) and "output_stride" in text:
        return (
            f"{where}: timm's {encoder} cannot be dilated to the output stride 16 that DeepLabV3+ needs; "
            f"use --model unet, or an encoder such as {others}"
        )
    if "downsampling pattern" in text:
        return (
            f"{where}: smp cannot take features from timm's {encoder} (its stages do not halve the "
            f"resolution step by step); use a convolutional encoder such as {others}"
        )
    return f"{where} does not work ({type(exc).__name__}: {text}); use an encoder such as {others}"


def build_segmentation(
    model: str, encoder: str, num_classes: int, act: str, act_kwargs: Mapping[str, Any]
) -> nn.Module:
    """The real smp model: encoder built with ``act_layer``, then the decoder's activations swapped."""
    try:
        net = _smp_model(model, encoder, num_classes, act, act_kwargs)
    except Exception as exc:  # what the meta-device probe could not try
        raise FinetuneError(_encoder_problem(f"--encoder {encoder!r} with --model {model}", encoder, exc)) from exc
    return swap_remaining(net, act, act_kwargs)


def build_pretrained_segmentation(model: str, encoder: str, num_classes: int, pretrained: Pretrained) -> nn.Module:
    """The smp model with the encoder's own activations and ``pretrained``'s weights loaded (no swap yet).

    A timm name is fetched and loaded by timm (strictly, the classifier left out); a file goes to the
    whole model or to the encoder, whichever its keys match (see :mod:`.state_dicts`).
    """
    where = f"--encoder {encoder!r} with --model {model}"
    if pretrained.kind == "timm":
        assert pretrained.name is not None
        try:  # the architecture was probed without weights: what fails here is fetching or loading them
            net = _smp_model(model, pretrained.name, num_classes, None, {}, timm_weights=True)
        except Exception as exc:
            raise fetch_failed(pretrained, "timm", exc) from exc
        pretrained.sha256 = pretrained.cached_file_sha256()
        count = len(net.encoder.model.state_dict())
        pretrained.loaded = {"loaded_into": "the encoder", "loaded_by": "timm", "tensors_in_target": count}
        return net
    try:
        net = _smp_model(model, encoder, num_classes, None, {})
    except Exception as exc:
        raise FinetuneError(_encoder_problem(where, encoder, exc)) from exc
    arch = encoder.split(".", 1)[0]
    load_weights(
        pretrained,
        [
            Target(WHOLE_MODEL, net, ("", "model.")),
            Target(f"the encoder (timm {arch})", net.encoder.model, ENCODER_PREFIXES),
        ],
    )
    return net
