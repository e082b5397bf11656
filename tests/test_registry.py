"""The activation registry: names, aliases, lookups, metadata, errors and registration rules.

Every test that registers something builds its own ``actplug.Registry`` so that nothing leaks
into the process-wide registry the other test files use.
"""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

import actplug
from actplug import ActivationNameTaken, Registry, UnknownActivationError

BUILTINS = ["ash", "fpflu", "gish", "lpflu", "pflu", "smu", "smu1", "srelu"]


class Doubler(nn.Module):
    def __init__(self, scale: float = 2.0, inplace: bool = False):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


class Tripler(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3 * x


@pytest.fixture
def reg() -> Registry:
    """A private registry with the built-ins and no entry points."""
    return Registry(entry_point_group=None)


# ------------------------------------------------------------------------ names and lookups
def test_names_lists_the_builtins_sorted():
    assert actplug.names() == BUILTINS
    assert actplug.registry.names() == BUILTINS


def test_names_with_aliases_adds_smu1_aliases():
    assert actplug.names(aliases=True) == sorted([*BUILTINS, "smu-1", "smu_1"])


def test_private_registry_without_entry_points_still_has_builtins(reg):
    assert reg.names() == BUILTINS
    assert len(reg) == len(BUILTINS)
    assert [i.name for i in reg] == BUILTINS


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("smu", actplug.nn.SMU),
        ("smu1", actplug.nn.SMU1),
        ("smu-1", actplug.nn.SMU1),
        ("smu_1", actplug.nn.SMU1),
        ("lpflu", actplug.nn.LPFLU),
        ("pflu", actplug.nn.PFLU),
        ("fpflu", actplug.nn.FPFLU),
        ("srelu", actplug.nn.SReLU),
        ("ash", actplug.nn.ASH),
        ("gish", actplug.nn.Gish),
    ],
)
def test_get_returns_the_class(name, cls):
    assert actplug.get(name) is cls
    assert isinstance(actplug.create(name), cls)


@pytest.mark.parametrize("spelling", ["SMU", "Smu", " smu ", "sMu\t"])
def test_lookup_is_case_and_space_insensitive(spelling):
    assert actplug.get(spelling) is actplug.nn.SMU
    assert actplug.info(spelling).name == "smu"
    assert spelling in actplug.registry


@pytest.mark.parametrize("spelling", ["Smu_1", "SMU-1", " smu1 "])
def test_alias_lookup_is_case_insensitive(spelling):
    assert actplug.get(spelling) is actplug.nn.SMU1
    assert actplug.info(spelling).name == "smu1"


def test_contains():
    reg = actplug.registry
    assert "smu" in reg
    assert "SMU_1" in reg
    assert "smuu" not in reg
    assert 3 not in reg
    assert None not in reg


def test_create_passes_kwargs():
    smu = actplug.create("smu", alpha=0.01, mu=2.5)
    assert isinstance(smu, actplug.nn.SMU)
    assert smu.alpha == pytest.approx(0.01)
    assert float(smu.mu.detach()) == pytest.approx(2.5)
    assert isinstance(smu.mu, nn.Parameter)

    frozen = actplug.create("SMU-1", trainable=False)
    assert isinstance(frozen, actplug.nn.SMU1)
    assert not isinstance(frozen.mu, nn.Parameter)
    assert [n for n, _ in frozen.named_parameters()] == []

    ash = actplug.create("ash", z=1.5, alpha=2.0)
    assert float(ash.z.detach()) == pytest.approx(1.5)
    assert float(ash.alpha.detach()) == pytest.approx(2.0)


def test_create_returns_new_instances():
    a, b = actplug.create("smu"), actplug.create("smu")
    assert a is not b
    assert a.mu is not b.mu


def test_create_module_computes():
    x = torch.linspace(-3, 3, 7)
    out = actplug.create("smu", alpha=0.0, mu=1e6)(x)
    torch.testing.assert_close(out, torch.relu(x), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------ metadata
def test_info_of_smu():
    info = actplug.info("smu")
    assert info.name == "smu"
    assert info.cls is actplug.nn.SMU
    assert "erf" in info.formula
    assert "smu.txt" in info.paper
    assert info.defaults == {"alpha": 0.25, "mu": 1e6, "trainable": True, "inplace": False}
    assert info.parameters == ("mu",)
    assert info.aliases == ()
    assert info.plugin == "builtin"
    assert info.functional is actplug.functional.smu
    assert info.approximates == "leaky_relu"


def test_info_of_alias_is_the_canonical_entry():
    info = actplug.info("smu_1")
    assert info is actplug.info("smu1")
    assert info.name == "smu1"
    assert set(info.aliases) == {"smu-1", "smu_1"}
    assert info.parameters == ("mu",)
    assert "sqrt" in info.formula


@pytest.mark.parametrize(
    ("name", "parameters"),
    [
        ("smu", ("mu",)),
        ("smu1", ("mu",)),
        ("ash", ("z", "alpha")),
        ("lpflu", ()),
        ("pflu", ()),
        ("fpflu", ()),
        ("gish", ()),
        ("srelu", ()),
    ],
)
def test_info_parameters(name, parameters):
    assert actplug.info(name).parameters == parameters


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_has_metadata(name):
    info = actplug.info(name)
    assert info.formula
    assert info.paper
    assert info.plugin == "builtin"
    assert callable(info.functional)
    assert info.approximates in ("relu", "leaky_relu")
    assert "inplace" in info.defaults
    assert info.defaults["inplace"] is False
    # inplace=True is what timm and torchvision pass; every built-in must accept it
    assert isinstance(actplug.create(name, inplace=True), info.cls)


def test_info_defaults_of_other_builtins():
    assert actplug.info("lpflu").defaults == {
        "lower": 0.0,
        "upper": 0.02,
        "momentum": 0.1,
        "randomized": True,
        "inplace": False,
    }
    assert actplug.info("ash").defaults["z"] == 0.0
    assert actplug.info("ash").defaults["alpha"] == 1.0
    assert actplug.info("srelu").defaults["trainable"] is False


def test_info_is_immutable():
    info = actplug.info("smu")
    with pytest.raises(AttributeError):
        info.name = "other"  # type: ignore[misc]


# ------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("typo", "expected"),
    [("smuu", "smu"), ("lpfl", "lpflu"), ("SMUU", "smu"), ("srel", "srelu"), ("gsh", "gish")],
)
def test_unknown_name_lists_close_matches(typo, expected):
    with pytest.raises(UnknownActivationError) as excinfo:
        actplug.get(typo)
    err = excinfo.value
    assert isinstance(err, KeyError)
    assert expected in err.matches
    message = str(err)
    assert f"'{expected}'" in message
    assert typo in message
    # readable: not KeyError's repr of the message with quotes around everything
    assert not message.startswith(("'", '"'))
    assert "\n" not in message


def test_unknown_name_is_a_key_error_for_every_entry_point():
    for call in (actplug.get, actplug.create, actplug.info):
        with pytest.raises(KeyError, match="unknown activation 'smuu'"):
            call("smuu")


def test_unknown_name_without_close_match_still_points_to_list():
    with pytest.raises(UnknownActivationError) as excinfo:
        actplug.get("zzzzzzzzqq")
    assert excinfo.value.matches == []
    assert "Did you mean" not in str(excinfo.value)
    assert "actplug list" in str(excinfo.value)


def test_unknown_name_with_spaces_and_capitals_still_matches():
    with pytest.raises(UnknownActivationError) as excinfo:
        actplug.get("  LPFL  ")
    assert "lpflu" in excinfo.value.matches


@pytest.mark.parametrize("bad", ["", "   ", None, 3, ("smu",)])
def test_non_string_or_empty_name_raises_type_error(bad):
    with pytest.raises(TypeError, match="non-empty string"):
        actplug.get(bad)


def test_unknown_kwarg_names_valid_kwargs_and_suggests():
    with pytest.raises(TypeError) as excinfo:
        actplug.create("smu", mue=3)
    message = str(excinfo.value)
    assert "'mue'" in message
    assert "did you mean 'mu'" in message
    for valid in ("alpha", "mu", "trainable", "inplace"):
        assert valid in message


def test_unknown_kwarg_without_close_match():
    with pytest.raises(TypeError) as excinfo:
        actplug.create("pflu", zzz=1)
    message = str(excinfo.value)
    assert "'zzz'" in message
    assert "did you mean" not in message
    assert "inplace" in message


def test_bad_kwarg_value_raises_from_module():
    with pytest.raises(TypeError, match="alpha"):
        actplug.create("smu", alpha="big")
    with pytest.raises(TypeError, match="trainable"):
        actplug.create("smu", trainable="no")


# ------------------------------------------------------------------------ registration
def test_register_new_name(reg):
    info = reg.register("double", Doubler, aliases=("Dbl", "x2"), paper="p", formula="2x", x_source="test")
    assert info.name == "double"
    assert info.aliases == ("dbl", "x2")
    assert info.plugin == "user"
    assert info.extra["x_source"] == "test"
    assert reg.get("DBL") is Doubler
    assert reg.info("x2") is info
    assert "double" in reg.names()
    assert {"dbl", "x2"} <= set(reg.names(aliases=True))
    assert "dbl" not in reg.names()
    module = reg.create("double", scale=5.0)
    assert module.scale == 5.0
    assert info.defaults == {"scale": 2.0, "inplace": False}
    assert info.parameters == ()
    # the process-wide registry did not see it
    assert "double" not in actplug.names()


def test_register_declared_parameters(reg):
    info = reg.register("triple", Tripler, parameters=["a", "b"])
    assert info.parameters == ("a", "b")
    assert isinstance(reg.create("triple"), Tripler)
    assert reg.info("triple").defaults == {}


@pytest.mark.parametrize("name", ["smu", "SMU", "smu-1", "Smu_1"])
def test_register_taken_name_raises(reg, name):
    with pytest.raises(ActivationNameTaken, match="override=True") as excinfo:
        reg.register(name, Doubler)
    assert isinstance(excinfo.value, ValueError)
    assert reg.get(name) is not Doubler


def test_register_taken_alias_raises_and_registers_nothing(reg):
    with pytest.raises(ActivationNameTaken, match="smu_1"):
        reg.register("fresh", Doubler, aliases=("smu_1",))
    assert "fresh" not in reg
    assert reg.get("smu_1") is actplug.nn.SMU1


def test_register_override_replaces(reg):
    info = reg.register("smu", Doubler, override=True, formula="2x")
    assert reg.get("smu") is Doubler
    assert reg.info("smu") is info
    assert reg.info("smu").formula == "2x"
    assert reg.info("smu").plugin == "user"
    assert isinstance(reg.create("smu"), Doubler)
    assert reg.names() == BUILTINS
    # the process-wide registry is untouched
    assert actplug.get("smu") is actplug.nn.SMU


def test_register_override_of_an_alias_moves_only_that_alias(reg):
    reg.register("smu_1", Doubler, override=True)
    assert reg.get("smu_1") is Doubler
    assert reg.get("smu-1") is actplug.nn.SMU1
    assert reg.info("smu1").aliases == ("smu-1",)
    assert "smu_1" in reg.names()


def test_register_override_of_a_name_drops_its_aliases(reg):
    reg.register("smu1", Doubler, override=True)
    assert reg.get("smu1") is Doubler
    assert reg.info("smu1").aliases == ()
    with pytest.raises(UnknownActivationError):
        reg.get("smu-1")


def test_register_alias_may_be_taken_over_with_override(reg):
    reg.register("mine", Doubler, aliases=("smu-1",), override=True)
    assert reg.get("smu-1") is Doubler
    assert reg.get("smu_1") is actplug.nn.SMU1
    assert reg.info("smu1").aliases == ("smu_1",)


@pytest.mark.parametrize("bad", [Doubler(), torch.relu, int, "Doubler", None])
def test_register_non_module_class_raises_type_error(reg, bad):
    with pytest.raises(TypeError, match=r"nn\.Module subclass"):
        reg.register("bad", bad)
    assert "bad" not in reg


def test_register_unknown_metadata_raises_type_error(reg):
    with pytest.raises(TypeError, match="unknown metadata") as excinfo:
        reg.register("double", Doubler, papr="typo")
    assert "paper" in str(excinfo.value)
    assert "x_" in str(excinfo.value)
    assert "double" not in reg


def test_register_aliases_as_string_raises(reg):
    with pytest.raises(TypeError, match="sequence"):
        reg.register("double", Doubler, aliases="dbl")


def test_register_repeated_alias_raises(reg):
    with pytest.raises(ValueError, match="repeats"):
        reg.register("double", Doubler, aliases=("DOUBLE",))


@pytest.mark.parametrize("bad", ["", "  ", None, 5])
def test_register_bad_name_raises(reg, bad):
    with pytest.raises(TypeError):
        reg.register(bad, Doubler)


def test_module_level_register_goes_to_process_registry(monkeypatch):
    private = Registry(entry_point_group=None)
    monkeypatch.setattr(actplug, "registry", private)
    info = actplug.register("double", Doubler, aliases=("dbl",))
    assert private.get("dbl") is Doubler
    assert info.name == "double"
    with pytest.raises(ActivationNameTaken):
        actplug.register("double", Tripler)
    actplug.register("double", Tripler, override=True)
    assert private.get("double") is Tripler


# ------------------------------------------------------------------------ subscribe
def test_subscribe_replays_and_follows(reg):
    seen: list[str] = []
    reg.subscribe(lambda info: seen.append(info.name))
    assert sorted(seen) == BUILTINS
    reg.register("double", Doubler)
    assert seen[-1] == "double"
    reg.register("smu", Tripler, override=True)
    assert seen[-1] == "smu"
    assert len(seen) == len(BUILTINS) + 2


def test_subscribe_receives_info_objects(reg):
    infos: list[actplug.ActivationInfo] = []
    reg.subscribe(infos.append)
    reg.register("double", Doubler, aliases=("dbl",))
    assert infos[-1].cls is Doubler
    assert infos[-1].aliases == ("dbl",)


def test_subscribe_does_not_see_failed_registrations(reg):
    seen: list[str] = []
    reg.subscribe(lambda info: seen.append(info.name))
    n = len(seen)
    with pytest.raises(ActivationNameTaken):
        reg.register("smu", Doubler)
    assert len(seen) == n


# ------------------------------------------------------------------------ lazy loading
def test_registry_loads_lazily():
    reg = Registry(entry_point_group=None)
    assert reg._loaded is False
    assert reg.plugin_manager.get_plugins() == set()
    reg.names()
    assert reg._loaded is True
    assert reg.plugin_manager.has_plugin("builtin")


def test_concurrent_first_lookups_all_see_the_builtins():
    reg = Registry(entry_point_group=None)
    barrier = threading.Barrier(8)
    results: list[list[str]] = []

    def look():
        barrier.wait()
        results.append(reg.names())

    threads = [threading.Thread(target=look) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [BUILTINS] * 8


def test_register_accepts_any_iterable_of_aliases(reg):
    info = reg.register("double", Doubler, aliases=(a for a in ["dbl", "x2"]))
    assert info.aliases == ("dbl", "x2")
    assert reg.get("x2") is Doubler
