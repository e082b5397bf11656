"""The ``shapes-seg`` task: semantic segmentation of the generated shapes (background + 3 classes).

Default model U-Net on a timm ResNet-18 encoder at 64 x 64 pixels, 64 training and 32 test images,
batch 8, AdamW (lr 1e-3, weight decay 1e-4), cross-entropy; small enough for a CPU. ``--model`` takes
"unet" or "deeplabv3plus", optionally with a timm encoder: "unet:resnet34", "deeplabv3plus:efficientnet_b0".
Metrics (torchmetrics, via :mod:`actplug.finetune.metrics`): mIoU (the main one) and pixel accuracy on
the test split; the test loss is the mean pixel cross-entropy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import CompareError
from . import shapes
from .training import Evaluation, check_run_args, fit, ordered_loader, seeded_loader

if TYPE_CHECKING:
    from . import CompareTask

NAME = "shapes-seg"
MAIN_METRIC = "miou"
METRICS = ("miou", "pixel_acc")
MODELS = ("unet", "deeplabv3plus")
DEFAULT_MODEL = "unet"
DEFAULT_ENCODER = "resnet18"
IMAGE_SIZE = 64
TRAIN_IMAGES = 64
TEST_IMAGES = 32
BATCH_SIZE = 8
#: 8 batches an epoch; in 15 epochs (120 AdamW steps) U-Net/ResNet-18 goes from mIoU 0.24 after the first
#: epoch to about 0.35 (ReLU, seed 0; pixel accuracy 0.90), about two minutes per run on a CPU; it is still
#: improving there, so --epochs can be raised for finer differences.
DEFAULT_EPOCHS = 15


def parse_model(model: str | None) -> shapes.ShapesModel:
    """``--model`` for shapes-seg: "unet", "deeplabv3plus", or either with ":ENCODER" (a timm name)."""
    text = model if model is not None else f"{DEFAULT_MODEL}:{DEFAULT_ENCODER}"
    name, sep, encoder = text.partition(":")
    name, encoder = name.strip().lower(), encoder.strip()
    if name not in MODELS:
        import difflib

        close = difflib.get_close_matches(name, MODELS, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        detection = " (a detection model: use --task shapes-det)" if name in ("ssdlite320", "ssd300_vgg16bn") else ""
        raise CompareError(
            f"unknown shapes-seg --model {text!r}{detection}.{hint} Write unet or deeplabv3plus, optionally with a "
            "timm encoder: unet:resnet34"
        )
    if sep and not encoder:
        raise CompareError(f"--model {text!r} has an empty encoder; write {name}:ENCODER (a timm name) or just {name}")
    return shapes.ShapesModel("segmentation", name, encoder or DEFAULT_ENCODER, IMAGE_SIZE)


@torch.no_grad()
def _evaluate(model: nn.Module, loader: DataLoader, tracker: Any, device: torch.device, ignore: int) -> Evaluation:
    model.eval()
    tracker.reset()
    total, pixels = 0.0, 0
    for images, masks in loader:
        images, masks = images.to(device), masks.to(device)
        logits = model(images)
        tracker.update(logits, masks)
        total += float(nn.functional.cross_entropy(logits, masks, ignore_index=ignore, reduction="sum"))
        pixels += int((masks != ignore).sum())
    results = tracker.compute()
    return Evaluation(loss=total / max(pixels, 1), metrics={name: float(results[name]) for name in METRICS})


def run(
    act: str,
    seed: int,
    epochs: int,
    device: torch.device | str = "cpu",
    *,
    model: str | None = None,
    image_size: int = IMAGE_SIZE,
    train_images: int = TRAIN_IMAGES,
    test_images: int = TEST_IMAGES,
    batch_size: int = BATCH_SIZE,
    lr: float = shapes.LR,
    weight_decay: float = shapes.WEIGHT_DECAY,
) -> dict[str, Any]:
    """Train and test one (activation, seed) run; returns ``{"metrics", "history"}`` (see the contract)."""
    from actplug.finetune import data
    from actplug.finetune.metrics import SegmentationMetrics

    check_run_args(act, seed, epochs)
    choice = parse_model(model)
    shapes.check_options(choice, image_size, batch_size, train_images, test_images)
    device = torch.device(device)
    datasets = shapes.build_data("segmentation", seed, image_size, train_images, test_images)
    net = shapes.build_model(choice, act, seed, datasets.num_classes, image_size).to(device)
    optimizer = shapes.optimizer_for(net, lr, weight_decay)
    train_loader = seeded_loader(datasets.train, batch_size, seed, collate_fn=data.collate_segmentation, drop_last=True)
    test_loader = ordered_loader(datasets.val, batch_size, collate_fn=data.collate_segmentation)
    tracker = SegmentationMetrics(datasets.num_classes, ignore_index=datasets.ignore_index).to(device)
    ignore = datasets.ignore_index

    def step_loss(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        images, masks = batch[0].to(device), batch[1].to(device)
        return nn.functional.cross_entropy(m(images), masks, ignore_index=ignore), len(images)

    return fit(
        net,
        optimizer,
        train_loader,
        step_loss,
        lambda m: _evaluate(m, test_loader, tracker, device, ignore),
        epochs=epochs,
        main_metric=MAIN_METRIC,
        before_epoch=datasets.train.set_epoch,
    )


def make_task(model: str | None) -> CompareTask:
    """The shapes-seg :class:`~actplug.compare.tasks.CompareTask` for ``--model`` (checked here, cheaply)."""
    import functools

    from . import CompareTask

    choice = parse_model(model)
    shapes.check_options(choice, IMAGE_SIZE, BATCH_SIZE, TRAIN_IMAGES, TEST_IMAGES)
    description = (
        f"shapes-seg (generated shapes, 4 classes, {IMAGE_SIZE}x{IMAGE_SIZE}, {TRAIN_IMAGES} train / {TEST_IMAGES} "
        f"test images per seed); {choice.label} from scratch; AdamW lr {shapes.LR:g}, wd {shapes.WEIGHT_DECAY:g}, "
        f"batch {BATCH_SIZE}, cross-entropy"
    )
    return CompareTask(
        NAME, MAIN_METRIC, METRICS, DEFAULT_EPOCHS, description, functools.partial(run, model=choice.label)
    )
