"""The ``digits`` task: srelu.txt's CNN (§IV-B2) on scikit-learn's 8 x 8 handwritten digits.

1797 grey images of 10 classes (``sklearn.datasets.load_digits``, shipped with scikit-learn, nothing
downloaded), pixel values 0..16 scaled to [0, 1]; a stratified 80/20 split per seed. The CNN is the
paper's with ``padding=1`` (8 -> 4 -> 2 after the two pools), trained with Adam (lr 1e-3, batch 128) on
cross-entropy; precision, recall and F1 are macro averages over the ten classes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ...baselines import activation_layer
from .classification import argmax, cross_entropy_sum
from .networks import small_cnn
from .tensor_runs import Objective, TensorSplit, fixed_network_task, make_run
from .training import seeded_build, stratified_split

if TYPE_CHECKING:
    from . import CompareTask

NAME = "digits"
NUM_CLASSES = 10
IMAGE_SIZE = 8
#: load_digits' pixels are counts of 0..16 (4 x 4 blocks of a 32 x 32 bitmap).
PIXEL_MAX = 16.0
#: 1437 training images make 12 batches an epoch. With ReLU (seed 0) test accuracy passes 0.97 around
#: epoch 15 and the test loss still falls until about epoch 30; 30 epochs (360 Adam steps) take about
#: 8 seconds per ReLU run on a 2-core CPU. (srelu.txt's 10 epochs were on MNIST: 4690 steps.)
DEFAULT_EPOCHS = 30
DESCRIPTION = (
    "digits (scikit-learn 8x8, 1797 images, 10 classes, pixels / 16), stratified 80/20 split per seed; "
    "srelu.txt CNN (conv32-pool-conv64-pool, padding 1, 2x dense 512, dropout 0.3); Adam lr 1e-3, batch 128, "
    "cross-entropy; macro precision/recall/F1"
)


@lru_cache(maxsize=1)
def _dataset() -> tuple[np.ndarray, np.ndarray]:
    """Images float32 [1797, 1, 8, 8] in [0, 1] and labels int64 [1797]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (np.asarray(data.images, dtype=np.float32) / PIXEL_MAX)[:, None]
    return images, np.asarray(data.target, dtype=np.int64)


def load_split(seed: int) -> TensorSplit:
    """The seed's stratified 80/20 split."""
    images, labels = _dataset()
    train, test = stratified_split(labels, seed)
    return TensorSplit(
        x_train=torch.from_numpy(images[train]),
        y_train=torch.from_numpy(labels[train]),
        x_test=torch.from_numpy(images[test]),
        y_test=torch.from_numpy(labels[test]),
    )


def build_model(act: str, seed: int) -> nn.Module:
    """The CNN with ``act``, initialised from ``seed`` alone (the same weights for every activation)."""
    return seeded_build(seed, lambda: small_cnn(1, IMAGE_SIZE, NUM_CLASSES, activation_layer(act)))


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, labels)


OBJECTIVE = Objective(loss=_cross_entropy, loss_sum=cross_entropy_sum, predict=argmax, average="macro")


run = make_run(load_split, build_model, OBJECTIVE)


def make_task(model: str | None) -> CompareTask:
    """The task's :class:`~actplug.compare.tasks.CompareTask`; its network is fixed, so no ``--model``."""
    return fixed_network_task(NAME, DEFAULT_EPOCHS, DESCRIPTION, run, "srelu.txt's CNN", model)
