"""srelu.txt's two networks (§IV-B), with the compared activation in every hidden layer.

The paper used Keras; here they are PyTorch modules with PyTorch's default initialisation. The
output layer gives logits: the sigmoid (WDBC) and softmax (digits) of the paper live in the losses
(``BCEWithLogitsLoss``, ``CrossEntropyLoss``), which is the same model, computed more stably.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

HIDDEN = 512
DROPOUT = 0.3


def feed_forward(in_features: int, out_features: int, act_layer: Callable[[], nn.Module]) -> nn.Sequential:
    """srelu.txt's FFNN: two hidden layers of 512 units, each followed by the activation and dropout 0.3."""
    return nn.Sequential(
        nn.Linear(in_features, HIDDEN),
        act_layer(),
        nn.Dropout(DROPOUT),
        nn.Linear(HIDDEN, HIDDEN),
        act_layer(),
        nn.Dropout(DROPOUT),
        nn.Linear(HIDDEN, out_features),
    )


def small_cnn(in_channels: int, image_size: int, num_classes: int, act_layer: Callable[[], nn.Module]) -> nn.Sequential:
    """srelu.txt's CNN, padded for small images: conv 32 3x3 + act + max-pool 2 + dropout 0.3, conv 64 3x3
    + act + max-pool 2 + dropout 0.3, then two dense layers of 512 with the activation and dropout 0.3,
    then the output layer. ``padding=1`` keeps each convolution's size, so 8 x 8 digits go 8 -> 4 -> 2
    (the paper's unpadded convolutions would leave nothing of an 8 x 8 image after the second pool).
    """
    if image_size % 4:
        raise ValueError(f"small_cnn pools twice by 2, so image_size must be a multiple of 4, got {image_size}")
    flat = 64 * (image_size // 4) ** 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, kernel_size=3, padding=1),
        act_layer(),
        nn.MaxPool2d(2),
        nn.Dropout(DROPOUT),
        nn.Conv2d(32, 64, kernel_size=3, padding=1),
        act_layer(),
        nn.MaxPool2d(2),
        nn.Dropout(DROPOUT),
        nn.Flatten(),
        nn.Linear(flat, HIDDEN),
        act_layer(),
        nn.Dropout(DROPOUT),
        nn.Linear(HIDDEN, HIDDEN),
        act_layer(),
        nn.Dropout(DROPOUT),
        nn.Linear(HIDDEN, num_classes),
    )
