"""actplug.swap on already-built and pretrained models, and actplug.param_groups (real models, no downloads)."""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter

import pytest
import timm
import torch
import torchvision
from torch import nn
from transformers import BertConfig, BertModel
from transformers.activations import GELUActivation

import actplug
from actplug.nn import ASH, LPFLU, SMU, SReLU

TORCH_ACTIVATIONS = actplug.integrations.swap.TORCH_ACTIVATIONS
default_replace_types = actplug.integrations.swap.default_replace_types


def slots(model: nn.Module, types) -> list[nn.Module]:
    """Every child slot holding a module of ``types`` (a module held in two slots counts twice)."""
    return [child for parent in model.modules() for child in parent._modules.values() if isinstance(child, types)]


def reported(caplog) -> int:
    """The count of replaced modules that swap reported on the ``actplug`` logger (exactly one report)."""
    counts = [
        int(m.group(1))
        for r in caplog.records
        if r.name == "actplug" and (m := re.search(r"replaced (\d+) activation modules", r.getMessage()))
    ]
    assert len(counts) == 1, caplog.text
    return counts[0]


def pretrained(build, *args, **kwargs) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A fresh model loaded with another one's weights (as from_pretrained / load_state_dict would)."""
    torch.manual_seed(1)
    source = build(*args, **kwargs)
    with torch.no_grad():  # non-default buffers too, so "unchanged" covers BatchNorm statistics
        for buf in source.buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5)
    weights = {k: v.clone() for k, v in source.state_dict().items()}
    torch.manual_seed(2)
    model = build(*args, **kwargs)
    model.load_state_dict(weights)
    return model, weights


def assert_weights_unchanged(model: nn.Module, weights: dict[str, torch.Tensor], act_cls: type[nn.Module]) -> None:
    state = model.state_dict()
    for key, value in weights.items():
        assert torch.equal(state[key], value), key
    act_names = {n for n, m in model.named_modules() if isinstance(m, act_cls)}
    for key in set(state) - set(weights):  # only the new activations' own parameters and buffers are new
        assert key.rpartition(".")[0] in act_names, key


def small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.Sequential(nn.Conv2d(4, 4, 1), nn.GELU()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
        nn.SiLU(),
    )


# ----------------------------------------------------------------- pretrained models of each framework
def test_swap_pretrained_torchvision_resnet18(caplog):
    model, weights = pretrained(torchvision.models.resnet18, weights=None, num_classes=4)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    caplog.set_level(logging.INFO, logger="actplug")
    assert actplug.swap(model, "smu", mu=2.5) is model
    assert reported(caplog) == 9
    assert "ReLU: 9" in caplog.text
    smus = slots(model, SMU)
    assert len(smus) == 9 and len({id(m) for m in smus}) == 9
    assert all(m.mu.item() == 2.5 for m in smus)
    assert slots(model, TORCH_ACTIVATIONS) == []
    assert_weights_unchanged(model, weights, SMU)
    # the same weights with fresh ReLUs compute exactly what the pretrained model did
    actplug.swap(model, nn.ReLU, replace=[SMU])
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_swap_pretrained_timm_resnet18(caplog):
    model, weights = pretrained(timm.create_model, "resnet18", pretrained=False, num_classes=4)
    expected = len(slots(model, TORCH_ACTIVATIONS))
    assert expected == 17  # timm's blocks have act1 and act2
    caplog.set_level(logging.INFO, logger="actplug")
    actplug.swap(model, "ash")
    assert reported(caplog) == expected
    ashes = slots(model, ASH)
    assert len(ashes) == expected and len({id(m) for m in ashes}) == expected
    assert slots(model, TORCH_ACTIVATIONS) == []
    assert_weights_unchanged(model, weights, ASH)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(m.z.grad is not None and m.alpha.grad is not None for m in ashes)


def tiny_bert(hidden_act: str = "gelu") -> BertModel:
    config = BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=16,
        hidden_act=hidden_act,
    )
    return BertModel(config)


def test_swap_pretrained_bert_act2fn_modules(caplog):
    model, weights = pretrained(tiny_bert)
    acts = [layer.intermediate.intermediate_act_fn for layer in model.encoder.layer]
    assert all(type(a) is GELUActivation for a in acts)  # built by ACT2FN["gelu"]
    caplog.set_level(logging.INFO, logger="actplug")
    actplug.swap(model, "ash")
    assert reported(caplog) == 2
    assert "GELUActivation: 2" in caplog.text
    new = [layer.intermediate.intermediate_act_fn for layer in model.encoder.layer]
    assert all(type(a) is ASH for a in new) and new[0] is not new[1]
    assert isinstance(model.pooler.activation, nn.Tanh)  # not an activation swap replaces
    assert_weights_unchanged(model, weights, ASH)
    out = model(input_ids=torch.randint(0, 40, (2, 7))).last_hidden_state
    out.sum().backward()
    assert all(a.z.grad is not None for a in new)


@pytest.mark.parametrize("hidden_act", ["gelu_new", "quick_gelu", "relu", "silu", "gelu_pytorch_tanh"])
def test_swap_reaches_every_usual_act2fn_class(hidden_act):
    model = tiny_bert(hidden_act)
    original = type(model.encoder.layer[0].intermediate.intermediate_act_fn)
    assert original in default_replace_types() or issubclass(original, TORCH_ACTIVATIONS)
    actplug.swap(model, "smu")
    assert [type(layer.intermediate.intermediate_act_fn) for layer in model.encoder.layer] == [SMU, SMU]


def test_default_types_include_timm_classes():
    from timm.layers.activations import GELUTanh, Swish

    model = nn.Sequential(nn.Linear(3, 3), GELUTanh(), nn.Linear(3, 3), Swish())
    actplug.swap(model, "gish")
    assert [type(m).__name__ for m in model] == ["Linear", "Gish", "Linear", "Gish"]


# ----------------------------------------------------------------- device, dtype, mode
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("to", ["smu", "lpflu", "ash"])
def test_keeps_dtype(dtype, to):
    model = small_net().to(dtype)
    actplug.swap(model, to)
    new = slots(model, actplug.get(to))
    assert len(new) == 3
    tensors = [t for m in new for t in (*m.parameters(), *m.buffers())]
    assert tensors and all(t.dtype == dtype for t in tensors)
    if dtype == torch.float64:
        model(torch.randn(2, 3, 8, 8, dtype=dtype)).sum().backward()


def test_keeps_device():
    model = small_net()
    actplug.swap(model, "smu")
    assert all(m.mu.device.type == "cpu" for m in slots(model, SMU))
    with torch.device("meta"):
        meta_model = small_net()
    actplug.swap(meta_model, "srelu", trainable=True)
    new = slots(meta_model, SReLU)
    assert len(new) == 3 and all(t.device.type == "meta" for m in new for t in (*m.parameters(), *m.buffers()))


def test_nearest_parameter_decides_dtype():
    # an activation whose parent holds no parameter takes the model's first one
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU())).double()
    mixed = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    mixed[1].half()
    actplug.swap(model, "smu")
    actplug.swap(mixed, "smu")
    assert model[1][0].mu.dtype == torch.float64
    assert mixed[0][1].mu.dtype == torch.float32 and mixed[1][1].mu.dtype == torch.float16


def test_keeps_train_and_eval_mode_per_module():
    model = small_net().train()
    model[3].eval()  # a frozen-style sub-block inside a training model
    actplug.swap(model, "lpflu")
    assert model.training and not model[3].training
    assert model[2].training and model[7].training
    assert not model[3][1].training
    assert all(isinstance(m, LPFLU) for m in (model[2], model[3][1], model[7]))
    model.eval()
    actplug.swap(model, "smu", replace=[LPFLU])
    assert not any(m.training for m in slots(model, SMU))


# ----------------------------------------------------------------- what to replace, with what
def test_replace_restricts_types(caplog):
    model = small_net()
    caplog.set_level(logging.INFO, logger="actplug")
    actplug.swap(model, "smu", replace=[nn.ReLU])
    assert reported(caplog) == 1
    assert isinstance(model[2], SMU) and isinstance(model[3][1], nn.GELU) and isinstance(model[7], nn.SiLU)
    actplug.swap(model, "ash", replace=(nn.GELU, nn.SiLU))
    assert [type(m) for m in (model[2], model[3][1], model[7])] == [SMU, ASH, ASH]


def test_replace_must_be_module_classes():
    model = small_net()
    for bad in (["relu"], [nn.ReLU()], []):
        with pytest.raises(TypeError, match="replace"):
            actplug.swap(model, "smu", replace=bad)
    assert isinstance(model[2], nn.ReLU)


@pytest.mark.parametrize(
    ("to", "kwargs", "mu"),
    [
        ("smu", {"mu": 3.0}, 3.0),
        ("SMU", {}, 1e6),  # names are case-insensitive
        (SMU, {"mu": 4.0}, 4.0),
        (functools.partial(actplug.create, "smu", mu=5.0), {}, 5.0),
        (lambda: SMU(mu=6.0), {}, 6.0),
    ],
    ids=["name", "upper-name", "class", "partial", "lambda"],
)
def test_to_as_name_class_or_factory(to, kwargs, mu):
    model = small_net()
    actplug.swap(model, to, **kwargs)
    new = slots(model, SMU)
    assert len(new) == 3 and len({id(m) for m in new}) == 3
    assert all(m.mu.item() == pytest.approx(mu) for m in new)


def test_to_as_an_unregistered_class():
    model = small_net()
    actplug.swap(model, nn.Mish)
    assert len(slots(model, nn.Mish)) == 3


def test_an_instance_is_refused_and_nothing_changes():
    model = small_net()
    children = [model[2], model[3][1], model[7]]
    with pytest.raises(TypeError, match="its own module"):
        actplug.swap(model, SMU())
    assert [model[2], model[3][1], model[7]] == children


def test_a_factory_that_builds_no_module_is_refused():
    with pytest.raises(TypeError, match=r"nn\.Module"):
        actplug.swap(small_net(), lambda: torch.relu)


def test_unknown_name_or_kwarg_fails_before_modifying_the_model():
    model = small_net()
    children = [model[2], model[3][1], model[7]]
    with pytest.raises(KeyError, match="'smu'") as info:
        actplug.swap(model, "smuu")
    assert isinstance(info.value, actplug.UnknownActivationError)
    with pytest.raises(TypeError, match="did you mean 'mu'"):
        actplug.swap(model, "smu", muu=1.0)
    assert [model[2], model[3][1], model[7]] == children


def test_model_must_be_a_module():
    with pytest.raises(TypeError, match=r"nn\.Module"):
        actplug.swap([nn.ReLU()], "smu")


def test_no_activation_warns(caplog):
    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    caplog.set_level(logging.INFO, logger="actplug")
    with pytest.warns(UserWarning, match="nothing was replaced"):
        assert actplug.swap(model, "smu") is model
    assert isinstance(model[1], nn.Tanh)
    assert "replaced" not in caplog.text


# ----------------------------------------------------------------- every occurrence its own module
def test_shared_instance_in_two_parents_gets_two_modules(caplog):
    relu = nn.ReLU()
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2), relu), nn.Sequential(nn.Linear(2, 2), relu))
    caplog.set_level(logging.INFO, logger="actplug")
    actplug.swap(model, "smu")
    assert reported(caplog) == 2
    a, b = model[0][1], model[1][1]
    assert isinstance(a, SMU) and isinstance(b, SMU) and a is not b


def test_shared_instance_twice_in_one_parent_gets_two_modules(caplog):
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)
    caplog.set_level(logging.INFO, logger="actplug")
    actplug.swap(model, "smu")
    assert reported(caplog) == 2
    assert isinstance(model[1], SMU) and isinstance(model[3], SMU) and model[1] is not model[3]


def test_swapped_model_trains():
    model = actplug.swap(small_net(), "smu", mu=2.0)
    optimizer = torch.optim.SGD(actplug.param_groups(model, weight_decay=1e-4, act_lr=0.5), lr=0.1)
    before = [m.mu.detach().clone() for m in slots(model, SMU)]
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    after = [m.mu.detach() for m in slots(model, SMU)]
    assert all(not torch.equal(b, a) for b, a in zip(before, after, strict=True))


# ----------------------------------------------------------------- param_groups
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.smu = SMU(mu=2.0)
        self.conv2 = nn.Conv2d(4, 4, 1, bias=False)
        self.ash = ASH()
        self.srelu = SReLU(trainable=True)
        self.lpflu = LPFLU()
        self.fc = nn.Linear(4, 3)
        self.ln = nn.LayerNorm(3)
        self.frozen = nn.Linear(3, 3)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        x = self.ash(self.conv2(self.smu(self.bn(self.conv(x)))))
        x = self.lpflu(self.srelu(x)).mean((2, 3))
        return self.frozen(self.ln(self.fc(x)))


def by_name(groups):
    assert len({g["name"] for g in groups}) == len(groups)
    return {g["name"]: g for g in groups}


def ids(params):
    return {id(p) for p in params}


def test_param_groups_split():
    net = Net()
    groups = by_name(actplug.param_groups(net, weight_decay=0.05, act_lr=1e-2, act_weight_decay=1e-3))
    assert set(groups) == {"decay", "no_decay", "activation"}
    act = groups["activation"]
    assert ids(act["params"]) == ids([net.smu.mu, net.ash.z, net.ash.alpha, net.srelu.alpha, net.srelu.beta])
    assert act["lr"] == 1e-2 and act["weight_decay"] == 1e-3
    assert ids(groups["no_decay"]["params"]) == ids(
        [net.conv.bias, net.bn.weight, net.bn.bias, net.fc.bias, net.ln.weight, net.ln.bias]
    )
    assert groups["no_decay"]["weight_decay"] == 0.0 and "lr" not in groups["no_decay"]
    assert ids(groups["decay"]["params"]) == ids([net.conv.weight, net.conv2.weight, net.fc.weight])
    assert groups["decay"]["weight_decay"] == 0.05 and "lr" not in groups["decay"]
    # every trainable parameter exactly once, frozen ones nowhere
    seen = Counter(id(p) for g in groups.values() for p in g["params"])
    assert set(seen.values()) == {1}
    assert set(seen) == {id(p) for p in net.parameters() if p.requires_grad}
    assert not ids(net.frozen.parameters()) & set(seen)


def test_param_groups_defaults_and_options():
    net = Net()
    groups = by_name(actplug.param_groups(net))
    assert "lr" not in groups["activation"] and groups["activation"]["weight_decay"] == 0.0
    groups = by_name(actplug.param_groups(net, weight_decay=0.1, no_decay_bias_and_norm=False))
    assert set(groups) == {"decay", "activation"}
    assert ids(groups["decay"]["params"]) >= ids([net.conv.bias, net.bn.weight, net.ln.bias])


def test_param_groups_drop_empty_groups():
    assert [g["name"] for g in actplug.param_groups(nn.Linear(3, 3, bias=False), weight_decay=0.1)] == ["decay"]
    assert [g["name"] for g in actplug.param_groups(nn.Sequential(nn.Linear(3, 3), nn.ReLU()))] == [
        "decay",
        "no_decay",
    ]
    frozen = nn.Linear(3, 3).requires_grad_(False)
    assert actplug.param_groups(frozen) == []


def test_param_groups_counts_a_shared_parameter_once():
    linear = nn.Linear(3, 3)
    model = nn.Sequential(linear, SMU(), linear)
    seen = Counter(id(p) for g in actplug.param_groups(model) for p in g["params"])
    assert set(seen.values()) == {1} and len(seen) == 3


def test_param_groups_of_a_torchvision_model():
    model = torchvision.models.resnet18(weights=None, num_classes=3, act_layer="smu")
    groups = by_name(actplug.param_groups(model, weight_decay=0.05, act_lr=1e-3))
    assert len(groups["activation"]["params"]) == 9
    assert all(p.ndim == 0 for p in groups["activation"]["params"])


def test_param_groups_with_adamw_decay_only_where_asked():
    net = Net()
    groups = actplug.param_groups(net, weight_decay=0.5, act_lr=0.2, act_weight_decay=0.0)
    optimizer = torch.optim.AdamW(groups, lr=0.1, weight_decay=0.01)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.1, 0.2]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.5, 0.0, 0.0]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.25)  # keep every parameter away from zero so decay would show
    before = {id(p): p.detach().clone() for p in net.parameters()}
    # zero gradients: AdamW's only move is the decoupled weight decay, p *= 1 - lr * weight_decay
    for p in net.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    optimizer.step()
    for group in optimizer.param_groups:
        factor = 1 - group["lr"] * group["weight_decay"]
        for p in group["params"]:
            torch.testing.assert_close(p.detach(), before[id(p)] * factor)
    assert all(torch.equal(p, before[id(p)]) for p in net.frozen.parameters())
    # a real step moves the activation parameters with their own learning rate
    optimizer.zero_grad()
    net(torch.randn(4, 3, 6, 6)).pow(2).mean().backward()
    mu = net.smu.mu.detach().clone()
    optimizer.step()
    assert not torch.equal(net.smu.mu.detach(), mu)
