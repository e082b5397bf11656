"""Training a classifier on an in-memory split (WDBC, digits): srelu.txt's Adam, lr 1e-3, batch 128."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from ..errors import CompareError
from .classification import MAIN_METRIC, METRICS, evaluate_classifier
from .training import Evaluation, check_run_args, fit, positive_int, seeded_loader

#: srelu.txt §IV-C: Adam with a learning rate of 0.001, 128 samples per batch.
LR = 1e-3
BATCH_SIZE = 128
#: Test samples per forward pass (evaluation only: no effect on the results, only on memory).
EVAL_BATCH = 1024


@dataclass(frozen=True)
class TensorSplit:
    """Inputs and integer labels of the train and test splits (CPU tensors)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass(frozen=True)
class Objective:
    """How a classifier's logits become a loss and class ids.

    ``loss(logits, labels)``: the batch's mean loss (training); ``loss_sum``: its sum (test loss);
    ``predict(logits)``: class ids; ``average``: "binary" or "macro" for precision, recall and F1.
    """

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    loss_sum: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    predict: Callable[[torch.Tensor], torch.Tensor]
    average: str


def _test_batches(split: TensorSplit) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(split.y_test), EVAL_BATCH):
        yield split.x_test[start : start + EVAL_BATCH], split.y_test[start : start + EVAL_BATCH]


def run_tensor_classifier(
    model: nn.Module,
    split: TensorSplit,
    objective: Objective,
    *,
    seed: int,
    epochs: int,
    device: torch.device,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
) -> dict[str, Any]:
    """Train ``model`` with Adam on the train split (batches in the order of ``seed``), test after each epoch."""
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = seeded_loader(TensorDataset(split.x_train, split.y_train), batch_size, seed)

    def step_loss(net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        inputs, labels = batch[0].to(device), batch[1].to(device)
        return objective.loss(net(inputs), labels), len(labels)

    def evaluate(net: nn.Module) -> Evaluation:
        return evaluate_classifier(
            net, _test_batches(split), objective.loss_sum, objective.predict, device, average=objective.average
        )

    return fit(model, optimizer, loader, step_loss, evaluate, epochs=epochs, main_metric=MAIN_METRIC)


def make_run(
    load_split: Callable[[int], TensorSplit], build_model: Callable[[str, int], nn.Module], objective: Objective
) -> Callable[..., dict[str, Any]]:
    """The ``run(act, seed, epochs, device, *, batch_size, lr)`` of a task with a fixed network and split."""

    def run(
        act: str,
        seed: int,
        epochs: int,
        device: torch.device | str = "cpu",
        *,
        batch_size: int = BATCH_SIZE,
        lr: float = LR,
    ) -> dict[str, Any]:
        """Train and test one (activation, seed) run; returns ``{"metrics", "history"}`` (see the contract)."""
        check_run_args(act, seed, epochs)
        positive_int("batch_size", batch_size)
        split = load_split(seed)
        model = build_model(act, seed)
        return run_tensor_classifier(
            model, split, objective, seed=seed, epochs=epochs, device=torch.device(device), batch_size=batch_size, lr=lr
        )

    return run


def fixed_network_task(
    name: str,
    default_epochs: int,
    description: str,
    run: Callable[..., dict[str, Any]],
    network: str,
    model: str | None,
):
    """The :class:`~actplug.compare.tasks.CompareTask` of a task whose network is fixed, so no ``--model``."""
    from . import CompareTask

    if model is not None:
        raise CompareError(
            f"--model {model!r}: the {name} task always trains {network}; leave --model out "
            "(it chooses the model of shapes-seg, shapes-det and folder:PATH)"
        )
    return CompareTask(name, MAIN_METRIC, METRICS, default_epochs, description, run)
