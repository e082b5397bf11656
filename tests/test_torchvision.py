"""torchvision adapter: every model builder takes ``act_layer=`` and ``act_kwargs=`` (real models, weights=None).

Detection and segmentation builders get ``weights_backbone=None`` too: their default downloads ImageNet
weights, and nothing here may download.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import (
    detection,
    get_model,
    get_model_builder,
    get_model_weights,
    list_models,
    segmentation,
)

import actplug

tv_adapter = actplug.integrations.torchvision
TORCH_ACTIVATIONS = actplug.integrations.swap.TORCH_ACTIVATIONS
SEEDS = actplug.names()
NO_BACKBONE = {"weights": None, "weights_backbone": None}


def slots(model: nn.Module, types) -> list[nn.Module]:
    """Every child slot (parent attribute) holding a module of ``types``; a module in two slots counts twice."""
    return [child for parent in model.modules() for child in parent._modules.values() if isinstance(child, types)]


def originals(model: nn.Module) -> list[str]:
    """Names of PyTorch activation modules (the types the builders replace) still in ``model``."""
    return [name for name, m in model.named_modules(remove_duplicate=False) if isinstance(m, TORCH_ACTIVATIONS)]


def assert_replaced(model: nn.Module, act_cls: type[nn.Module], expected: int) -> list[nn.Module]:
    assert originals(model) == []
    found = slots(model, act_cls)
    assert len(found) == expected
    assert len({id(m) for m in found}) == expected, "two slots share one activation module"
    return found


def plain_slot_count(builder_name: str, **kwargs) -> int:
    """How many activation slots the original (unwrapped) builder's model has."""
    original = get_model_builder(builder_name).__wrapped__
    return len(slots(original(**kwargs), TORCH_ACTIVATIONS))


def assert_trains(model: nn.Module, loss: torch.Tensor, act_cls: type[nn.Module]) -> None:
    assert torch.isfinite(loss)
    loss.backward()
    for module in slots(model, act_cls):
        for name, param in module.named_parameters():
            assert param.grad is not None, f"{act_cls.__name__}.{name} got no gradient"
            assert torch.isfinite(param.grad).all()


# ----------------------------------------------------------------- classification builders
@pytest.mark.parametrize("name", SEEDS)
def test_resnet18_every_registered_name(name):
    model = torchvision.models.resnet18(weights=None, num_classes=3, act_layer=name)
    act_cls = actplug.get(name)
    # stem + one ``relu`` per BasicBlock (torchvision calls it twice per block): 1 + 8
    assert_replaced(model, act_cls, 9)
    model.train()
    assert_trains(model, model(torch.randn(2, 3, 32, 32)).logsumexp(1).mean(), act_cls)


@pytest.mark.parametrize("name", SEEDS)
def test_mobilenet_v3_small_through_get_model(name):
    model = get_model("mobilenet_v3_small", weights=None, num_classes=3, act_layer=name)
    act_cls = actplug.get(name)
    assert_replaced(model, act_cls, plain_slot_count("mobilenet_v3_small", num_classes=3))
    # SqueezeExcitation's gate is not an activation to replace
    assert slots(model, nn.Hardsigmoid)
    assert_trains(model, model(torch.randn(2, 3, 32, 32)).logsumexp(1).mean(), act_cls)


def test_vgg11_bn():
    model = torchvision.models.vgg11_bn(weights=None, num_classes=3, act_layer="smu")
    assert_replaced(model, actplug.nn.SMU, 10)  # 8 convolutions + 2 classifier layers
    assert_trains(model, model(torch.randn(2, 3, 32, 32)).logsumexp(1).mean(), actplug.nn.SMU)


def test_vgg11_bn_through_get_model():
    model = get_model("vgg11_bn", weights=None, num_classes=3, act_layer="lpflu", act_kwargs={"randomized": False})
    found = assert_replaced(model, actplug.nn.LPFLU, 10)
    assert all(not m.randomized for m in found)


def test_act_kwargs_reach_every_module_and_each_has_its_own_parameter():
    model = torchvision.models.resnet18(weights=None, num_classes=3, act_layer="smu", act_kwargs={"mu": 2.5})
    smus = assert_replaced(model, actplug.nn.SMU, 9)
    assert all(m.mu.item() == 2.5 for m in smus)
    assert len({m.mu.data_ptr() for m in smus}) == 9
    with torch.no_grad():
        smus[0].mu.fill_(7.0)
    assert all(m.mu.item() == 2.5 for m in smus[1:])

    model = get_model("mobilenet_v3_small", weights=None, num_classes=3, act_layer="ash", act_kwargs={"z": 0.5})
    ashes = slots(model, actplug.nn.ASH)
    assert ashes and all(m.z.item() == 0.5 and m.alpha.item() == 1.0 for m in ashes)


class ScaledTanh(nn.Module):
    """An activation nobody registered: a builder takes the class itself."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return self.scale * torch.tanh(x)


@pytest.mark.parametrize(
    ("act_layer", "act_kwargs", "check"),
    [
        (actplug.nn.SMU, {"mu": 3.0}, lambda m: m.mu.item() == 3.0),
        (nn.Mish, None, lambda m: True),
        (ScaledTanh, {"scale": 2.0}, lambda m: m.scale == 2.0),
    ],
)
def test_act_layer_as_a_class(act_layer, act_kwargs, check):
    model = torchvision.models.resnet18(weights=None, num_classes=3, act_layer=act_layer, act_kwargs=act_kwargs)
    found = assert_replaced(model, act_layer, 9)
    assert all(type(m) is act_layer and check(m) for m in found)
    model(torch.randn(2, 3, 32, 32)).sum().backward()


# ----------------------------------------------------------------- detection and segmentation builders
@pytest.mark.parametrize("name", ["smu", "ash"])
def test_ssdlite320_trains_with_targets(name):
    model = detection.ssdlite320_mobilenet_v3_large(**NO_BACKBONE, num_classes=3, act_layer=name)
    act_cls = actplug.get(name)
    assert_replaced(model, act_cls, plain_slot_count("ssdlite320_mobilenet_v3_large", **NO_BACKBONE, num_classes=3))
    model.train()
    images = [torch.rand(3, 48, 64), torch.rand(3, 64, 48)]
    targets = [
        {"boxes": torch.tensor([[4.0, 4.0, 40.0, 30.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[10.0, 2.0, 30.0, 44.0]]), "labels": torch.tensor([2])},
    ]
    losses = model(images, targets)
    assert set(losses) == {"bbox_regression", "classification"}
    assert_trains(model, sum(losses.values()), act_cls)


def test_ssdlite320_through_get_model_in_eval_mode():
    model = get_model("ssdlite320_mobilenet_v3_large", **NO_BACKBONE, num_classes=3, act_layer="srelu").eval()
    assert_replaced(
        model, actplug.nn.SReLU, plain_slot_count("ssdlite320_mobilenet_v3_large", **NO_BACKBONE, num_classes=3)
    )
    with torch.no_grad():
        (out,) = model([torch.rand(3, 40, 40)])
    assert set(out) == {"boxes", "scores", "labels"}


def test_ssd300_vgg16():
    assert detection.ssd300_vgg16 is get_model_builder("ssd300_vgg16")
    model = get_model("ssd300_vgg16", **NO_BACKBONE, num_classes=3, act_layer="lpflu", act_kwargs={"upper": 0.05})
    # conv1_1 .. conv5_3 (13) + fc6, fc7 + 8 in the extra blocks
    found = assert_replaced(model, actplug.nn.LPFLU, 23)
    assert all(m.upper == 0.05 for m in found)


@pytest.mark.parametrize("name", ["lpflu", "smu1"])
def test_deeplabv3_trains(name):
    model = segmentation.deeplabv3_mobilenet_v3_large(**NO_BACKBONE, num_classes=3, aux_loss=False, act_layer=name)
    act_cls = actplug.get(name)
    expected = plain_slot_count("deeplabv3_mobilenet_v3_large", **NO_BACKBONE, num_classes=3, aux_loss=False)
    assert_replaced(model, act_cls, expected)
    model.train()
    out = model(torch.randn(2, 3, 48, 48))["out"]
    assert out.shape == (2, 3, 48, 48)
    assert_trains(model, out.logsumexp(1).mean(), act_cls)


def test_deeplabv3_through_get_model_in_eval_mode():
    model = get_model("deeplabv3_mobilenet_v3_large", **NO_BACKBONE, num_classes=2, aux_loss=False, act_layer="pflu")
    assert_replaced(
        model,
        actplug.nn.PFLU,
        plain_slot_count("deeplabv3_mobilenet_v3_large", **NO_BACKBONE, num_classes=2, aux_loss=False),
    )
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 40, 40))["out"].shape == (1, 2, 40, 40)


# ----------------------------------------------------------------- without act_layer: untouched
UNTOUCHED = [
    ("resnet18", {"weights": None, "num_classes": 5}),
    ("mobilenet_v3_small", {"weights": None}),
    ("ssdlite320_mobilenet_v3_large", {**NO_BACKBONE, "num_classes": 3}),
    ("deeplabv3_mobilenet_v3_large", {**NO_BACKBONE, "num_classes": 3}),
]


@pytest.mark.parametrize(("name", "kwargs"), UNTOUCHED, ids=[n for n, _ in UNTOUCHED])
@pytest.mark.parametrize("extra", [{}, {"act_layer": None}, {"act_layer": None, "act_kwargs": {}}])
def test_without_act_layer_the_builder_is_untouched(name, kwargs, extra):
    wrapped = get_model_builder(name)
    torch.manual_seed(123)
    ours = wrapped(**kwargs, **extra)
    torch.manual_seed(123)
    theirs = wrapped.__wrapped__(**kwargs)
    assert type(ours) is type(theirs)
    assert [type(m) for m in ours.modules()] == [type(m) for m in theirs.modules()]
    assert originals(ours) == originals(theirs) != []
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    for key, value in theirs_sd.items():
        assert torch.equal(ours_sd[key], value), key


def test_every_builder_is_wrapped_and_reachable_by_every_path():
    names = list_models()
    assert {"resnet18", "vgg11_bn", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large", "deeplabv3_resnet50"} <= set(names)
    assert all(getattr(get_model_builder(n), "_actplug_wrapped", False) for n in names)
    assert torchvision.models.resnet18 is torchvision.models.resnet.resnet18 is get_model_builder("resnet18")
    assert detection.ssd300_vgg16 is detection.ssd.ssd300_vgg16 is get_model_builder("ssd300_vgg16")
    assert detection.ssdlite320_mobilenet_v3_large is get_model_builder("ssdlite320_mobilenet_v3_large")
    assert segmentation.deeplabv3_resnet50 is segmentation.deeplabv3.deeplabv3_resnet50
    assert segmentation.deeplabv3_resnet50 is get_model_builder("deeplabv3_resnet50")
    # torchvision's own lookups by module still find the wrapped builders
    assert "ssd300_vgg16" in list_models(module=detection)
    assert "deeplabv3_mobilenet_v3_large" in list_models(module=segmentation)
    # and read the weights enum from the wrapped builder's signature
    assert get_model_weights("resnet18") is torchvision.models.ResNet18_Weights
    assert get_model_weights(detection.ssd300_vgg16) is detection.SSD300_VGG16_Weights


@pytest.mark.filterwarnings("ignore:.*(pretrained|deprecated).*:UserWarning")
def test_legacy_pretrained_false_still_works():
    model = torchvision.models.resnet18(pretrained=False, num_classes=3, act_layer="gish")
    assert_replaced(model, actplug.nn.Gish, 9)


@pytest.mark.parametrize(
    "builder",
    [
        torchvision.models.resnet50,
        detection.ssd300_vgg16,
        detection.ssdlite320_mobilenet_v3_large,
        segmentation.deeplabv3_resnet50,
        get_model_builder("vit_b_16"),
    ],
    ids=lambda b: b.__name__,
)
def test_signature_shows_act_layer_and_act_kwargs(builder):
    params = inspect.signature(builder).parameters
    for name in ("act_layer", "act_kwargs"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default is None
    original = inspect.signature(builder.__wrapped__).parameters
    assert [p for p in params if p not in ("act_layer", "act_kwargs")] == list(original)
    assert builder.__name__ == builder.__wrapped__.__name__
    assert builder.__doc__ == builder.__wrapped__.__doc__


# ----------------------------------------------------------------- bad input fails before building
def test_unknown_name_fails_before_building_with_close_matches():
    state = torch.get_rng_state()
    with pytest.raises(KeyError, match="smu") as info:
        torchvision.models.resnet18(weights=None, act_layer="smuu")
    assert isinstance(info.value, actplug.UnknownActivationError)
    assert "smu" in info.value.matches
    # building draws initial weights from the global RNG: nothing was built
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(KeyError, match="lpflu"):
        get_model("ssdlite320_mobilenet_v3_large", **NO_BACKBONE, act_layer="lpfl")
    assert torch.equal(torch.get_rng_state(), state)


def test_unknown_act_kwarg_fails_before_building():
    state = torch.get_rng_state()
    with pytest.raises(TypeError, match=r"'muu'.*did you mean 'mu'"):
        torchvision.models.resnet18(weights=None, act_layer="smu", act_kwargs={"muu": 2.0})
    assert torch.equal(torch.get_rng_state(), state)


def test_act_kwargs_without_act_layer_is_an_error():
    with pytest.raises(TypeError, match="act_layer"):
        torchvision.models.resnet18(weights=None, act_kwargs={"mu": 2.5})
    with pytest.raises(TypeError, match="act_layer"):
        get_model("resnet18", weights=None, act_kwargs={"mu": 2.5})


def test_act_kwargs_must_be_a_dict():
    with pytest.raises(TypeError, match="dict"):
        torchvision.models.resnet18(weights=None, act_layer="smu", act_kwargs=[("mu", 2.5)])


def test_an_instance_as_act_layer_is_refused():
    with pytest.raises(TypeError, match="class"):
        torchvision.models.resnet18(weights=None, act_layer=actplug.nn.SMU())


def test_builder_whose_activations_are_functions_warns():
    # GoogLeNet calls F.relu in forward: there is no module to replace, and the user is told so
    with pytest.warns(UserWarning, match="nothing was replaced"):
        model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False, act_layer="smu")
    assert slots(model, actplug.nn.SMU) == []


# ----------------------------------------------------------------- ResNet's reused self.relu, as documented
def test_resnet_block_relu_is_one_module_called_twice():
    model = torchvision.models.resnet18(weights=None, num_classes=3, act_layer="smu").eval()
    blocks = [m for m in model.modules() if isinstance(m, torchvision.models.resnet.BasicBlock)]
    assert len(blocks) == 8
    calls: dict[int, int] = {}
    for block in blocks:
        assert slots(block, actplug.nn.SMU) == [block.relu]
        block.relu.register_forward_hook(lambda m, i, o: calls.__setitem__(id(m), calls.get(id(m), 0) + 1))
    model.relu.register_forward_hook(lambda m, i, o: calls.__setitem__(id(m), calls.get(id(m), 0) + 1))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert calls[id(model.relu)] == 1
    assert [calls[id(b.relu)] for b in blocks] == [2] * 8
    # blocks do not share with each other: one mu per block
    assert len({id(b.relu.mu) for b in blocks}) == 8
    doc = " ".join(tv_adapter.__doc__.split())
    assert "ResNet blocks call one ``self.relu`` module twice" in doc
    assert "share its parameters" in doc
