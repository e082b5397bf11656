"""``actplug.swap``: replace activation modules inside an already-built (or pretrained) model."""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
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


def activation_factory(to: str | type[nn.Module] | Callable[..., nn.Module], **kwargs: Any) -> Callable[[], nn.Module]:
    """A zero-argument factory for ``to`` (a registered name, a module class or a callable).

    Builds one module at once, so that an unknown name or keyword fails before any model changes.
    """
    if isinstance(to, str):
        registry.create(to, **kwargs)
        return lambda: registry.create(to, **kwargs)
    if isinstance(to, nn.Module):
        raise TypeError(
            f"swap(to=...) needs a name, a module class or a factory, not the instance {to!r}: every replaced "
            f"activation gets its own module; pass {type(to).__name__} (the class) and its kwargs instead"
        )
    if callable(to):
        probe = to(**kwargs)
        if not isinstance(probe, nn.Module):
            raise TypeError(f"swap(to={to!r}) must build an nn.Module, got {type(probe).__name__}")
        return lambda: to(**kwargs)
    raise TypeError(f"swap(to=...) needs a registered name, a module class or a factory, got {to!r}")


def _reference_tensor(*modules: nn.Module) -> torch.Tensor | None:
    for module in modules:
        for tensor in (*module.parameters(), *module.buffers()):
            return tensor
    return None


def swap(
    model: nn.Module,
    to: str | type[nn.Module] | Callable[..., nn.Module],
    *,
    replace: Iterable[type[nn.Module]] | None = None,
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
    are not modules and cannot be swapped. Returns ``model``; the count is logged on the
    ``actplug`` logger and a warning says when nothing matched.
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
    factory = activation_factory(to, **kwargs)
    fallback = _reference_tensor(model)
    replaced: Counter[str] = Counter()
    for parent in list(model.modules()):
        # ``_modules``, not ``named_children()``: the latter yields a module once per parent even when
        # the parent holds it under two names (``nn.Sequential(relu, conv, relu)``), and the second slot
        # would keep the old activation.
        for child_name, child in list(parent._modules.items()):
            if not isinstance(child, types):
                continue
            new = factory()
            ref = _reference_tensor(child, parent)
            ref = fallback if ref is None else ref
            if ref is not None:
                new = new.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
            new.train(child.training)
            setattr(parent, child_name, new)
            replaced[type(child).__name__] += 1
    total = sum(replaced.values())
    target = to if isinstance(to, str) else getattr(to, "__name__", repr(to))
    if total:
        detail = ", ".join(f"{name}: {count}" for name, count in sorted(replaced.items()))
        logger.info("actplug.swap: replaced %d activation modules with %s (%s)", total, target, detail)
    else:
        warnings.warn(
            f"actplug.swap found no activation module of types {[t.__name__ for t in types]} in "
            f"{type(model).__name__}; nothing was replaced (activations called as functions cannot be swapped)",
            UserWarning,
            stacklevel=2,
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
