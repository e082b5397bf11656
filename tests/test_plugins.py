"""Plugin discovery: the built-in plugin, third-party plugins installed through the ``actplug``
entry-point group (a throwaway ``*.dist-info`` on ``sys.path``), broken plugins, and the
promise that ``import actplug`` stays light.

Each test builds its own ``actplug.Registry()``; the process-wide one is loaded before any
throwaway distribution is put on ``sys.path`` so that it never sees them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import actplug
from actplug import ActplugPluginWarning, Registry
from actplug.declaration import Activation
from actplug.plugins import builtin

BUILTINS = ["ash", "fpflu", "gish", "lpflu", "pflu", "smu", "smu1", "srelu"]

GOOD_PLUGIN = """
import torch
from torch import nn

import actplug


class Swishy(nn.Module):
    def __init__(self, beta: float = 1.0, inplace: bool = False):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


@actplug.hookimpl
def actplug_register_activations(registry):
    registry.register(
        "swishy",
        Swishy,
        aliases=("swishy2",),
        paper="Ramachandran et al. 2017, Searching for activation functions",
        formula="x sigmoid(beta x)",
    )
"""


@pytest.fixture(autouse=True)
def _process_registry_loaded():
    """Load the process-wide registry now, so that no throwaway plugin below reaches it."""
    before = actplug.names(aliases=True)
    yield
    assert actplug.names(aliases=True) == before, "a test leaked into the process-wide registry"


class Site:
    """A folder on ``sys.path`` holding throwaway plugin modules and their ``*.dist-info``."""

    def __init__(self, root: Path):
        self.root = root
        self.modules: list[str] = []

    def install(self, module: str, source: str, *, entry_point: str, dist: str | None = None) -> None:
        (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        dist = dist or module.replace("_", "-")
        info = self.root / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[actplug]\n{entry_point} = {module}\n")
        self.modules.append(module)
        importlib.invalidate_caches()


@pytest.fixture
def site(tmp_path, monkeypatch, _process_registry_loaded):
    root = tmp_path / "site"
    root.mkdir()
    s = Site(root)
    monkeypatch.syspath_prepend(str(root))
    yield s
    for module in s.modules:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


# ------------------------------------------------------------------------ the built-in plugin
def test_builtin_plugin_is_registered_through_pluggy():
    reg = Registry()
    reg.names()
    pm = reg.plugin_manager
    assert pm.has_plugin("builtin")
    assert pm.get_plugin("builtin") is builtin
    impls = pm.hook.actplug_register_activations.get_hookimpls()
    assert "builtin" in [impl.plugin_name for impl in impls]
    assert all(reg.info(name).plugin == "builtin" for name in BUILTINS)


def test_process_registry_uses_the_builtin_plugin():
    pm = actplug.registry.plugin_manager
    assert pm.get_plugin("builtin") is builtin
    assert pm.project_name == "actplug"


def test_builtin_plugin_is_published_as_an_entry_point():
    eps = importlib.metadata.entry_points(group="actplug")
    by_name = {ep.name: ep for ep in eps}
    assert "builtin" in by_name
    assert by_name["builtin"].value == "actplug.plugins.builtin"
    assert by_name["builtin"].load() is builtin


def test_builtin_hook_only_uses_the_public_register_call():
    """The built-in plugin registers each of its declarations through the public ``registry.declare``."""
    calls = []

    class Recorder:  # only the public call: anything else the hook touched would raise AttributeError
        def declare(self, declaration, override=False):
            calls.append((declaration, override))

    assert hasattr(builtin.actplug_register_activations, "actplug_impl")
    builtin.actplug_register_activations(registry=Recorder())
    assert sorted(d.name for d, _ in calls) == BUILTINS
    assert all(isinstance(d, Activation) for d, _ in calls)
    assert all(not override for _, override in calls)
    assert all(d.paper and d.formula and d.approximates for d, _ in calls)
    assert {d.name: d.aliases for d, _ in calls}["smu1"] == ("smu-1", "smu_1")


def test_hookspec_is_the_contract():
    pm = actplug.registry.plugin_manager
    assert pm.hook.actplug_register_activations.spec is not None
    assert pm.hook.actplug_register_activations.spec.argnames == ("registry",)
    assert actplug.hookimpl is actplug.hookspecs.hookimpl
    assert actplug.ENTRY_POINT_GROUP == "actplug"


# ------------------------------------------------------------------------ third-party plugins
def test_third_party_plugin_found_through_entry_point(site):
    site.install("my_acts", GOOD_PLUGIN, entry_point="myacts")
    reg = Registry()
    assert reg.names() == sorted([*BUILTINS, "swishy"])
    assert "swishy2" in reg.names(aliases=True)
    info = reg.info("SWISHY2")
    assert info.name == "swishy"
    assert info.plugin == "myacts"
    assert info.aliases == ("swishy2",)
    assert info.formula == "x sigmoid(beta x)"
    assert info.defaults == {"beta": 1.0, "inplace": False}
    module = reg.create("swishy", beta=2.0)
    assert type(module).__name__ == "Swishy"
    x = torch.linspace(-2, 2, 5)
    torch.testing.assert_close(module(x), x * torch.sigmoid(2 * x))
    assert reg.plugin_manager.has_plugin("myacts")
    assert reg.plugin_manager.get_plugin("myacts") is sys.modules["my_acts"]
    # built-ins still there and still from the built-in plugin
    assert reg.info("smu").plugin == "builtin"
    # no unknown kwarg slips through for plugin classes either
    with pytest.raises(TypeError, match="did you mean 'beta'"):
        reg.create("swishy", betta=2.0)


def test_third_party_plugin_is_skipped_without_entry_point_group(site):
    site.install("my_acts_off", GOOD_PLUGIN, entry_point="myacts")
    reg = Registry(entry_point_group=None)
    assert reg.names() == BUILTINS
    assert "my_acts_off" not in sys.modules


def test_load_entry_points_picks_up_later_installs(site):
    reg = Registry()
    assert "swishy" not in reg.names()
    site.install("my_acts_late", GOOD_PLUGIN, entry_point="late")
    assert reg.load_entry_points() == ["late"]
    assert reg.info("swishy").plugin == "late"
    assert reg.load_entry_points() == []  # loaded once only


def test_plugin_may_override_a_builtin_explicitly(site):
    site.install(
        "my_override",
        """
        from torch import nn
        import actplug

        class MySMU(nn.Module):
            def forward(self, x):
                return x

        @actplug.hookimpl
        def actplug_register_activations(registry):
            registry.register("smu", MySMU, override=True)
        """,
        entry_point="override",
    )
    reg = Registry()
    assert reg.get("smu").__name__ == "MySMU"
    assert reg.info("smu").plugin == "override"
    assert actplug.get("smu") is actplug.nn.SMU


def test_plugin_hook_can_read_the_registry(site):
    site.install(
        "my_reader",
        """
        import actplug

        @actplug.hookimpl
        def actplug_register_activations(registry):
            assert "smu" in registry.names()
            registry.register("smu_again", registry.get("smu"), aliases=("smu-again",))
        """,
        entry_point="reader",
    )
    reg = Registry()
    assert reg.get("smu-again") is actplug.nn.SMU
    assert reg.info("smu_again").plugin == "reader"


# ------------------------------------------------------------------------ broken plugins
BROKEN_IMPORT = """
import actplug_dependency_that_is_not_installed  # noqa: F401
"""

BROKEN_HALFWAY = """
from torch import nn
import actplug

class Half(nn.Module):
    def forward(self, x):
        return x

@actplug.hookimpl
def actplug_register_activations(registry):
    registry.register("halfway", Half, aliases=("half-way",))
    raise RuntimeError("plugin bug after the first registration")
"""

TAKES_SMU = """
from torch import nn
import actplug

class Thief(nn.Module):
    def forward(self, x):
        return x

@actplug.hookimpl
def actplug_register_activations(registry):
    registry.register("thief_ok", Thief)
    registry.register("SMU", Thief)
"""


@pytest.mark.parametrize(
    ("module", "source", "ep", "expected"),
    [
        ("broken_import", BROKEN_IMPORT, "brokenimport", "failed to import.*ModuleNotFoundError"),
        ("broken_halfway", BROKEN_HALFWAY, "brokenhalf", "raised while registering.*plugin bug"),
        ("takes_smu", TAKES_SMU, "takessmu", "raised while registering.*ActivationNameTaken.*'smu'"),
    ],
)
def test_broken_plugin_warns_and_registry_keeps_working(site, module, source, ep, expected):
    site.install("my_acts_good", GOOD_PLUGIN, entry_point="myacts")
    site.install(module, source, entry_point=ep, dist=f"{module}-dist")
    reg = Registry()
    with pytest.warns(ActplugPluginWarning, match=expected) as record:
        names = reg.names()
    messages = [str(w.message) for w in record if issubclass(w.category, ActplugPluginWarning)]
    assert len(messages) == 1
    assert f"'{ep}'" in messages[0]
    assert module in messages[0]
    assert f"'{module}-dist'" in messages[0]
    assert names == sorted([*BUILTINS, "swishy"])
    assert reg.info("swishy").plugin == "myacts"
    assert reg.get("smu") is actplug.nn.SMU
    assert isinstance(reg.create("smu", alpha=0.01), actplug.nn.SMU)
    # nothing of the broken plugin remains, not even what it registered before failing
    for leftover in ("halfway", "half-way", "thief_ok"):
        assert leftover not in reg
    assert reg.plugin_manager.is_blocked(ep)
    # and it is reported once, not on every lookup
    with warnings.catch_warnings():
        warnings.simplefilter("error", ActplugPluginWarning)
        assert reg.names() == names
        assert reg.load_entry_points() == []


def test_plugin_registering_same_name_twice_is_rejected_whole(site):
    site.install(
        "my_twice",
        """
        from torch import nn
        import actplug

        class A(nn.Module):
            def forward(self, x):
                return x

        @actplug.hookimpl
        def actplug_register_activations(registry):
            registry.register("twice", A)
            registry.register("Twice", A)
        """,
        entry_point="twice",
    )
    reg = Registry()
    with pytest.warns(ActplugPluginWarning, match="'twice'.*already registered"):
        reg.names()
    assert "twice" not in reg


def test_plugin_with_wrong_hook_signature_is_rejected(site):
    site.install(
        "my_badsig",
        """
        import actplug

        @actplug.hookimpl
        def actplug_register_activations(reg, extra):
            raise AssertionError("never called")
        """,
        entry_point="badsig",
    )
    reg = Registry()
    with pytest.warns(ActplugPluginWarning, match="'badsig'.*rejected"):
        assert reg.names() == BUILTINS


def test_plugin_with_bad_metadata_is_skipped(site):
    site.install(
        "my_badmeta",
        """
        from torch import nn
        import actplug

        class A(nn.Module):
            def forward(self, x):
                return x

        @actplug.hookimpl
        def actplug_register_activations(registry):
            registry.register("badmeta", A, papr="typo")
        """,
        entry_point="badmeta",
    )
    reg = Registry()
    with pytest.warns(ActplugPluginWarning, match="'badmeta'.*unknown metadata"):
        assert reg.names() == BUILTINS


def test_first_lookup_from_another_thread_waits_for_plugins(site):
    """A lookup racing with discovery must see the finished table, not a half-loaded one."""
    site.install(
        "my_racy",
        """
        import threading
        from torch import nn
        import actplug

        SEEN = []
        THREADS = []

        class Racy(nn.Module):
            def forward(self, x):
                return x

        @actplug.hookimpl
        def actplug_register_activations(registry):
            t = threading.Thread(target=lambda: SEEN.append(registry.names()))
            THREADS.append(t)
            t.start()
            t.join(0.5)  # a correct registry blocks that lookup until loading is done
            registry.register("racy", Racy)
        """,
        entry_point="racy",
    )
    reg = Registry()
    assert "racy" in reg.names()
    racy = sys.modules["my_racy"]
    for t in racy.THREADS:
        t.join()
    assert len(racy.SEEN) == 1
    assert "racy" in racy.SEEN[0]


# ------------------------------------------------------------------------ add_plugin
class ObjectPlugin:
    class Cube(nn.Module):
        def forward(self, x):
            return x**3

    @actplug.hookimpl
    def actplug_register_activations(self, registry):
        registry.register("cube", self.Cube, formula="x^3")


def test_add_plugin_object_without_entry_point():
    reg = Registry(entry_point_group=None)
    plugin = ObjectPlugin()
    assert reg.add_plugin(plugin, name="cubes") is True
    assert reg.names() == sorted([*BUILTINS, "cube"])
    assert reg.info("cube").plugin == "cubes"
    assert reg.plugin_manager.get_plugin("cubes") is plugin
    torch.testing.assert_close(reg.create("cube")(torch.tensor([2.0])), torch.tensor([8.0]))


def test_add_plugin_module_gets_its_module_name():
    module = types.ModuleType("scratch_acts")

    class Sq(nn.Module):
        def forward(self, x):
            return x * x

    @actplug.hookimpl
    def actplug_register_activations(registry):
        registry.register("sq", Sq)

    module.actplug_register_activations = actplug_register_activations
    reg = Registry(entry_point_group=None)
    assert reg.add_plugin(module)
    assert reg.info("sq").plugin == "scratch_acts"


def test_add_plugin_loads_builtins_first():
    reg = Registry(entry_point_group=None)
    reg.add_plugin(ObjectPlugin(), name="cubes")
    assert set(BUILTINS) <= set(reg.names())


def test_add_plugin_twice_warns_and_returns_false():
    reg = Registry(entry_point_group=None)
    plugin = ObjectPlugin()
    assert reg.add_plugin(plugin, name="cubes")
    with pytest.warns(ActplugPluginWarning, match="cubes"):
        assert reg.add_plugin(plugin, name="cubes") is False
    assert reg.names() == sorted([*BUILTINS, "cube"])


def test_add_plugin_that_fails_warns_and_leaves_nothing():
    class Failing:
        @actplug.hookimpl
        def actplug_register_activations(self, registry):
            registry.register("ghost", ObjectPlugin.Cube)
            raise ValueError("boom")

    reg = Registry(entry_point_group=None)
    with pytest.warns(ActplugPluginWarning, match="'failing'.*ValueError: boom"):
        assert reg.add_plugin(Failing(), name="failing") is False
    assert "ghost" not in reg
    assert reg.names() == BUILTINS


def test_add_plugin_name_clash_with_builtin_warns():
    reg = Registry(entry_point_group=None)

    class Clash:
        @actplug.hookimpl
        def actplug_register_activations(self, registry):
            registry.register("ash", ObjectPlugin.Cube)

    with pytest.warns(ActplugPluginWarning, match="'ash' is already registered"):
        assert reg.add_plugin(Clash(), name="clash") is False
    assert reg.get("ash") is actplug.nn.ASH


def test_add_plugin_is_seen_by_subscribers():
    reg = Registry(entry_point_group=None)
    seen = []
    reg.subscribe(lambda info: seen.append((info.name, info.plugin)))
    reg.add_plugin(ObjectPlugin(), name="cubes")
    assert seen[-1] == ("cube", "cubes")


def test_module_level_add_plugin(monkeypatch):
    private = Registry(entry_point_group=None)
    monkeypatch.setattr(actplug, "registry", private)
    assert actplug.add_plugin(ObjectPlugin(), name="cubes") is True
    assert private.info("cube").plugin == "cubes"


# ------------------------------------------------------------------------ fresh processes
def _run(code: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_process_registry_discovers_installed_plugin(site):
    site.install("my_acts_proc", GOOD_PLUGIN, entry_point="myacts")
    proc = _run(
        "import actplug; print(actplug.names()); print(actplug.info('swishy2').plugin); "
        "print(type(actplug.create('swishy', beta=3.0)).__name__)",
        site.root,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == repr(sorted([*BUILTINS, "swishy"]))
    assert lines[1:] == ["myacts", "Swishy"]


def test_process_with_broken_plugin_warns_and_carries_on(site):
    site.install("broken_import_proc", BROKEN_IMPORT, entry_point="brokenproc")
    proc = _run("import actplug; print(actplug.names())", site.root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(BUILTINS)
    assert "ActplugPluginWarning" in proc.stderr
    assert "'brokenproc'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_import_actplug_imports_no_framework():
    heavy = ["timm", "transformers", "torchvision", "matplotlib"]
    proc = _run(
        "import sys, actplug\n"
        "actplug.names()\n"
        "actplug.create('smu')\n"
        "actplug.info('ash').parameters\n"
        "import actplug.cli\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_heavy_modules_are_importable_here():
    """The no-import test above only means something if these could have been imported."""
    for name in ("timm", "transformers", "torchvision", "matplotlib"):
        assert importlib.util.find_spec(name) is not None, name
