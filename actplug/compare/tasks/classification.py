"""Classification metrics as srelu.txt reports them (accuracy, precision, recall, F1) and the test pass.

Computed with scikit-learn, never by hand. ``average="binary"`` scores the positive class only (WDBC:
malignant); ``average="macro"`` is the unweighted mean over the classes present in the test labels or
predictions (digits, image folders). A precision or recall whose denominator is zero (no sample
predicted, or none present, for a class) counts as 0, scikit-learn's ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from .training import Evaluation

#: What every classification task reports, and its main metric (per epoch in the history).
METRICS = ("accuracy", "precision", "recall", "f1")
MAIN_METRIC = "accuracy"


def classification_metrics(
    y_true: np.ndarray | list[int], y_pred: np.ndarray | list[int], *, average: str, pos_label: int = 1
) -> dict[str, float]:
    """``{"accuracy", "precision", "recall", "f1"}`` from scikit-learn; ``average`` "binary" or "macro"."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    if average not in ("binary", "macro"):
        raise ValueError(f"average must be 'binary' or 'macro', got {average!r}")
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, average=average, pos_label=pos_label, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_sum: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    predict: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    *,
    average: str,
) -> Evaluation:
    """Run ``model`` in evaluation mode over ``batches`` of (inputs, labels); mean loss and the metrics.

    ``loss_sum(logits, labels)`` gives the batch's summed loss, ``predict(logits)`` the class ids.
    """
    model.eval()
    total, count = 0.0, 0
    truths: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    for inputs, labels in batches:
        inputs, labels = inputs.to(device), labels.to(device)
        logits = model(inputs)
        total += float(loss_sum(logits, labels))
        count += len(labels)
        truths.append(labels.cpu().numpy().astype(np.int64))
        preds.append(predict(logits).cpu().numpy().astype(np.int64))
    if count == 0:
        raise ValueError("the test split is empty")
    metrics = classification_metrics(np.concatenate(truths), np.concatenate(preds), average=average)
    return Evaluation(loss=total / count, metrics=metrics)


def cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed softmax cross-entropy (multi-class)."""
    return nn.functional.cross_entropy(logits, labels, reduction="sum")


def argmax(logits: torch.Tensor) -> torch.Tensor:
    """The class with the largest logit."""
    return logits.argmax(dim=1)


def move(batch: Any, device: torch.device) -> Any:
    """A batch of tensors (or a tuple or list of them) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    return type(batch)(move(item, device) for item in batch)
