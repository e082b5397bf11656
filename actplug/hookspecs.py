"""The plugin contract: the one hook through which every activation, built-in or third-party,
enters the registry.

A plugin is any object or module with a function marked ``@actplug.hookimpl`` and named like the
spec below. Publish it under the ``actplug`` entry-point group of your package::

    [project.entry-points.actplug]
    my_acts = "my_package.actplug_plugin"
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .registry import Registry

PROJECT_NAME = "actplug"
ENTRY_POINT_GROUP = "actplug"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def actplug_register_activations(registry: Registry) -> None:
    """Register activations with the registry's three calls:

    * ``registry.register_formula(name, forward, *, backward=None, params=None, trainable=(),
      aliases=(), **metadata)``: an elementwise activation by its formula; it gets a generated module,
      a memory-lean functional twin and the fused kernels of the built-ins;
    * ``registry.declare(declaration)``: a full :class:`actplug.declaration.Activation` (fused CPU
      forms, a Triton kernel's name), as the built-ins do;
    * ``registry.register(name, module_cls, aliases=(), **metadata)``: a ready ``nn.Module`` class.

    Metadata keys the registry understands: ``paper``, ``formula``, ``functional`` (the functional
    twin, for ``register``), ``approximates`` ("relu" or "leaky_relu", used by ``actplug plot``) and
    ``parameters`` (names of trainable parameters, derived from a default instance if omitted).
    """


# --------------------------------------------------------------------------------------------
# Framework adapters (actplug.integrations.*) are plugins too; third parties may adapt more
# frameworks the same way.


@hookspec
def actplug_framework_modules() -> list[str]:
    """Names of modules whose import should trigger :func:`actplug_framework_imported` (e.g. ``["timm"]``).

    Called when the plugin is added; the modules are watched without importing them.
    """


@hookspec
def actplug_framework_imported(name: str, module: ModuleType, registry: Registry) -> None:
    """Adapt framework module ``name`` (just imported, or already imported when actplug loaded).

    Called once per watched module, whatever the order in which actplug and the framework are
    imported. Implementations add names to the framework's tables in place and must never replace
    an entry the framework defines itself.
    """


@hookspec
def actplug_activation_types() -> list[type]:
    """Activation module classes of a framework that ``actplug.swap`` replaces by default.

    Return only classes of frameworks already in ``sys.modules``: never import a framework here.
    """


@hookspec
def actplug_check_swap(model: object, plan: object) -> None:
    """Raise (a ``ValueError`` naming the reason and the fix) when ``plan`` cannot be applied to ``model``.

    Called by ``actplug.swap`` with every new module built (and fitted) but before any is put in
    place, so that a refusal leaves the model as it was. ``plan`` is an
    :class:`actplug.integrations.swap.SwapPlan`.
    """


@hookspec
def actplug_model_swapped(model: object, plan: object) -> None:
    """Update what describes ``model`` (e.g. a transformers config's activation key) after ``plan`` was applied."""
