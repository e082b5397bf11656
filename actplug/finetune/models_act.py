"""The recipe's activation: name and kwargs checked once, then handed to timm, torchvision and swap.

Registered actplug names and PyTorch's baselines (:mod:`actplug.baselines`) are both accepted. The
frameworks get :func:`actplug.baselines.activation_layer`, a factory that builds a new module per call
with the user's kwargs.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from actplug.baselines import activation_class, activation_layer, is_baseline
from actplug.integrations.swap import count_activations, default_replace_types, swap
from actplug.registry import UnknownActivationError

from .errors import FinetuneError

__all__ = ["activation_counts", "activation_layer", "calibration_batch", "check_activation", "swap_remaining"]

#: Training images ``--fit`` runs the model on to see each layer's inputs (a few suffice for a handful
#: of scalars per layer, and keep the fit cheap).
CALIBRATION_IMAGES = 4


def check_activation(act: str, act_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Build ``act`` once with ``act_kwargs``; returns the kwargs as a plain dict, or raises FinetuneError."""
    if not isinstance(act, str) or not act.strip():
        raise FinetuneError(f"--act needs an activation name, got {act!r}; run `actplug list` for the names")
    try:
        cls = activation_class(act)
    except UnknownActivationError as exc:
        raise FinetuneError(f"--act: {exc} PyTorch baselines are accepted too.") from None
    if act_kwargs is None:
        act_kwargs = {}
    if not isinstance(act_kwargs, Mapping) or not all(isinstance(k, str) for k in act_kwargs):
        raise FinetuneError(
            f"--act-kwargs must be a JSON object of keyword arguments (e.g. '{{\"mu\": 2.5}}'), got {act_kwargs!r}"
        )
    kwargs = dict(act_kwargs)
    takes = _keywords(cls)
    if takes is not None:
        unknown = [k for k in kwargs if k not in takes]
        if unknown:
            raise FinetuneError(
                f"--act-kwargs: activation {act!r} ({cls.__name__}) does not take {', '.join(map(repr, unknown))}"
                f"{_did_you_mean(unknown, takes)}; it takes {', '.join(takes) or 'no keyword arguments'}"
            )
    try:
        activation_layer(act, kwargs)()
    except Exception as exc:  # a bad value: the class's own message says which and why
        raise FinetuneError(
            f"--act-kwargs {kwargs} are not valid for activation {act!r} ({cls.__name__}): {exc}"
        ) from None
    return kwargs


def _keywords(cls: type[nn.Module]) -> list[str] | None:
    """Keyword arguments of ``cls`` (None when it takes ``**kwargs`` or has no readable signature)."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _did_you_mean(unknown: list[str], takes: list[str]) -> str:
    import difflib

    close = {k: difflib.get_close_matches(k, takes, n=1) for k in unknown}
    hints = [f"{k!r} -> {m[0]!r}" for k, m in close.items() if m]
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def swap_remaining(
    model: nn.Module,
    act: str,
    act_kwargs: Mapping[str, Any],
    *,
    fit: bool = False,
    calibration: Any = None,
    report: list | None = None,
) -> nn.Module:
    """Replace every default activation module not yet of ``act``'s class (decoders, heads, extras).

    ``fit``: ``actplug.swap(..., fit=True)`` sets each new module's parameters to match the activation
    it replaces, on the inputs each layer sees when the model runs on ``calibration``; ``report`` (a
    list) receives one FitResult per replaced layer. ``act_kwargs`` stay as given either way.
    """
    cls = activation_class(act)
    replace = tuple(t for t in default_replace_types() if not issubclass(cls, t))
    if not (replace and count_activations(model, replace)):  # swap warns when nothing matches
        return model
    if fit:
        to = cls if is_baseline(act) else act.strip().lower()  # the name, so swap's fit knows the family
        swap(model, to, replace=replace, fit=True, calibration=calibration, report=report, **act_kwargs)
    else:
        swap(model, activation_layer(act, act_kwargs), replace=replace)
    return model


def calibration_batch(task: str, dataset: Dataset, seed: int, count: int = CALIBRATION_IMAGES) -> Any:
    """A few training images chosen by ``seed``, as the model's forward takes them, for ``--fit``.

    segmentation: a tensor [B, 3, S, S]; detection: a one-element tuple holding the list of images
    (swap calls ``model(*calibration)`` on a tuple, so the SSD gets ``model(images)``).
    """
    n = min(count, len(dataset))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]
    images = [dataset[int(i)][0] for i in order]
    return torch.stack(images) if task == "segmentation" else (images,)


def activation_counts(model: nn.Module) -> Counter[str]:
    """Activation modules per class name: the chosen one and any default left (there should be none)."""
    return count_activations(model)
