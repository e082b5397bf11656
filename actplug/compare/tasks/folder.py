"""The ``folder:PATH`` task: image classification on a folder of class sub-folders with a timm model.

Images are read with ``torchvision.datasets.ImageFolder`` (RGB), resized to 64 x 64 (bilinear,
antialiased) and normalised with ImageNet's mean and std; they are decoded once per process and kept in
memory as uint8, so every run of a comparison reuses them. Splits: the folder's own train/ and val/, or
a stratified 80/20 split per seed. Model: any timm model (default "resnet18"), built from scratch
(``pretrained=False``) with ``num_classes`` from the folder and the compared activation as ``act_layer``
(and in any activation slot the model builds without it). AdamW (lr 1e-3, weight decay 1e-4, none on
biases, norms and activation parameters), batch 32, cross-entropy; no augmentation. Metrics: accuracy
and macro precision, recall and F1 over the classes (scikit-learn).
"""

from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from ...baselines import activation_layer
from ...finetune.models_segmentation import is_meta_limitation
from ..errors import CompareError
from .classification import MAIN_METRIC, METRICS, argmax, cross_entropy_sum, evaluate_classifier
from .folder_checks import FolderLayout, inspect_folder
from .training import (
    Evaluation,
    check_run_args,
    fit,
    positive_int,
    seeded_build,
    seeded_loader,
    stratified_split,
)

if TYPE_CHECKING:
    from . import CompareTask

NAME = "folder"
DEFAULT_MODEL = "resnet18"
IMAGE_SIZE = 64
BATCH_SIZE = 32
LR = 1e-3
WEIGHT_DECAY = 1e-4
#: A from-scratch model on a small folder: 20 epochs is a start, not a recipe; large sets want --epochs.
DEFAULT_EPOCHS = 20
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Test images per forward pass (evaluation only: no effect on the results).
EVAL_BATCH = 256
#: Timm models suggested when the given one cannot be used here.
SUGGESTED = ("resnet18", "resnet34", "efficientnet_b0", "mobilenetv3_small_100", "regnety_002")


class _Marker(nn.Identity):
    """Stands in for the activation when probing which slots a timm model fills from ``act_layer``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()


def check_timm_model(name: str, num_classes: int, image_size: int) -> str:
    """CompareError unless timm builds ``name`` with ``act_layer`` and runs it on ``image_size`` images.

    Cheap: the model is built and run on the meta device (no memory, no weights).
    """
    import timm

    from actplug.integrations.swap import count_activations, default_replace_types

    base = name.split(".", 1)[0]
    known = timm.list_models()
    if base not in known:
        close = difflib.get_close_matches(base.lower(), known, n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise CompareError(
            f"--model {name!r} is not a timm model.{hint} Give a timm model name (timm.list_models()), "
            f"e.g. {', '.join(SUGGESTED)}"
        )
    others = ", ".join(s for s in SUGGESTED if s != base)
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            net = timm.create_model(base, pretrained=False, num_classes=num_classes, act_layer=_Marker)
    except TypeError as exc:
        if "act_layer" in str(exc):
            raise CompareError(
                f"--model {name!r}: timm's {base} takes no act_layer argument, so its activations cannot be chosen; "
                f"use a model that takes one, e.g. {others}"
            ) from None
        raise CompareError(f"--model {name!r} cannot be built by timm ({exc}); use e.g. {others}") from None
    except Exception as exc:
        raise CompareError(
            f"--model {name!r} cannot be built by timm ({type(exc).__name__}: {exc}); use e.g. {others}"
        ) from None
    markers = sum(isinstance(m, _Marker) for m in net.modules())
    if markers == 0 and not count_activations(net, default_replace_types()):
        raise CompareError(
            f"--model {name!r}: timm's {base} has no activation module that the compared activation could replace; "
            f"use a model such as {others}"
        )
    try:
        net.eval()
        with torch.device("meta"):
            net(torch.empty(1, 3, image_size, image_size))
    except Exception as exc:
        if not is_meta_limitation(exc):  # the meta device's own limits say nothing about the size
            raise CompareError(
                f"--model {name!r} cannot take {image_size}x{image_size} images ({type(exc).__name__}: {exc}); "
                f"use a convolutional model such as {others}"
            ) from None
    return base


@functools.lru_cache(maxsize=2)
def _decoded(directory: Path, classes: tuple[str, ...], image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of ``directory`` (ImageFolder's order) as uint8 [N, 3, S, S], and the labels int64 [N]."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    resize = v2.Compose([v2.ToImage(), v2.Resize((image_size, image_size), antialias=True)])
    dataset = ImageFolder(str(directory), transform=resize)
    if tuple(dataset.classes) != classes:  # the folder changed since it was checked
        raise CompareError(
            f"the classes of {str(directory)!r} changed since the task was checked ({', '.join(dataset.classes)}); "
            "run the command again"
        )
    images = torch.empty(len(dataset), 3, image_size, image_size, dtype=torch.uint8)
    for i in range(len(dataset)):
        image, _ = dataset[i]
        images[i] = image.as_subclass(torch.Tensor)
    return images, torch.tensor(dataset.targets, dtype=torch.int64)


def load_split(layout: FolderLayout, seed: int, image_size: int = IMAGE_SIZE) -> tuple[TensorDataset, TensorDataset]:
    """Train and test sets of uint8 images and labels: the folder's train/ and val/, or the seed's 80/20 split."""
    if layout.val_dir is not None:
        train = _decoded(layout.train_dir, layout.classes, image_size)
        test = _decoded(layout.val_dir, layout.classes, image_size)
        return TensorDataset(*train), TensorDataset(*test)
    images, labels = _decoded(layout.train_dir, layout.classes, image_size)
    train_idx, test_idx = (torch.from_numpy(i) for i in stratified_split(labels.numpy(), seed))
    return TensorDataset(images[train_idx], labels[train_idx]), TensorDataset(images[test_idx], labels[test_idx])


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, S, S] -> float32 scaled to [0, 1] and normalised with ImageNet's mean and std."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def build_model(model: str, act: str, seed: int, num_classes: int) -> nn.Module:
    """timm's ``model`` from scratch with ``act``, built right after ``torch.manual_seed(seed)``.

    ``act_layer`` is an RNG-neutral factory (:func:`actplug.baselines.activation_layer`); activation modules the
    model builds without ``act_layer`` are swapped afterwards (without touching the RNG either).
    """
    import timm

    from actplug.finetune.models_act import swap_remaining

    def build() -> nn.Module:
        net = timm.create_model(model, pretrained=False, num_classes=num_classes, act_layer=activation_layer(act))
        with torch.random.fork_rng(devices=[]):
            return swap_remaining(net, act, {})

    return seeded_build(seed, build)


def run(
    act: str,
    seed: int,
    epochs: int,
    device: torch.device | str = "cpu",
    *,
    layout: FolderLayout,
    model: str = DEFAULT_MODEL,
    image_size: int = IMAGE_SIZE,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    weight_decay: float = WEIGHT_DECAY,
) -> dict[str, Any]:
    """Train and test one (activation, seed) run on the checked folder ``layout``; the run's record."""
    import actplug

    check_run_args(act, seed, epochs)
    positive_int("image_size", image_size)
    positive_int("batch_size", batch_size)
    device = torch.device(device)
    train, test = load_split(layout, seed, image_size)
    net = build_model(model, act, seed, len(layout.classes)).to(device)
    optimizer = torch.optim.AdamW(actplug.param_groups(net, weight_decay=weight_decay, act_weight_decay=0.0), lr=lr)
    # A last training batch of a single image would break BatchNorm (one value per channel after pooling).
    loader = seeded_loader(train, batch_size, seed, drop_last=len(train) % batch_size == 1)

    def step_loss(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        images, labels = normalise(batch[0].to(device)), batch[1].to(device)
        return nn.functional.cross_entropy(m(images), labels), len(labels)

    def test_batches():
        images, labels = test.tensors
        for start in range(0, len(labels), EVAL_BATCH):
            yield normalise(images[start : start + EVAL_BATCH]), labels[start : start + EVAL_BATCH]

    def evaluate(m: nn.Module) -> Evaluation:
        return evaluate_classifier(m, test_batches(), cross_entropy_sum, argmax, device, average="macro")

    return fit(net, optimizer, loader, step_loss, evaluate, epochs=epochs, main_metric=MAIN_METRIC)


def make_task(path: Path, model: str | None) -> CompareTask:
    """The folder :class:`~actplug.compare.tasks.CompareTask`: the folder, its images and the model checked here."""
    from . import CompareTask

    layout = inspect_folder(path)
    name = check_timm_model(model if model is not None else DEFAULT_MODEL, len(layout.classes), IMAGE_SIZE)
    split = "its train/ and val/" if layout.given_split else "stratified 80/20 split per seed"
    description = (
        f"folder {layout.root} ({len(layout.classes)} classes, {layout.train_count} train / {layout.test_count} test "
        f"images, {split}, resized to {IMAGE_SIZE}x{IMAGE_SIZE}); timm {name} from scratch; AdamW lr {LR:g}, "
        f"wd {WEIGHT_DECAY:g}, batch {BATCH_SIZE}, cross-entropy; macro precision/recall/F1"
    )
    return CompareTask(
        NAME, MAIN_METRIC, METRICS, DEFAULT_EPOCHS, description, functools.partial(run, layout=layout, model=name)
    )
