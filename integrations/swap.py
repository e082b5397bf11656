"""``actplug.swap``: replace activation modules inside an already-built (or pretrained) model."""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from actplug.registry import registry

logger = logging.getLogger("actplug")

#: PyTorch's activation classes that swap replaces by default: the ReLU family, SiLU, GELU, Hardswish.
TORCH_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
)


def default_replace_types() -> tuple[type[nn.Module], ...]:
    """PyTorch's activations plus those of every framework already imported (timm, transformers)."""
    found: list[type[nn.Module]] = list(TORCH_ACTIVATIONS)
    for types in registry.plugin_manager.hook.actplug_activation_types():
        found.extend(types)
    return tuple(dict.fromkeys(found))


def activation_factory(to: str | type[nn.Module] | Callable[..., nn.Module], **kwargs: Any) -> Callable[..., nn.Module]:
    """A factory for ``to`` (a registered name, a module class or a callable) with ``kwargs`` bound.

    ``factory()`` builds with ``kwargs``; ``factory(**overrides)`` with some of them changed (what
    ``fit=True`` uses). Builds one module at once, so that an unknown name or keyword fails before
    any model changes.
    """
    if isinstance(to, str):
        registry.create(to, **kwargs)
        return lambda **overrides: registry.create(to, **{**kwargs, **overrides})
    if isinstance(to, nn.Module):
        raise TypeError(
            f"swap(to=...) needs a name, a module class or a factory, not the instance {to!r}: every replaced "
            f"activation gets its own module; pass {type(to).__name__} (the class) and its kwargs instead"
        )
    if callable(to):
        probe = to(**kwargs)
        if not isinstance(probe, nn.Module):
            raise TypeError(f"swap(to={to!r}) must build an nn.Module, got {type(probe).__name__}")
        return lambda **overrides: to(**{**kwargs, **overrides})
    raise TypeError(f"swap(to=...) needs a registered name, a module class or a factory, got {to!r}")


@dataclass
class Replacement:
    """One activation slot that a swap replaces: ``parent.<name>`` (``path`` in the model), old and new module."""

    parent: nn.Module
    name: str
    path: str
    old: nn.Module
    new: nn.Module | None = None


@dataclass(frozen=True)
class SwapPlan:
    """What a swap does, handed to the fit and to the adapters' hooks before and after it is applied.

    ``to`` is the target as given (a name, a class or a factory), ``kwargs`` the keyword arguments
    the caller gave, ``factory(**overrides)`` builds a new module.
    """

    to: Any
    kwargs: dict[str, Any]
    factory: Callable[..., nn.Module]
    replacements: list[Replacement] = field(default_factory=list)

    @property
    def target_name(self) -> str:
        """The target's registered name or class name, for messages."""
        return self.to if isinstance(self.to, str) else getattr(self.to, "__name__", repr(self.to))


def _reference_tensor(*modules: nn.Module) -> torch.Tensor | None:
    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            return tensor
    return None


def _plan(model: nn.Module, types: tuple[type[nn.Module], ...], plan: SwapPlan) -> None:
    """Find every slot holding an activation of ``types``, each parent slot once, in model order."""
    paths: dict[int, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(module), name)
    for parent in list(model.modules()):
        # ``_modules``, not ``named_children()``: the latter yields a module once per parent even when
        # the parent holds it under two names (``nn.Sequential(relu, conv, relu)``), and the second slot
        # would keep the old activation.
        prefix = paths.get(id(parent), "")
        for child_name, child in list(parent._modules.items()):
            if isinstance(child, types):
                path = f"{prefix}.{child_name}" if prefix else child_name
                plan.replacements.append(Replacement(parent, child_name, path, child))


def _build(model: nn.Module, plan: SwapPlan) -> None:
    """A new module per slot, on the device and floating dtype of the nearest parameter, in the old one's mode."""
    fallback = _reference_tensor(model)
    for r in plan.replacements:
        new = plan.factory()
        ref = _reference_tensor(r.old, r.parent)
        ref = fallback if ref is None else ref
        if ref is not None:
            new = new.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
        new.train(r.old.training)
        r.new = new


def swap(
    model: nn.Module,
    to: str | type[nn.Module] | Callable[..., nn.Module],
    *,
    replace: Iterable[type[nn.Module]] | None = None,
    fit: bool = False,
    calibration: Any = None,
    report: list | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Replace every activation module of a type in ``replace`` inside ``model`` by a new ``to``.

    ``replace`` defaults to :func:`default_replace_types` (ReLU family, SiLU, GELU, Hardswish, and
    timm's and transformers' own classes of those). Each occurrence gets its own new module (a
    module object held by several parents, or by one parent under several names, gets one per
    slot; one module called twice in a ``forward``, as torchvision's ResNet blocks do with
    ``self.relu``, stays one module). The new
    modules take the device and floating dtype of the nearest parameter and the train/eval mode of
    the module they replace. Activations called as functions inside ``forward`` (``F.relu(x)``)
    are not modules and cannot be swapped.

    ``fit=True`` sets each new module's parameters to match the activation it replaces (see
    :mod:`actplug.integrations.fit`): over the inputs each layer sees when the model runs on
    ``calibration`` (a tensor, a tuple of positional or a dict of keyword inputs), or over a
    standard range without one; ``kwargs`` given here stay as given. ``report``, a list, receives
    one :class:`~actplug.integrations.fit.FitResult` per layer. Framework adapters check the plan
    before the model changes and update what describes the model afterwards (a transformers
    config's activation key). Returns ``model``; the count is logged on the ``actplug`` logger and
    a warning says when nothing matched.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"swap(model=...) needs an nn.Module, got {type(model).__name__}")
    if replace is None:
        types = default_replace_types()
    else:
        types = tuple(replace)
        bad = [t for t in types if not (isinstance(t, type) and issubclass(t, nn.Module))]
        if bad or not types:
            raise TypeError(f"swap(replace=...) needs nn.Module classes, got {bad or 'nothing'}")
    if not isinstance(fit, bool):
        raise TypeError(f"swap(fit=...) expects True or False, got {fit!r}")
    if report is not None and not isinstance(report, list):
        raise TypeError(f"swap(report=...) needs a list to append the fit results to, got {type(report).__name__}")
    if calibration is not None and not fit:
        raise ValueError("swap(calibration=...) is used only with fit=True; pass fit=True, or drop calibration")
    plan = SwapPlan(to, dict(kwargs), activation_factory(to, **kwargs))
    _plan(model, types, plan)
    if not plan.replacements:
        warnings.warn(
            f"actplug.swap found no activation module of types {[t.__name__ for t in types]} in "
            f"{type(model).__name__}; nothing was replaced (activations called as functions cannot be swapped)",
            UserWarning,
            stacklevel=2,
        )
        return model
    _build(model, plan)
    if fit:
        from .fit import fit_replacements

        results = fit_replacements(model, plan, calibration=calibration)
        if report is not None:
            report.extend(results)
    hook = registry.plugin_manager.hook
    hook.actplug_check_swap(model=model, plan=plan)  # an adapter raises here: nothing has changed yet
    for r in plan.replacements:
        setattr(r.parent, r.name, r.new)
    hook.actplug_model_swapped(model=model, plan=plan)
    replaced = Counter(type(r.old).__name__ for r in plan.replacements)
    detail = ", ".join(f"{name}: {count}" for name, count in sorted(replaced.items()))
    logger.info(
        "actplug.swap: replaced %d activation modules with %s (%s)", len(plan.replacements), plan.target_name, detail
    )
    return model


def count_activations(model: nn.Module, types: Iterable[type[nn.Module]] | None = None) -> Counter[str]:
    """How many activation modules of each class ``model`` holds (each parent slot counted once)."""
    types = tuple(types) if types is not None else (*default_replace_types(), *(i.cls for i in registry))
    counts: Counter[str] = Counter()
    for parent in model.modules():
        for child in parent._modules.values():
            if isinstance(child, types):
                counts[type(child).__name__] += 1
    return counts
