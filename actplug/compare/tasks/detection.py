"""The ``shapes-det`` task: object detection of the generated shapes (3 classes: circle, square, triangle).

Default model torchvision's SSDLite320 (MobileNetV3-Large, no weights) at 128 x 128 pixels, 64 training
and 32 test images, batch 8, AdamW (lr 1e-3, weight decay 1e-4) on SSD's own loss (box regression +
classification with hard-negative mining). ``--model ssd300_vgg16bn`` (smu.txt's detector) runs at 300
pixels, its smallest sensible size (it cannot take less than 268). Metrics (torchmetrics' COCO mAP via
:mod:`actplug.finetune.metrics`): ``map`` (IoU 0.50:0.95, the main one), ``map_50``, ``map_75``.

Test loss: SSD computes its loss only in training mode, and a training-mode forward would both
normalise with the batch's statistics and update BatchNorm's running statistics with test images. So the
test loss is SSD's training objective computed on the test images with every submodule in evaluation
mode (BatchNorm uses and keeps its running statistics, no dropout, no random resize) and only the SSD
wrapper in training mode (which makes it return losses): the loss of the very network that is evaluated.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import CompareError
from . import shapes
from .training import Evaluation, check_run_args, fit, ordered_loader, seeded_loader

if TYPE_CHECKING:
    from . import CompareTask

NAME = "shapes-det"
MAIN_METRIC = "map"
METRICS = ("map", "map_50", "map_75")
#: Each model's default image size: SSDLite at a CPU-friendly 128; SSD300 at its designed 300.
MODELS = {"ssdlite320": 128, "ssd300_vgg16bn": 300}
DEFAULT_MODEL = "ssdlite320"
TRAIN_IMAGES = 64
TEST_IMAGES = 32
BATCH_SIZE = 8
#: SSD from scratch learns slowly: with ReLU (seed 0) SSDLite's test mAP stays near 0 for some 25 epochs
#: and reaches about 0.15 (mAP@50 0.33) at 40; 40 epochs (320 AdamW steps) take about two minutes per run
#: on a CPU. Fewer epochs would compare activations on untrained detectors.
DEFAULT_EPOCHS = 40


def parse_model(model: str | None) -> shapes.ShapesModel:
    """``--model`` for shapes-det: "ssdlite320" or "ssd300_vgg16bn" (no encoder)."""
    text = model if model is not None else DEFAULT_MODEL
    name, sep, _ = text.partition(":")
    name = name.strip().lower()
    if name not in MODELS:
        import difflib

        close = difflib.get_close_matches(name, list(MODELS), n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        segmentation = " (a segmentation model: use --task shapes-seg)" if name in ("unet", "deeplabv3plus") else ""
        raise CompareError(
            f"unknown shapes-det --model {text!r}{segmentation}.{hint} Choose one of {', '.join(MODELS)}"
        )
    if sep:
        raise CompareError(
            f"--model {text!r}: the detection models have a fixed backbone and take no ':ENCODER'; write --model {name}"
        )
    return shapes.ShapesModel("detection", name, None, MODELS[name])


@contextmanager
def loss_mode(model: nn.Module) -> Iterator[nn.Module]:
    """SSD returning its losses while every submodule behaves as in evaluation (see the module docstring)."""
    was_training = model.training
    model.eval()
    model.training = True  # only the wrapper: it decides between losses and detections
    try:
        yield model
    finally:
        model.train(was_training)


def _on(device: torch.device, batch: Any) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, targets = batch
    return [i.to(device) for i in images], [{k: v.to(device) for k, v in t.items()} for t in targets]


@torch.no_grad()
def _evaluate(model: nn.Module, loader: DataLoader, tracker: Any, device: torch.device) -> Evaluation:
    model.eval()
    tracker.reset()
    total, count = 0.0, 0
    for batch in loader:
        images, targets = _on(device, batch)
        with loss_mode(model):
            losses = model(images, targets)
        total += float(sum(losses.values())) * len(images)
        count += len(images)
        tracker.update(model(images), targets)
    results = tracker.compute()
    return Evaluation(loss=total / count, metrics={name: float(results[name]) for name in METRICS})


def run(
    act: str,
    seed: int,
    epochs: int,
    device: torch.device | str = "cpu",
    *,
    model: str | None = None,
    image_size: int | None = None,
    train_images: int = TRAIN_IMAGES,
    test_images: int = TEST_IMAGES,
    batch_size: int = BATCH_SIZE,
    lr: float = shapes.LR,
    weight_decay: float = shapes.WEIGHT_DECAY,
) -> dict[str, Any]:
    """Train and test one (activation, seed) run; returns ``{"metrics", "history"}`` (see the contract).

    ``image_size`` None is the model's default (:data:`MODELS`).
    """
    from actplug.finetune import data
    from actplug.finetune.metrics import DetectionMetrics

    check_run_args(act, seed, epochs)
    choice = parse_model(model)
    size = choice.image_size if image_size is None else image_size
    shapes.check_options(choice, size, batch_size, train_images, test_images)
    device = torch.device(device)
    datasets = shapes.build_data("detection", seed, size, train_images, test_images)
    net = shapes.build_model(choice, act, seed, datasets.num_classes, size).to(device)
    optimizer = shapes.optimizer_for(net, lr, weight_decay)
    train_loader = seeded_loader(datasets.train, batch_size, seed, collate_fn=data.collate_detection, drop_last=True)
    test_loader = ordered_loader(datasets.val, batch_size, collate_fn=data.collate_detection)
    tracker = DetectionMetrics().to(device)

    def step_loss(m: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        images, targets = _on(device, batch)
        return sum(m(images, targets).values()), len(images)

    return fit(
        net,
        optimizer,
        train_loader,
        step_loss,
        lambda m: _evaluate(m, test_loader, tracker, device),
        epochs=epochs,
        main_metric=MAIN_METRIC,
        before_epoch=datasets.train.set_epoch,
    )


def make_task(model: str | None) -> CompareTask:
    """The shapes-det :class:`~actplug.compare.tasks.CompareTask` for ``--model`` (checked here, cheaply)."""
    import functools

    from . import CompareTask

    choice = parse_model(model)
    shapes.check_options(choice, choice.image_size, BATCH_SIZE, TRAIN_IMAGES, TEST_IMAGES)
    size = choice.image_size
    description = (
        f"shapes-det (generated shapes, 3 classes, {size}x{size}, {TRAIN_IMAGES} train / {TEST_IMAGES} test images "
        f"per seed); {choice.model} from scratch; AdamW lr {shapes.LR:g}, wd {shapes.WEIGHT_DECAY:g}, "
        f"batch {BATCH_SIZE}, SSD loss; COCO mAP"
    )
    return CompareTask(
        NAME, MAIN_METRIC, METRICS, DEFAULT_EPOCHS, description, functools.partial(run, model=choice.model)
    )
