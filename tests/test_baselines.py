"""Activation names for recipes: registered activations and PyTorch's baselines, with clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import actplug
from actplug.baselines import (
    TORCH_BASELINES,
    activation_class,
    activation_layer,
    activation_names,
    is_baseline,
    make_activation,
)


def test_names_are_registered_then_baselines():
    names = activation_names()
    assert names[: len(actplug.names())] == actplug.names()
    assert names[len(actplug.names()) :] == list(TORCH_BASELINES)
    assert {"relu", "leaky_relu", "prelu", "elu", "gelu", "silu", "mish", "softplus"} == set(TORCH_BASELINES)


def test_registered_names_and_aliases_build_actplug_modules():
    smu = make_activation("SMU", mu=2.5)
    assert isinstance(smu, actplug.get("smu")) and float(smu.mu.detach()) == 2.5
    assert activation_class("smu_1") is actplug.get("smu1")
    assert not is_baseline("smu")


def test_baselines_build_pytorch_modules():
    assert isinstance(make_activation("relu"), nn.ReLU)
    assert make_activation("leaky_relu", negative_slope=0.2).negative_slope == 0.2
    assert activation_class(" GELU ") is nn.GELU and is_baseline("gelu")


def test_unknown_name_and_bad_keywords_say_what_to_do():
    with pytest.raises(actplug.UnknownActivationError, match=r"'gelo'.*Did you mean 'gelu'"):
        activation_class("gelo")
    with pytest.raises(TypeError, match=r"activation 'relu' \(ReLU\) does not take \['mu'\]"):
        make_activation("relu", mu=2.0)
    with pytest.raises(TypeError, match=r"mu"):
        make_activation("smu", muu=2.0)
    with pytest.raises(TypeError, match="must be a string"):
        activation_class(nn.ReLU)


def test_activation_layer_builds_new_modules_without_moving_the_rng(monkeypatch):
    import actplug.baselines

    factory = activation_layer("smu", {"mu": 2.5})
    first, second = factory(inplace=True), factory()  # timm passes inplace=True; it is dropped
    assert first is not second and float(first.mu.detach()) == 2.5
    assert activation_layer("leaky_relu", {"negative_slope": 0.3})(negative_slope=0.1).negative_slope == 0.3

    def drawing(name, **kwargs):  # an activation that draws random numbers when built (a plugin's, say)
        torch.rand(3)
        return nn.ReLU()

    monkeypatch.setattr(actplug.baselines, "make_activation", drawing)
    before = torch.random.get_rng_state()
    assert isinstance(activation_layer("relu")(), nn.ReLU)
    assert torch.equal(before, torch.random.get_rng_state())
    actplug.baselines.make_activation("relu")
    assert not torch.equal(before, torch.random.get_rng_state()), "built directly, it does move the RNG"
