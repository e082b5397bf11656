"""Resize to S x S, the train augmentation of lpflu.txt §5.3, and conversion to the tensors the models take.

Samples are :mod:`.sample`'s ``(image, target)`` (a target may hold a mask, boxes, or both). torchvision's
v2 functional ops dispatch on the ``tv_tensors`` types, so the image, mask and boxes are resized and
flipped consistently by the same calls.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from .sample import Sample

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# lpflu.txt §5.3 names "random color space transformation and random horizontal flipping" without strengths;
# these are torchvision ColorJitter's usual moderate settings: each factor is drawn uniformly from
# [1 - s, 1 + s] (hue: a shift in [-s, s] of the hue circle) and the four are applied in a random order.
JITTER = {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.05}
FLIP_PROBABILITY = 0.5


def resize(image: tv_tensors.Image, target: dict[str, Any], size: int) -> Sample:
    """Resize to ``size`` x ``size``: the image bilinear (antialiased), the mask nearest, boxes scaled."""
    if tuple(image.shape[-2:]) == (size, size):
        return image, target
    out = dict(target)
    image = F.resize(image, [size, size], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    if "mask" in out:
        out["mask"] = F.resize(out["mask"], [size, size], interpolation=F.InterpolationMode.NEAREST)
    if "boxes" in out:
        out["boxes"] = F.resize(out["boxes"], [size, size])
    return image, out


def augment(
    image: tv_tensors.Image, target: dict[str, Any], generator: torch.Generator, jitter: dict[str, float] = JITTER
) -> Sample:
    """Colour jitter (image only) and a horizontal flip (image, mask and boxes together), all drawn from ``generator``.

    The same random numbers are drawn in the same order whatever they decide, so the stream, and so the
    augmentation, depends only on the generator's seed.
    """
    flip = bool(torch.rand((), generator=generator) < FLIP_PROBABILITY)
    u = torch.rand(4, generator=generator).tolist()
    order = torch.randperm(4, generator=generator).tolist()
    factors = [
        1.0 + jitter["brightness"] * (2 * u[0] - 1),
        1.0 + jitter["contrast"] * (2 * u[1] - 1),
        1.0 + jitter["saturation"] * (2 * u[2] - 1),
        jitter["hue"] * (2 * u[3] - 1),
    ]
    ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
    neutral = (1.0, 1.0, 1.0, 0.0)
    for i in order:
        if factors[i] != neutral[i]:
            image = ops[i](image, factors[i])
    out = dict(target)
    if flip:
        image = F.horizontal_flip(image)
        for key in ("mask", "boxes"):
            if key in out:
                out[key] = F.horizontal_flip(out[key])
    return image, out


def to_segmentation_item(image: tv_tensors.Image, target: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(image float32 [3, S, S] normalised with the ImageNet mean/std, mask int64 [S, S]) as plain tensors."""
    pixels = F.to_dtype(image, torch.float32, scale=True)
    pixels = F.normalize(pixels, list(IMAGENET_MEAN), list(IMAGENET_STD)).as_subclass(torch.Tensor)
    return pixels.contiguous(), target["mask"].as_subclass(torch.Tensor).to(torch.int64).contiguous()


def to_detection_item(image: tv_tensors.Image, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(image float32 [3, S, S] in [0, 1], target) as plain tensors; torchvision's SSD normalises images itself.

    target: "boxes" float32 [N, 4] XYXY pixels, "labels" int64 [N], "iscrowd" int64 [N] (1 = ignored by mAP).
    """
    pixels = F.to_dtype(image, torch.float32, scale=True).as_subclass(torch.Tensor).contiguous()
    boxes = target["boxes"].as_subclass(torch.Tensor).to(torch.float32).reshape(-1, 4).contiguous()
    return pixels, {
        "boxes": boxes,
        "labels": target["labels"].to(torch.int64).contiguous(),
        "iscrowd": target["iscrowd"].to(torch.int64).contiguous(),
    }
