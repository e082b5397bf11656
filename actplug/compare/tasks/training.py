"""What every compare task shares: paired seeding, RNG-neutral activations, the split and the epoch loop.

Paired runs (see the contract in :mod:`actplug.compare.tasks`): for a seed, every activation must see the
same split, the same initial weights of every layer that is not the activation, and the same batch
order. So the split comes from scikit-learn's ``train_test_split(random_state=seed)``, the batch order
from a ``torch.Generator`` seeded with the seed (never the global RNG), and the model is built right
after ``torch.manual_seed(seed)`` with activation modules that cannot move the global RNG: whatever an
activation draws at construction would shift every weight initialised after it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from actplug.baselines import TORCH_BASELINES, activation_class, make_activation
from actplug.registry import UnknownActivationError, registry

from ..errors import CompareError

#: Share of the data held out for testing when a task makes its own split (srelu.txt: 80/20).
TEST_FRACTION = 0.2


def check_run_args(act: str, seed: int, epochs: int) -> None:
    """CompareError for an unknown activation, a seed that is not a whole number >= 0, or epochs < 1."""
    if not isinstance(act, str) or not act.strip():
        raise CompareError(f"an activation name is needed, got {act!r}; run `actplug list` for the names")
    try:
        activation_class(act)
    except UnknownActivationError as exc:
        raise CompareError(f"{exc} PyTorch's baselines ({', '.join(TORCH_BASELINES)}) are accepted too.") from None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise CompareError(f"seed must be a whole number from 0 to 2**32 - 1, got {seed!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise CompareError(f"epochs must be a whole number >= 1, got {epochs!r}")


def positive_int(name: str, value: object, least: int = 1) -> int:
    """``value`` when it is a whole number >= ``least``; else CompareError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise CompareError(f"{name} must be a whole number >= {least}, got {value!r}")
    return value


def consumes_rng(act: str) -> bool:
    """True when building one ``act`` module moves the global (CPU) RNG."""
    before = torch.random.get_rng_state()
    try:
        make_activation(act)
        return not torch.equal(before, torch.random.get_rng_state())
    finally:
        torch.random.set_rng_state(before)


def require_rng_neutral(act: str) -> None:
    """CompareError when ``act`` draws from the global RNG at construction.

    For models built by other code (the fine-tuning recipes' builders), where the activation cannot be
    isolated with :func:`actplug.baselines.activation_layer`: such an activation would start from other initial weights
    than its paired runs, so the comparison would not be paired.
    """
    if consumes_rng(act):
        raise CompareError(
            f"activation {act!r} draws from torch's global random generator when it is built, so its runs "
            "would start from other initial weights than the other activations' (unpaired); initialise its "
            "parameters without randomness, or compare it on wdbc, digits or folder:PATH, which isolate it"
        )


def stratified_split(labels: Sequence[int] | np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: a stratified 80/20 split with scikit-learn, fixed by ``seed``."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    indices = np.arange(len(labels))
    train, test = train_test_split(indices, test_size=TEST_FRACTION, stratify=labels, random_state=seed)
    return np.asarray(train), np.asarray(test)


def seeded_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    *,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A shuffling training loader whose batch order depends on ``seed`` alone (its own generator).

    The generator is created once, so epoch ``e`` of every run with this seed gets the same order, whatever
    the model did with the global RNG (dropout, LPFLU's random slopes) in between.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=drop_last,
        collate_fn=collate_fn,
        num_workers=0,
        generator=torch.Generator().manual_seed(seed),
    )


def ordered_loader(
    dataset: Dataset, batch_size: int, *, collate_fn: Callable[[list[Any]], Any] | None = None
) -> DataLoader:
    """The test split in order. Its own generator: a DataLoader without one draws a seed from the global RNG
    each time it is iterated, which would make evaluation move the RNG that dropout uses next."""
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn, num_workers=0, generator=torch.Generator()
    )


def seeded_build(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` right after ``torch.manual_seed(seed)``: the initial weights depend on the seed alone."""
    torch.manual_seed(seed)
    return build()


def non_activation_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and buffers outside activation modules (what paired runs share at the start)."""
    act_types = (*(info.cls for info in registry), *TORCH_BASELINES.values())
    skip = {
        f"{name}.{key}" if name else key
        for name, module in model.named_modules()
        if isinstance(module, act_types)
        for key in module.state_dict()
    }
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k not in skip}


@dataclass(frozen=True)
class Evaluation:
    """Test-split results of one epoch: the mean test loss and every metric of the task."""

    loss: float
    metrics: dict[str, float]


#: One training step's loss: (model, batch) -> (mean loss of the batch, number of samples in it).
StepLoss = Callable[[nn.Module, Any], tuple[torch.Tensor, int]]


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: Iterable[Any],
    step_loss: StepLoss,
    evaluate: Callable[[nn.Module], Evaluation],
    *,
    epochs: int,
    main_metric: str,
    before_epoch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train for ``epochs`` and evaluate on the test split after each; returns the run's record.

    ``{"metrics": the last evaluation's metrics, "history": [{"epoch", "train_loss", "test_loss",
    main_metric}, ...]}``. ``train_loss`` is the epoch's mean loss per sample (each batch's mean loss
    weighted by its size), as the model trained, dropout on. ``before_epoch(e)`` (0-based) runs before each
    epoch's batches (the shapes datasets draw their augmentation per epoch).
    """
    history: list[dict[str, Any]] = []
    result = Evaluation(math.nan, {})
    for epoch in range(epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        model.train()
        total, count = 0.0, 0
        for batch in train_loader:
            loss, n = step_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * n
            count += n
        if count == 0:
            raise CompareError("the training split gave no batch; use more training samples or a smaller batch size")
        result = evaluate(model)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": total / count,
                "test_loss": result.loss,
                main_metric: result.metrics[main_metric],
            }
        )
    return {"metrics": dict(result.metrics), "history": history}
