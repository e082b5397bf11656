"""Reading image and label files into tensors (the files were verified up front by :mod:`.checks`)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F


def load_rgb(path: Path) -> tv_tensors.Image:
    """``path`` as an RGB uint8 image tensor [3, H, W] (greyscale, palette and RGBA files converted)."""
    with Image.open(path) as image:
        return tv_tensors.Image(F.pil_to_tensor(image.convert("RGB")))


def load_label(path: Path) -> torch.Tensor:
    """A single-channel label PNG (mode L or P) as its raw class indices, uint8 [H, W]; palette colours ignored."""
    with Image.open(path) as image:
        return F.pil_to_tensor(image)[0]
