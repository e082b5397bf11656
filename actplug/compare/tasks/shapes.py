"""What the ``shapes-seg`` and ``shapes-det`` tasks share: ``--model`` parsing, checks, data and model building.

The data are the fine-tuning recipes' generated shapes (:mod:`actplug.finetune.data`: circles, squares
and triangles on textured backgrounds, rendered from the seed, nothing on disk), so a seed fixes both
splits, and different seeds give different images. The train split is augmented as the recipes do it
(colour jitter and flips drawn from (seed, epoch, index)), the test split never. The models are the
recipes' (:func:`actplug.finetune.models.build_model`), trained here by a plain single-process loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import CompareError
from .training import positive_int, require_rng_neutral, seeded_build

#: Weight decay of the fine-tuning recipes (AdamW); activation parameters never decay (actplug.param_groups).
WEIGHT_DECAY = 1e-4
LR = 1e-3


@dataclass(frozen=True)
class ShapesModel:
    """A checked ``--model``: the recipe task, the model, its timm encoder (segmentation) and its image size."""

    task: str  # "segmentation" or "detection"
    model: str
    encoder: str | None
    image_size: int

    @property
    def label(self) -> str:
        """How the model is written in ``--model`` and in the description."""
        return f"{self.model}:{self.encoder}" if self.encoder else self.model


def check_options(choice: ShapesModel, image_size: int, batch_size: int, train_images: int, test_images: int) -> None:
    """CompareError for sizes the model cannot take, or fewer training images than one batch."""
    from actplug.finetune import models
    from actplug.finetune.errors import FinetuneError

    positive_int("image_size", image_size)
    positive_int("test_images", test_images)
    positive_int("train_images", train_images)
    positive_int("batch_size", batch_size)
    try:
        # fork_rng: the meta-device probe of a segmentation model must not move the global RNG (it runs once
        # per model and size, so it would otherwise shift the first run of a process only).
        with torch.random.fork_rng(devices=[]):
            models.check_model_options(
                choice.task, choice.model, choice.encoder or "resnet34", "relu", None, image_size
            )
            least = models.min_train_batch_size(
                choice.task, choice.model, encoder=choice.encoder or "resnet34", image_size=image_size
            )
    except FinetuneError as exc:
        raise CompareError(f"--model {choice.label}: {exc}") from None
    if batch_size < least:
        raise CompareError(
            f"batch_size {batch_size} is too small for {choice.model}: its BatchNorm layers need at least {least} "
            f"images per training batch; use batch_size {least} or more"
        )
    if train_images < batch_size:
        raise CompareError(
            f"train_images {train_images} is fewer than one batch of {batch_size} (the last incomplete batch is "
            "dropped); use more training images or a smaller batch_size"
        )


def build_data(task: str, seed: int, image_size: int, train_images: int, test_images: int) -> Any:
    """The seed's generated train (augmented) and test splits (``actplug.finetune.data.Datasets``)."""
    from actplug.finetune import data

    return data.build_datasets(
        data.DataSpec("synthetic", None),
        task,
        image_size,
        seed,
        synthetic_train=train_images,
        synthetic_val=test_images,
    )


def build_model(choice: ShapesModel, act: str, seed: int, num_classes: int, image_size: int) -> nn.Module:
    """The recipe's model with ``act`` in every activation slot, built right after ``torch.manual_seed(seed)``.

    The recipes' builders create the activations themselves, so an activation that draws random numbers
    when built is refused (:func:`~.training.require_rng_neutral`) instead of silently unpairing the runs.
    """
    from actplug.finetune import models

    require_rng_neutral(act)
    encoder = choice.encoder or "resnet34"
    with torch.random.fork_rng(devices=[]):  # the builder's own checks (a cached meta-device probe) first
        models.check_model_options(choice.task, choice.model, encoder, act, None, image_size)
    return seeded_build(
        seed,
        lambda: models.build_model(
            choice.task,
            choice.model,
            num_classes=num_classes,
            act=act,
            encoder=encoder,
            image_size=image_size,
        ),
    )


def optimizer_for(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW as in the recipes: no decay for biases, norms and activation parameters."""
    import actplug

    return torch.optim.AdamW(actplug.param_groups(model, weight_decay=weight_decay, act_weight_decay=0.0), lr=lr)
