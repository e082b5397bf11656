"""Reading a weights file and loading it into the part of a recipe model whose keys it matches, with a report.

Files: ``.safetensors`` (safetensors) or ``.pth`` / ``.pt`` (``torch.load(weights_only=True)``: tensors
and plain containers only, never arbitrary pickled code). A checkpoint that wraps its state dict
(``{"state_dict": ...}``, ``{"model": ...}``, ``{"model_state_dict": ...}``, as timm, torchvision's
references and Lightning write them) is unwrapped; the prefixes ``module.`` (DDP) and ``_orig_mod.``
(``torch.compile``) are dropped.

A model offers targets: the whole model, then its backbone or encoder, each with the key prefixes a
file of that part may carry (``encoder.model.``, ``backbone.``, ``features.``, ...). The target and
prefix under which most of the file's tensors find a key of the same name win; names also match when
they differ only in ``_`` against ``.`` (timm's feature extractors rename ``stages.0`` to ``stages_0``).
Tensors whose shape differs from the model's are left out and named; missing and unexpected keys are
reported on the ``actplug`` logger; a file with no matching tensor is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import FinetuneError

__all__ = ["WHOLE_MODEL", "Target", "load_matching", "read_state_dict"]

logger = logging.getLogger("actplug")

#: Keys under which checkpoints keep the model's state dict (the first one found wins).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
#: Key prefixes added by wrappers of the model itself (DDP, torch.compile), dropped before matching.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: The label of the target that is the whole recipe model.
WHOLE_MODEL = "the whole model"
#: How many names a message shows.
SHOWN = 5


@dataclass(frozen=True)
class Target:
    """A part of the model a file may hold: ``label`` for messages, ``module``, and the key prefixes to try."""

    label: str
    module: nn.Module
    prefixes: tuple[str, ...] = ("",)


def _some(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return f"{shown}, ..." if len(names) > SHOWN else shown


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file by key, unwrapped and without wrapper prefixes; FinetuneError if unreadable."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path), device="cpu")
        except Exception as exc:
            raise FinetuneError(
                f"--pretrained {path} is not a readable safetensors file ({type(exc).__name__}: {exc}); "
                "write it with safetensors.torch.save_file(model.state_dict(), path)"
            ) from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise FinetuneError(
                f"--pretrained {path} cannot be read as a state dict by torch.load(weights_only=True) "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); save the weights with "
                "torch.save(model.state_dict(), path), or as .safetensors"
            ) from None
    state = _unwrap(state)
    if not isinstance(state, Mapping):
        raise FinetuneError(
            f"--pretrained {path} holds a {type(state).__name__}, not a state dict; save the weights with "
            "torch.save(model.state_dict(), path)"
        )
    tensors = {_strip(str(k)): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise FinetuneError(
            f"--pretrained {path} holds no tensors (keys: {_some([str(k) for k in state])}); save the weights with "
            "torch.save(model.state_dict(), path)"
        )
    return tensors


def _unwrap(state: Any) -> Any:
    for _ in range(3):  # {"model": {"state_dict": ...}} at most; deeper is not a checkpoint layout in use
        if not isinstance(state, Mapping):
            return state
        inner = next((state[k] for k in WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            return state
        state = inner
    return state


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _normal(key: str) -> str:
    return key.replace("_", ".")


@dataclass
class _Match:
    target: Target
    prefix: str
    pairs: dict[str, str]  # file key -> model key, same name
    same_shape: int


def _match(state: Mapping[str, torch.Tensor], target: Target, prefix: str) -> _Match:
    own = target.module.state_dict()
    by_normal: dict[str, str | None] = {}
    for key in own:
        by_normal[_normal(key)] = None if _normal(key) in by_normal else key  # None: ambiguous, exact names only
    pairs: dict[str, str] = {}
    taken: set[str] = set()
    for key in state:
        if prefix and not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        found = rest if rest in own else by_normal.get(_normal(rest))
        if found is not None and found not in taken:
            pairs[key] = found
            taken.add(found)
    same = sum(1 for k, m in pairs.items() if tuple(state[k].shape) == tuple(own[m].shape))
    return _Match(target, prefix, pairs, same)


def load_matching(state: Mapping[str, torch.Tensor], targets: Sequence[Target], origin: str) -> dict[str, Any]:
    """Load ``state`` into the target and prefix it matches best; returns what was loaded (for metrics.json).

    ``origin`` names the weights in messages (a file path or a framework weights name). Raises
    FinetuneError when no tensor matches a key of the same name and shape in any target.
    """
    best = max(
        (_match(state, t, p) for t in targets for p in t.prefixes),
        key=lambda m: (m.same_shape, len(m.pairs)),
    )
    own = best.target.module.state_dict()
    mismatched = [
        f"{m} (file {list(state[k].shape)}, model {list(own[m].shape)})"
        for k, m in best.pairs.items()
        if tuple(state[k].shape) != tuple(own[m].shape)
    ]
    if not best.same_shape:
        wanted = [t for t in targets if t.label != WHOLE_MODEL] or list(targets)
        expected = list(wanted[0].module.state_dict())
        shapes = f"; the names that matched differ in shape: {_some(mismatched)}" if mismatched else ""
        raise FinetuneError(
            f"--pretrained {origin}: none of its {len(state)} tensors fits {' or '.join(t.label for t in targets)}"
            f"{shapes}. It holds {_some(list(state))}; {wanted[0].label} expects {_some(expected)}. Give a state dict "
            f"of {wanted[0].label} or of the whole model, with its key names (a prefix such as "
            f"{', '.join(repr(p) for p in wanted[0].prefixes if p) or 'module.'} is fine)"
        )
    fitting = {m: state[k].detach() for k, m in best.pairs.items() if tuple(state[k].shape) == tuple(own[m].shape)}
    result = best.target.module.load_state_dict(fitting, strict=False)
    missing = list(result.missing_keys)
    unexpected = [k for k in state if k not in best.pairs]
    where = best.target.label + (f" (file keys under {best.prefix!r})" if best.prefix else "")
    logger.info("actplug finetune: loaded %d of %d tensors of %s from %s", len(fitting), len(own), where, origin)
    if missing:
        logger.warning(
            "actplug finetune: %d tensors of %s are not in %s and keep their initial values: %s",
            len(missing),
            best.target.label,
            origin,
            _some(missing),
        )
    if mismatched:
        logger.warning(
            "actplug finetune: %d tensors of %s differ in shape from the model's and were not loaded: %s",
            len(mismatched),
            origin,
            _some(mismatched),
        )
    if unexpected:
        logger.info(
            "actplug finetune: %d tensors of %s have no place in %s and were ignored: %s",
            len(unexpected),
            origin,
            best.target.label,
            _some(unexpected),
        )
    return {
        "loaded_into": best.target.label,
        "key_prefix": best.prefix,
        "tensors_loaded": len(fitting),
        "tensors_in_target": len(own),
        "missing": len(missing),
        "unexpected": len(unexpected),
        "shape_mismatch": mismatched,
        "missing_keys": missing[:SHOWN],
        "unexpected_keys": unexpected[:SHOWN],
    }
