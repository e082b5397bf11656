"""The activation registry: names and aliases to module classes, filled by pluggy plugins.

Plugins are the built-in one (:mod:`actplug.plugins.builtin`) and whatever packages publish
under the ``actplug`` entry-point group. Discovery is lazy (on the first lookup) so that
``import actplug`` stays cheap and imports no plugin's dependencies.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pluggy
from torch import nn

from . import hookspecs
from .declaration import Activation, Backward, Forward, resolve, unexpected_keywords

KNOWN_METADATA = ("paper", "formula", "functional", "approximates", "parameters", "declaration")


class UnknownActivationError(KeyError):
    """An activation name that no plugin registered; the message lists close matches."""

    def __init__(self, name: str, known: Iterable[str]):
        self.name = name
        self.matches = difflib.get_close_matches(name.lower(), list(known), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(m) for m in self.matches)}?" if self.matches else ""
        message = (
            f"unknown activation {name!r}.{hint} Run `actplug list` (or actplug.names()) for the registered names."
        )
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return self.message


class ActivationNameTaken(ValueError):
    """A name or alias that is already registered; pass ``override=True`` to replace it."""


class ActplugPluginWarning(UserWarning):
    """A third-party plugin failed to load or to register; the registry carries on without it."""


@dataclass(frozen=True)
class ActivationInfo:
    """Everything the registry knows about one activation."""

    name: str
    cls: type[nn.Module]
    aliases: tuple[str, ...] = ()
    paper: str = ""
    formula: str = ""
    functional: Callable[..., Any] | None = None
    approximates: str = ""
    plugin: str = ""
    extra: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    declared_parameters: tuple[str, ...] | None = None
    declaration: Activation | None = None

    @property
    def defaults(self) -> dict[str, Any]:
        """Constructor keyword arguments with their default values."""
        return {
            p.name: p.default for p in _constructor_parameters(self.cls) if p.default is not inspect.Parameter.empty
        }

    @property
    def parameters(self) -> tuple[str, ...]:
        """Names of the trainable parameters of a default instance (e.g. ``('mu',)`` for SMU)."""
        if self.declared_parameters is not None:
            return self.declared_parameters
        try:
            module = self.cls()
        except Exception:  # a class that needs arguments: nothing to say without them
            return ()
        return tuple(name for name, p in module.named_parameters() if p.requires_grad)


def _constructor_parameters(cls: type) -> list[inspect.Parameter]:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return []
    return [p for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _normalise(name: object, what: str = "activation name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"an {what} must be a non-empty string, got {name!r}")
    return name.strip().lower()


class _FormulaRegistration:
    """``register_formula``, for the registry and for what a plugin's hook sees: both then ``declare``."""

    def register_formula(
        self,
        name: str,
        forward: Forward,
        *,
        backward: Backward | None = None,
        params: Mapping[str, float] | None = None,
        trainable: Iterable[str] = (),
        aliases: Iterable[str] = (),
        override: bool = False,
        **metadata: Any,
    ) -> ActivationInfo:
        """Register an elementwise activation given by its formula and get every built-in's machinery.

        ``forward(x, **params)`` is plain PyTorch math; ``params`` maps parameter names to default
        values, and those named in ``trainable`` become ``nn.Parameter``s of the generated module.
        ``backward(x, grad, *, needs, **params)``, optional, returns dL/dx or ``(dL/dx, {name: grad})``;
        without it, gradients come from differentiating the forward recomputed from x. Autograd keeps
        only x, large tensors run fused kernels, and the name works in timm, transformers and
        torchvision. Metadata: ``paper``, ``formula``, ``approximates``, ``doc``, ``class_name``.
        """
        from .formula import declare_formula

        decl = declare_formula(
            name, forward, backward=backward, params=params, trainable=trainable, aliases=aliases, **metadata
        )
        return self.declare(decl, override=override)


class _PluginScope(_FormulaRegistration):
    """What a plugin's hook sees as ``registry``: registrations are staged and committed only if
    the whole hook succeeds, so a plugin that fails half-way leaves nothing behind."""

    def __init__(self, registry: Registry, plugin_name: str):
        self._registry = registry
        self._plugin_name = plugin_name
        self.staged: list[tuple[tuple, dict]] = []

    def register(
        self,
        name: str,
        module_cls: type[nn.Module],
        aliases: Iterable[str] = (),
        override: bool = False,
        **metadata: Any,
    ) -> None:
        aliases = self._registry._validate(name, module_cls, aliases, override, metadata, pending=self.staged)
        self.staged.append(((name, module_cls), dict(aliases=tuple(aliases), override=override, **metadata)))

    def declare(self, declaration: Activation, override: bool = False) -> None:
        self.register(declaration.name, override=override, **_declared(declaration))

    def __getattr__(self, attr: str) -> Any:  # names(), get(), ... read the real registry
        return getattr(self._registry, attr)


class Registry(_FormulaRegistration):
    """Name -> activation class table, filled through the ``actplug_register_activations`` hook."""

    def __init__(self, *, entry_point_group: str | None = hookspecs.ENTRY_POINT_GROUP):
        self.plugin_manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.plugin_manager.add_hookspecs(hookspecs)
        self._group = entry_point_group
        self._entries: dict[str, ActivationInfo] = {}
        self._aliases: dict[str, str] = {}
        self._listeners: list[Callable[[ActivationInfo], None]] = []
        self._plugin_listeners: list[Callable[[object], None]] = []
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()
        self._current_plugin = "user"

    # ----------------------------------------------------------------- discovery
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            # ``_loading`` stops the recursion from add_plugin in this thread; other threads wait on
            # the lock and see ``_loaded`` only once every plugin is in (not a half-filled table).
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                from .plugins import builtin

                self.add_plugin(builtin, name="builtin")
                if self._group:
                    self.load_entry_points()
            finally:
                self._loading = False
                self._loaded = True

    def load_entry_points(self) -> list[str]:
        """Import and register every plugin published under the entry-point group not yet loaded.

        A plugin that fails to import is reported with an :class:`ActplugPluginWarning` naming the
        entry point and its distribution; the others load normally. Returns the names loaded.
        """
        importlib.invalidate_caches()
        loaded = []
        for ep in importlib.metadata.entry_points(group=self._group):
            if self.plugin_manager.has_plugin(ep.name) or self.plugin_manager.is_blocked(ep.name):
                continue
            where = _describe_entry_point(ep)
            try:
                plugin = ep.load()
            except Exception as exc:
                warnings.warn(
                    f"actplug plugin {where} failed to import and was skipped: {type(exc).__name__}: {exc}",
                    ActplugPluginWarning,
                    stacklevel=2,
                )
                self.plugin_manager.set_blocked(ep.name)
                continue
            if self.add_plugin(plugin, name=ep.name, where=where):
                loaded.append(ep.name)
        return loaded

    def add_plugin(self, plugin: object, name: str | None = None, *, where: str | None = None) -> bool:
        """Register a plugin object or module and run its hook now. Returns False if it failed.

        Use this for plugins that are not installed as packages (scripts, notebooks, tests).
        """
        name = name or getattr(plugin, "__name__", None) or repr(plugin)
        where = where or repr(name)
        if name != "builtin":  # the built-in plugin is added by _ensure_loaded itself
            self._ensure_loaded()
        try:
            self.plugin_manager.register(plugin, name=name)
        except Exception as exc:
            warnings.warn(f"actplug plugin {where} was rejected: {exc}", ActplugPluginWarning, stacklevel=2)
            return False
        caller = self.plugin_manager.subset_hook_caller(
            "actplug_register_activations",
            remove_plugins=[p for p in self.plugin_manager.get_plugins() if p is not plugin],
        )
        scope = _PluginScope(self, name)
        try:
            caller(registry=scope)
        except Exception as exc:
            self.plugin_manager.unregister(plugin)
            self.plugin_manager.set_blocked(name)
            if name == "builtin":
                raise
            warnings.warn(
                f"actplug plugin {where} raised while registering activations and was skipped: "
                f"{type(exc).__name__}: {exc}",
                ActplugPluginWarning,
                stacklevel=2,
            )
            return False
        with self._lock:
            previous, self._current_plugin = self._current_plugin, name
            try:
                for args, kwargs in scope.staged:
                    self._commit(*args, **kwargs)
            finally:
                self._current_plugin = previous
        for listener in list(self._plugin_listeners):
            listener(plugin)
        return True

    def on_plugin_added(self, listener: Callable[[object], None]) -> None:
        """Call ``listener(plugin)`` after each plugin added from now on (framework adapters use it
        to watch the modules that third-party plugins adapt)."""
        self._plugin_listeners.append(listener)

    # ----------------------------------------------------------------- registration
    def register(
        self,
        name: str,
        module_cls: type[nn.Module],
        aliases: Iterable[str] = (),
        override: bool = False,
        **metadata: Any,
    ) -> ActivationInfo:
        """Add ``module_cls`` under ``name`` (case-insensitive) and ``aliases``.

        Raises :class:`ActivationNameTaken` if a name or alias is taken, unless ``override=True``.
        """
        self._ensure_loaded()
        aliases = self._validate(name, module_cls, aliases, override, metadata)
        with self._lock:
            return self._commit(name, module_cls, aliases=aliases, override=override, **metadata)

    def declare(self, declaration: Activation, override: bool = False) -> ActivationInfo:
        """Register ``declaration``: its module class (generated, or its ``module=``), its lean function
        and its metadata. The built-ins enter this way; :meth:`register_formula` builds one for you."""
        self._ensure_loaded()
        entry = _declared(declaration)
        cls = entry["module_cls"]
        aliases = self._validate(declaration.name, cls, entry["aliases"], override, _metadata(entry))
        with self._lock:
            return self._commit(declaration.name, cls, aliases=aliases, override=override, **_metadata(entry))

    def _validate(
        self,
        name: object,
        module_cls: object,
        aliases: Iterable[str],
        override: bool,
        metadata: dict,
        pending: list | None = None,
    ) -> tuple[str, ...]:
        """Check a registration without making it; returns ``aliases`` as a tuple."""
        key = _normalise(name)
        if not (isinstance(module_cls, type) and issubclass(module_cls, nn.Module)):
            raise TypeError(
                f"register({name!r}, ...) needs an nn.Module subclass (a class, not an instance or a "
                f"function), got {module_cls!r}"
            )
        if isinstance(aliases, str):
            raise TypeError(f"register({name!r}, aliases=...) takes a sequence of names, not the string {aliases!r}")
        aliases = tuple(aliases)
        keys = [key] + [_normalise(a, "alias") for a in aliases]
        if len(set(keys)) != len(keys):
            raise ValueError(f"register({name!r}, aliases={tuple(aliases)!r}) repeats a name")
        unknown_meta = [k for k in metadata if k not in KNOWN_METADATA and not k.startswith("x_")]
        if unknown_meta:
            raise TypeError(
                f"register({name!r}) got unknown metadata {unknown_meta}; known keys are "
                f"{', '.join(KNOWN_METADATA)} (prefix custom keys with 'x_')"
            )
        if override:
            return aliases
        staged = set()
        for args, kwargs in pending or ():
            staged.add(_normalise(args[0]))
            staged.update(_normalise(a) for a in kwargs.get("aliases", ()))
        for k in keys:
            if k in self._entries or k in self._aliases or k in staged:
                owner = self._resolve_key(k) if k not in staged else k
                raise ActivationNameTaken(
                    f"activation name {k!r} is already registered (by {owner!r}); pass override=True to "
                    "replace it, or choose another name"
                )
        return aliases

    def _commit(
        self,
        name: str,
        module_cls: type[nn.Module],
        aliases: tuple[str, ...] = (),
        override: bool = False,
        **metadata: Any,
    ) -> ActivationInfo:
        key = _normalise(name)
        alias_keys = tuple(_normalise(a, "alias") for a in aliases)
        if override:
            for k in (key, *alias_keys):
                self._drop(k)
        extra = {k: v for k, v in metadata.items() if k not in KNOWN_METADATA}
        declared = metadata.get("parameters")
        info = ActivationInfo(
            name=key,
            cls=module_cls,
            aliases=alias_keys,
            paper=str(metadata.get("paper", "")),
            formula=str(metadata.get("formula", "")),
            functional=metadata.get("functional"),
            approximates=str(metadata.get("approximates", "")),
            plugin=self._current_plugin,
            extra=MappingProxyType(extra),
            declared_parameters=tuple(declared) if declared is not None else None,
            declaration=metadata.get("declaration"),
        )
        self._entries[key] = info
        for alias in alias_keys:
            self._aliases[alias] = key
        for listener in list(self._listeners):
            listener(info)
        return info

    def _drop(self, key: str) -> None:
        """Remove ``key`` wherever it lives: as a canonical name (with its aliases) or as an alias."""
        if key in self._aliases:
            owner = self._aliases.pop(key)
            info = self._entries[owner]
            self._entries[owner] = _replace_aliases(info, tuple(a for a in info.aliases if a != key))
        elif key in self._entries:
            info = self._entries.pop(key)
            for alias in info.aliases:
                self._aliases.pop(alias, None)

    def subscribe(self, listener: Callable[[ActivationInfo], None]) -> None:
        """Call ``listener(info)`` for every activation registered now and from now on.

        Framework adapters use this so that third-party names reach timm and transformers too.
        """
        self._ensure_loaded()
        with self._lock:
            self._listeners.append(listener)
            for info in list(self._entries.values()):
                listener(info)

    # ----------------------------------------------------------------- lookup
    def _resolve_key(self, key: str) -> str:
        return self._aliases.get(key, key)

    def info(self, name: str) -> ActivationInfo:
        """The :class:`ActivationInfo` of ``name`` or one of its aliases (case-insensitive)."""
        self._ensure_loaded()
        key = _normalise(name)
        entry = self._entries.get(self._resolve_key(key))
        if entry is None:
            raise UnknownActivationError(name, [*self._entries, *self._aliases])
        return entry

    def get(self, name: str) -> type[nn.Module]:
        """The module class registered under ``name``."""
        return self.info(name).cls

    def create(self, name: str, **kwargs: Any) -> nn.Module:
        """A new instance of ``name``; an unknown keyword raises ``TypeError`` listing valid ones."""
        info = self.info(name)
        try:
            signature = inspect.signature(info.cls)
        except (TypeError, ValueError):  # no introspectable signature: let the class decide
            return info.cls(**kwargs)
        params = signature.parameters.values()
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params)
        valid = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [k for k in kwargs if k not in valid]
        if unknown and not accepts_any:
            raise unexpected_keywords(f"activation {info.name!r}", unknown, valid)
        return info.cls(**kwargs)

    def names(self, *, aliases: bool = False) -> list[str]:
        """Registered canonical names, sorted; with ``aliases=True`` the aliases too."""
        self._ensure_loaded()
        found = list(self._entries)
        if aliases:
            found += list(self._aliases)
        return sorted(found)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self._ensure_loaded()
        return self._resolve_key(name.strip().lower()) in self._entries

    def __iter__(self) -> Iterator[ActivationInfo]:
        self._ensure_loaded()
        return iter(sorted(self._entries.values(), key=lambda i: i.name))

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)


def _declared(declaration: Activation) -> dict[str, Any]:
    """What registering ``declaration`` passes to :meth:`Registry.register`: its class, aliases, metadata."""
    from .kernels.autograd import function_for
    from .nn.module import module_class

    if not isinstance(declaration, Activation):
        raise TypeError(f"declare() takes an actplug.declaration.Activation, got {type(declaration).__name__}")
    if declaration.module is not None:
        cls = resolve(declaration.module, f"the module class of activation {declaration.name!r}")
    else:
        cls = module_class(declaration)
    return {
        "module_cls": cls,
        "aliases": declaration.aliases,
        "paper": declaration.paper,
        "formula": declaration.formula,
        "functional": function_for(declaration),
        "approximates": declaration.approximates,
        "parameters": declaration.trainable,
        "declaration": declaration,
    }


def _metadata(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("module_cls", "aliases")}


def _replace_aliases(info: ActivationInfo, aliases: tuple[str, ...]) -> ActivationInfo:
    from dataclasses import replace

    return replace(info, aliases=aliases)


def _describe_entry_point(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    dist_name = f" from distribution {dist.name!r}" if dist is not None and getattr(dist, "name", None) else ""
    return f"{ep.name!r} ({ep.value}){dist_name}"


#: The process-wide registry behind ``actplug.names()``, ``get()``, ``create()``, ...
registry = Registry()
