"""What ``actplug.swap`` changes in a transformers config: the activation keys its modules were built from.

A transformers model builds each activation module from a key of its config (``hidden_act``,
``hidden_activation``, ``activation_function``, ``activation``, ``projector_hidden_act``, ...,
in nested ``text_config`` / ``vision_config`` too). ``from_pretrained`` rebuilds them from the
saved config, so a swap must write the new activation there: the registered name, or a spec with
the constructor constants that the state dict does not carry (``"smu:alpha=0.01"``; trainable
parameters and buffers travel in the state dict). A module belongs to the key of the config that
its nearest ancestor holding one (``module.config``) carries, whose activation builds modules of
exactly its class. Only code; nothing here imports transformers.
"""

from __future__ import annotations

import inspect
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from actplug.registry import registry
from actplug.specs import format_spec, parse_spec

logger = logging.getLogger("actplug")

#: Config keys that can name an activation: ``hidden_act``, ``activation_function``, ``scoring_func``, ...
_ACTIVATION_KEY = re.compile(r"act|func")


def act2cls() -> dict[str, Any]:
    """transformers' ``ACT2CLS`` (with actplug's names in it), or an empty dict when it is not imported."""
    module = sys.modules.get("transformers.activations")
    return module.ACT2CLS if module is not None else {}


def build_from_spec(spec: str) -> nn.Module:
    """The module that ``ACT2FN[spec]`` builds for ``"NAME:key=value,..."``: NAME with those arguments."""
    name, kwargs = parse_spec(spec)
    table = act2cls()
    entry = table.get(name)
    if name in registry and (entry is None or entry is registry.get(name)):
        return registry.create(name, **kwargs)
    if entry is None:
        from ._tables import unknown_name_error

        raise unknown_name_error(name, table)
    cls, base = entry if isinstance(entry, tuple) else (entry, {})
    return cls(**{**base, **kwargs})


def class_of(value: object) -> type[nn.Module] | None:
    """The class of the module that ``ACT2FN[value]`` builds, or None when ``value`` names no activation."""
    if not isinstance(value, str):
        return None
    table = act2cls()
    entry = table.get(value)
    if entry is None:
        try:
            name, _ = parse_spec(value)
        except ValueError:
            return None
        entry = table.get(name)
        if entry is None and name in registry:
            entry = registry.get(name)
    cls = entry[0] if isinstance(entry, tuple) else entry
    return cls if isinstance(cls, type) else None


def module_spec(module: nn.Module, given: Mapping[str, Any] | None = None) -> str:
    """The string that ``ACT2FN`` turns into a module like ``module`` (its state dict aside).

    The name is the registered one (or transformers' own for its classes); the spec adds every
    constructor argument that is not a parameter or buffer and differs from its default, read from
    the module's attribute of that name, else from ``given`` (the keyword arguments the swap passed).
    Raises ``ValueError`` naming the class when no name builds it or an argument cannot be written.
    """
    cls = type(module)
    name = _name_of(cls)
    if name is None:
        raise ValueError(
            f"{cls.__module__}.{cls.__qualname__} is not a registered activation, so no config key can name it; "
            f"register it first (actplug.register('NAME', {cls.__name__})) or swap by a registered name"
        )
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return name
    constants: dict[str, Any] = {}
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "inplace":
            continue
        if p.name in module._parameters or p.name in module._buffers:
            continue  # the state dict carries it
        if p.name in vars(module):
            value = vars(module)[p.name]
        elif given and p.name in given:
            value = given[p.name]
        else:
            continue  # not visible on the module: it was built with the default
        if isinstance(value, torch.Tensor):
            continue
        if p.default is p.empty or type(value) is not type(p.default) or value != p.default:
            constants[p.name] = value
    return format_spec(name, constants)


def _name_of(cls: type) -> str | None:
    """The ACT2FN key that builds ``cls``: the registered name (or an alias not shadowed), else transformers' own."""
    table = act2cls()
    for info in registry:
        if info.cls is cls:
            for key in (info.name, *info.aliases):
                if table.get(key, cls) is cls:
                    return key
    for key, entry in table.items():
        if entry is cls:
            return key
    return None


# ------------------------------------------------------------------------------ which key built which module
@dataclass
class KeyGroup:
    """Modules built from the same activation key(s) of one config: they must all get one activation."""

    scope: Any  # the config whose model holds the modules
    targets: list[tuple[Any, str]]  # (config, key) pairs that describe them (several when values agree)
    classes: tuple[type, ...]
    replaced: list[Any] = field(default_factory=list)  # the plan's Replacements

    def describe(self) -> str:
        """``BertConfig.hidden_act='gelu'``, for messages."""
        return " and ".join(f"{type(c).__name__}.{k}={getattr(c, k)!r}" for c, k in self.targets)


@dataclass
class _Slot:
    parent: nn.Module
    name: str
    path: str
    child: nn.Module
    config: Any  # the nearest config on the way from the root; None outside every PreTrainedModel


def _config_types() -> tuple[type, type] | None:
    utils = sys.modules.get("transformers.configuration_utils")
    modeling = sys.modules.get("transformers.modeling_utils")
    if utils is None or modeling is None:
        return None
    config_cls = getattr(utils, "PreTrainedConfig", None) or utils.PretrainedConfig
    return config_cls, modeling.PreTrainedModel


def _slots(root: nn.Module, config_cls: type, model_cls: type) -> Iterator[_Slot]:
    """Every (parent, name) slot of ``root`` with the config its module was built from (first path of each parent)."""
    context: dict[int, tuple[str, Any]] = {}
    by_path: dict[str, nn.Module] = {}
    for path, module in root.named_modules(remove_duplicate=False):  # parents before their children
        by_path[path] = module
        if id(module) in context:
            continue
        config = context[id(by_path[path.rpartition(".")[0]])][1] if path else None
        own = getattr(module, "config", None)
        if isinstance(own, config_cls) and (isinstance(module, model_cls) or config is not None):
            config = own
        context[id(module)] = (path, config)
    for parent in root.modules():
        prefix, config = context[id(parent)]
        for name, child in parent._modules.items():
            if child is not None:
                yield _Slot(parent, name, f"{prefix}.{name}" if prefix else name, child, config)


def activation_keys(config: Any, config_cls: type) -> Iterator[tuple[Any, str, type]]:
    """``(config, key, class)`` for each key of ``config`` naming an activation, then those of its sub-configs."""
    nested = []
    for key, value in vars(config).items():
        if key.startswith("_"):
            continue
        if isinstance(value, config_cls):
            nested.append(value)
        elif _ACTIVATION_KEY.search(key) and (cls := class_of(value)) is not None:
            yield config, key, cls
    for sub in nested:
        yield from activation_keys(sub, config_cls)


def _targets(config: Any, cls: type, config_cls: type) -> list[tuple[Any, str]]:
    """The keys of ``config`` whose activation is ``cls``; those of its sub-configs only if it has none."""
    own = [(c, k) for c, k, found in activation_keys(config, config_cls) if c is config and found is cls]
    if own:
        return own
    return [(c, k) for c, k, found in activation_keys(config, config_cls) if found is cls]


def key_groups(root: nn.Module, plan: Any, *, log: bool = False) -> tuple[list[KeyGroup], list[_Slot]]:
    """The plan's replacements grouped by the config keys they were built from, and every slot of ``root``.

    With ``log``, replacements outside every ``PreTrainedModel``, and those no key describes, are
    logged at debug level: there is nothing to update for them.
    """
    types = _config_types()
    if types is None:
        return [], []
    config_cls, model_cls = types
    slots = list(_slots(root, config_cls, model_cls))
    where = {(id(s.parent), s.name): s for s in slots}
    groups: dict[tuple, KeyGroup] = {}
    for r in plan.replacements:
        slot = where.get((id(r.parent), r.name))
        config = slot.config if slot is not None else None
        if config is None:
            if log:
                logger.debug(
                    "actplug.swap: %s is not inside a transformers PreTrainedModel: no config to update", r.path
                )
            continue
        targets = _targets(config, type(r.old), config_cls)
        if not targets:
            if log:
                logger.debug(
                    "actplug.swap: %s (%s) was not built from an activation key of %s: nothing to update",
                    r.path,
                    type(r.old).__name__,
                    type(config).__name__,
                )
            continue
        gid = (id(config), *((id(c), k) for c, k in targets))
        if gid not in groups:
            classes = tuple(dict.fromkeys(class_of(getattr(c, k)) for c, k in targets))
            groups[gid] = KeyGroup(config, targets, classes)
        groups[gid].replaced.append(r)
    return list(groups.values()), slots


def described_slots(group: KeyGroup, slots: list[_Slot]) -> list[_Slot]:
    """The slots the group's keys build: those holding the keys' class in the scope's model, and the
    slots of the same attribute of the same parent class (a module swapped there without the config)."""
    types = _config_types()
    config_cls = types[0] if types else object
    others = {cls for _, _, cls in activation_keys(group.scope, config_cls)} - set(group.classes)
    in_scope = [s for s in slots if s.config is group.scope]
    found = [s for s in in_scope if type(s.child) in group.classes]
    places = {(type(s.parent), s.name) for s in found}
    found += [
        s
        for s in in_scope
        if type(s.child) not in group.classes and type(s.child) not in others and (type(s.parent), s.name) in places
    ]
    return found


# ------------------------------------------------------------------------------ the hooks' work
@dataclass
class ConfigUpdate:
    """``config.key = value``, and the modules it describes (for the log)."""

    config: Any
    key: str
    value: str
    count: int


def config_updates(model: nn.Module, plan: Any, *, check: bool) -> list[ConfigUpdate]:
    """What the swap ``plan`` must write into the configs of ``model``'s transformers models.

    With ``check=True`` (before the model changes), raises ``ValueError`` naming the reason and the
    fix when one key would describe modules with different activations: some of them not replaced,
    or replaced with different constants, a class no name builds, or a value the config rejects.
    """
    groups, slots = key_groups(model, plan, log=check)
    if not groups:
        return []
    in_plan = {(id(r.parent), r.name): r for r in plan.replacements}
    wanted: dict[tuple[int, str], ConfigUpdate] = {}
    for group in groups:
        members = group.replaced
        if check:
            described = described_slots(group, slots)
            left = [s for s in described if (id(s.parent), s.name) not in in_plan]
            if left:
                raise ValueError(_partial_message(group, plan, left, len(described)))
            members = [in_plan[(id(s.parent), s.name)] for s in described]
        specs: dict[str, list[str]] = {}
        for r in members:
            try:
                spec = module_spec(r.new, plan.kwargs)
            except ValueError as exc:
                raise ValueError(f"actplug.swap cannot record {r.path} in {group.describe()}: {exc}") from None
            specs.setdefault(spec, []).append(r.path)
        if len(specs) > 1:
            raise ValueError(_constants_message(group, specs))
        (spec,) = specs
        for config, key in group.targets:
            previous = wanted.get((id(config), key))
            if previous is not None and previous.value != spec:
                raise ValueError(
                    f"actplug.swap would need {type(config).__name__}.{key} to be both {previous.value!r} and "
                    f"{spec!r}; give these modules one activation (the same name and constructor arguments)"
                )
            wanted[(id(config), key)] = ConfigUpdate(config, key, spec, len(members))
    updates = [u for u in wanted.values() if getattr(u.config, u.key) != u.value]
    if check:
        for u in updates:
            _check_assignable(u)
    return updates


def apply_updates(updates: list[ConfigUpdate]) -> None:
    """Write each update into its config and log it on the ``actplug`` logger."""
    for u in updates:
        old = getattr(u.config, u.key)
        setattr(u.config, u.key, u.value)
        logger.info("actplug.swap: %s.%s %r -> %r (%d modules)", type(u.config).__name__, u.key, old, u.value, u.count)


def _check_assignable(update: ConfigUpdate) -> None:
    """Try the assignment (transformers' strict configs validate it) and put the old value back."""
    config, key = update.config, update.key
    old = getattr(config, key)
    try:
        setattr(config, key, update.value)
    except Exception as exc:
        raise ValueError(
            f"actplug.swap cannot write {update.value!r} into {type(config).__name__}.{key}: transformers rejects "
            f"it ({type(exc).__name__}: {str(exc).strip()}). This config cannot name another activation, so "
            "save_pretrained / from_pretrained would rebuild the old one; keep this key's modules as they are "
            "(replace=... without their class)"
        ) from None
    finally:
        setattr(config, key, old)


def _partial_message(group: KeyGroup, plan: Any, left: list[_Slot], total: int) -> str:
    shown = ", ".join(f"{s.path} ({type(s.child).__name__})" for s in left[:3])
    more = f" and {len(left) - 3} more" if len(left) > 3 else ""
    kinds = sorted({type(s.child).__name__ for s in left})
    return (
        f"actplug.swap would give the {total} modules that {group.describe()} describes different activations: "
        f"{total - len(left)} would become {plan.target_name}, {shown}{more} would stay. A config key names one "
        "activation, so save_pretrained / from_pretrained could not rebuild both. Swap all of them (add "
        f"{', '.join(kinds)} to replace=...), or, to keep some, swap only the submodules you mean "
        "(actplug.swap(model.<submodule>, ...): the config is then left as it is and from_pretrained rebuilds the "
        "old activation there, so save and load the state_dict into a model swapped the same way)"
    )


def _constants_message(group: KeyGroup, specs: dict[str, list[str]]) -> str:
    shown = "; ".join(
        f"{spec!r} at {paths[0]}" + (f" (+{len(paths) - 1})" if len(paths) > 1 else "") for spec, paths in specs.items()
    )
    return (
        f"actplug.swap would give the modules that {group.describe()} describes different activations ({shown}); "
        "a config key names one activation with one set of constructor constants, so save_pretrained / "
        "from_pretrained could not rebuild them. Build every layer with the same constants (pass them to "
        "actplug.swap, e.g. actplug.swap(model, 'smu', alpha=0.01)); values that differ per layer must be "
        "trainable parameters or buffers, which the state dict carries"
    )
