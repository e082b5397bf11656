"""timm adapter: every registered name (and alias) works in ``get_act_layer``, ``get_act_fn``,
``create_act_layer`` and ``timm.create_model(..., act_layer=NAME)``; timm's own names keep timm's
classes and functions; a misspelled name fails with close matches.

Real timm models (resnet18, efficientnet_b0, mobilenetv3_small_100, a small ViT), no mocks.
Which other families resolve ``act_layer`` is recorded in docs/timm_families.md.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections import Counter

import pytest
import timm
import torch
from timm.layers import create_act, create_act_layer, get_act_fn, get_act_layer
from torch import nn

import actplug
from actplug import UnknownActivationError

SEEDS = ["smu", "smu1", "lpflu", "srelu", "ash"]
ALL_NAMES = actplug.names(aliases=True)

#: model name -> (create_model kwargs, class name of the activation its act_layer default builds)
MODELS = {
    "resnet18": ({}, "ReLU"),
    "efficientnet_b0": ({}, "SiLU"),
    "mobilenetv3_small_100": ({}, "Hardswish"),
    "vit_tiny_patch16_224": ({"img_size": 32, "patch_size": 8, "depth": 4}, "GELU"),
}

TABLES = ("_ACT_LAYER_DEFAULT", "_ACT_LAYER_ME", "_ACT_FN_DEFAULT", "_ACT_FN_ME")

DUMP_TABLES = """
import json, sys
from timm.layers import create_act
assert not any(m == "actplug" or m.startswith("actplug.") for m in sys.modules)
print(json.dumps({
    t: {k: f"{v.__module__}.{v.__qualname__}" for k, v in getattr(create_act, t).items()} for t in TABLES
}))
"""


def _qualname(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _class_counts(model: nn.Module) -> Counter[str]:
    return Counter(type(m).__name__ for m in model.modules())


@functools.cache
def _default_activation_count(model_name: str) -> int:
    """How many activation modules timm's default ``act_layer`` puts into ``model_name``."""
    kwargs, default_cls = MODELS[model_name]
    model = timm.create_model(model_name, pretrained=False, num_classes=3, **kwargs)
    return _class_counts(model)[default_cls]


# ------------------------------------------------------------------------------ name lookups
def test_every_registered_name_and_alias_is_in_timms_tables():
    added = set(create_act._ACT_LAYER_DEFAULT) - {
        k for k, v in create_act._ACT_LAYER_DEFAULT.items() if not v.__module__.startswith("actplug")
    }
    assert set(ALL_NAMES) <= set(create_act._ACT_LAYER_DEFAULT)
    assert set(ALL_NAMES) <= set(create_act._ACT_FN_DEFAULT)
    assert added == set(ALL_NAMES)
    assert {"smu-1", "smu_1"} <= set(ALL_NAMES)  # the aliases are really part of what is checked


@pytest.mark.parametrize("name", ALL_NAMES)
def test_get_act_layer_returns_the_registered_class(name):
    assert get_act_layer(name) is actplug.get(name)
    assert get_act_layer(name.upper()) is actplug.get(name)  # timm lower-cases names


@pytest.mark.parametrize("name", ALL_NAMES)
def test_create_act_layer_builds_the_registered_module(name):
    x = torch.randn(2, 4, 5, 5)
    for inplace in (None, True, False):
        layer = create_act_layer(name, inplace=inplace)
        assert type(layer) is actplug.get(name)
        y = layer(x)
        assert y.shape == x.shape and torch.isfinite(y).all()
    kwargs = _non_default_kwargs(name)
    if kwargs:  # create_act_layer passes keyword arguments on to the class
        assert (
            create_act_layer(name, inplace=True, **kwargs).extra_repr() == actplug.create(name, **kwargs).extra_repr()
        )
        assert create_act_layer(name, **kwargs).extra_repr() != actplug.create(name).extra_repr()


def _non_default_kwargs(name: str) -> dict:
    """A keyword whose non-default value shows in ``extra_repr`` (none for the parameter-free ones)."""
    cls = actplug.get(name)
    if cls in (actplug.nn.SMU, actplug.nn.SMU1):
        return {"mu": 2.5}
    if cls is actplug.nn.LPFLU:
        return {"upper": 0.1}
    if cls is actplug.nn.SReLU:
        return {"beta": 0.5}
    if cls is actplug.nn.ASH:
        return {"z": 1.0}
    return {}


@pytest.mark.parametrize("name", ALL_NAMES)
def test_get_act_fn_matches_the_default_module(name):
    fn = get_act_fn(name)
    assert callable(fn)
    x = torch.randn(3, 4, 6, 6)
    expected = actplug.create(name).eval()(x)
    torch.testing.assert_close(fn(x), expected)
    # timm calls its activation functions as fn(x, inplace=...) (nfnet's GammaAct does).
    torch.testing.assert_close(fn(x.clone(), inplace=True), expected)


@pytest.mark.parametrize("name", SEEDS)
def test_get_act_fn_is_differentiable(name):
    x = torch.randn(2, 8, 4, 4, dtype=torch.float64, requires_grad=True)
    get_act_fn(name)(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ timm's own names
def test_timms_own_names_keep_timms_entries():
    """Every key timm defines maps to what a fresh interpreter without actplug maps it to."""
    out = subprocess.run(
        [sys.executable, "-c", DUMP_TABLES.replace("TABLES", repr(TABLES))],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    fresh = json.loads(out.stdout)
    for table in TABLES:
        ours = getattr(create_act, table)
        assert fresh[table], table
        for key, qualname in fresh[table].items():
            assert _qualname(ours[key]) == qualname, (table, key)
        assert not (set(ours) - set(fresh[table])) - set(ALL_NAMES), table


def test_timms_names_still_resolve_to_timms_layers():
    from timm.layers import activations

    assert get_act_layer("gelu") is activations.GELU
    assert get_act_layer("relu") is nn.ReLU
    assert get_act_layer("prelu") is activations.PReLU
    assert get_act_fn("gelu") is activations.gelu
    assert type(create_act_layer("silu", inplace=True)) is nn.SiLU
    assert get_act_layer(None) is None and get_act_layer("") is None
    assert get_act_layer(actplug.nn.SMU) is actplug.nn.SMU  # classes pass through untouched
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    assert not any(type(m).__module__.startswith("actplug") for m in model.modules())


# ------------------------------------------------------------------------------ misspelled names
@pytest.mark.parametrize(
    ("call", "typo", "expected"),
    [
        (get_act_layer, "smuu", "smu"),
        (get_act_fn, "lpfl", "lpflu"),
        (create_act_layer, "srleu", "srelu"),
        (lambda name: timm.create_model("resnet18", pretrained=False, act_layer=name), "ahs", "ash"),
        (lambda name: timm.create_model("efficientnet_b0", pretrained=False, act_layer=name), "smu_2", "smu_1"),
    ],
)
def test_misspelled_name_lists_close_matches(call, typo, expected):
    with pytest.raises(KeyError) as info:
        call(typo)
    assert isinstance(info.value, UnknownActivationError)
    message = str(info.value)
    assert repr(typo) in message
    assert repr(expected) in message
    assert expected in info.value.matches


def test_misspelled_timm_name_lists_timms_names_too():
    with pytest.raises(UnknownActivationError) as info:
        get_act_layer("gelu_tanhh")
    assert "gelu_tanh" in info.value.matches


# ------------------------------------------------------------------------------ real models
@pytest.mark.parametrize("act", SEEDS)
@pytest.mark.parametrize("model_name", list(MODELS))
def test_create_model_with_each_seed_activation(model_name, act):
    kwargs, default_cls = MODELS[model_name]
    model = timm.create_model(model_name, pretrained=False, num_classes=3, act_layer=act, **kwargs)
    cls = actplug.get(act)
    counts = _class_counts(model)
    expected = _default_activation_count(model_name)
    assert expected > 0
    assert counts[cls.__name__] == expected, counts
    assert counts[default_cls] == 0, counts
    acts = [m for m in model.modules() if isinstance(m, cls)]
    assert len({id(m) for m in acts}) == len(acts)  # one module per site: trainable ones train per layer

    model.train()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 2])).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name
    act_params = [p for m in acts for p in m.parameters() if p.requires_grad]
    assert len(act_params) == expected * len(actplug.info(act).parameters)
    if act == "ash":  # z and alpha get gradients that are really there (not of every ASH: timm zero-initialises
        # the last norm of each residual branch, which cuts the gradient to the activations inside it)
        assert sum(bool(p.grad.abs() > 0) for p in act_params) >= len(act_params) // 2

    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


def test_create_model_passes_activation_parameters_through_param_groups():
    model = timm.create_model("resnet18", pretrained=False, num_classes=3, act_layer="smu")
    groups = {g["name"]: g for g in actplug.param_groups(model, weight_decay=0.05, act_lr=1e-3)}
    smus = [m for m in model.modules() if isinstance(m, actplug.nn.SMU)]
    assert len(groups["activation"]["params"]) == len(smus) == _default_activation_count("resnet18")
    assert groups["activation"]["weight_decay"] == 0.0 and groups["activation"]["lr"] == 1e-3
