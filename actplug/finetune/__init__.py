"""Fine-tuning recipes: detection (SSD300 VGG16-BN, SSDLite320) and segmentation (U-Net, DeepLabV3+)
with any activation, on one process or many through ``accelerate launch``.

``actplug finetune segmentation|detection ...`` (or ``python -m actplug finetune ...``) runs
:func:`run` on a :class:`FinetuneConfig`. Layout: ``config`` (options), ``data`` (VOC, Cityscapes
and generated shapes), ``models`` (torchvision and segmentation-models-pytorch builders with the
activation swapped in), ``metrics`` (torchmetrics mAP and mIoU), ``tasks`` (loss and evaluation per
task), ``schedule`` (warm-up and linear decay), ``checkpoints`` (per-epoch ``save_state``),
``outputs`` (metrics.json, history.csv, curves.png), ``loop`` (the accelerate loop), ``ranks`` (what
every process must agree on) and ``fsdp`` (FSDP2 with the activations' 0-dim parameters).
"""

from __future__ import annotations

from typing import Any

from .config import TASKS, FinetuneConfig
from .errors import FinetuneError

__all__ = ["TASKS", "FinetuneConfig", "FinetuneError", "run"]


def run(config: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune and evaluate as ``config`` says (see :func:`actplug.finetune.loop.run`)."""
    from .loop import run as run_loop  # torchvision, timm and smp load only when a run starts

    return run_loop(config)
