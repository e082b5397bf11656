"""Activations declared by formula alone (``register_formula``): a plugin's activation is first-class.

The end-to-end test installs a throwaway distribution whose entry point registers two formulas that
are not in actplug, then, in a fresh process that discovers it, checks what a plugin author is
promised: float64 values and gradients, gradcheck, only x saved for backward, the fused CPU path for
a large tensor, and timm, transformers and torchvision building models with the names. The other
tests check the checks ``register_formula`` makes at registration, on a private registry.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import actplug
from actplug import ActivationNameTaken, Registry

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}

PLUGIN = '''
"""Two activations that actplug does not ship, declared the way a plugin author would."""
import torch

import actplug


def leaky_swish(x, beta, gamma):
    """(1 - gamma) x sigmoid(beta x) + gamma x: Swish-beta with a leak."""
    return (1.0 - gamma) * x * torch.sigmoid(beta * x) + gamma * x


def soft_cube(x, a):
    """x + a x^3 / (1 + x^2): a smooth odd function, with its analytic backward below."""
    return x + a * x**3 / (1.0 + x * x)


def soft_cube_backward(x, grad, *, needs=(), a):
    q = 1.0 + x * x
    dx = grad * (1.0 + a * x * x * (3.0 + x * x) / (q * q))
    return dx, ({"a": grad * x**3 / q} if "a" in needs else {})


@actplug.hookimpl
def actplug_register_activations(registry):
    registry.register_formula(
        "leakyswish",
        leaky_swish,
        params={"beta": 1.5, "gamma": 0.1},
        trainable=("beta",),
        aliases=("leaky_swish",),
        paper="a test plugin",
        formula="(1 - g) x sigmoid(b x) + g x",
    )
    registry.register_formula("softcube", soft_cube, backward=soft_cube_backward, params={"a": 0.25}, trainable=("a",))
'''

CHECKS = r"""
import json

import timm
import torch
import torchvision
from timm.layers import get_act_fn
from torch.autograd import gradcheck
from transformers import BertConfig, BertModel
from transformers.activations import ACT2FN

import actplug
from actplug import kernels

out = {}
LeakySwish, SoftCube = actplug.get("leakyswish"), actplug.get("softcube")
out["plugin"] = actplug.info("leakyswish").plugin
out["alias"] = actplug.get("leaky_swish") is LeakySwish
out["parameters"] = [actplug.info("leakyswish").parameters, actplug.info("softcube").parameters]


def reference(x, beta, gamma):
    return (1 - gamma) * x * torch.sigmoid(beta * x) + gamma * x


# float64 values and gradients against the formula's own autograd
x = torch.linspace(-8, 8, 161, dtype=torch.float64, requires_grad=True)
module = actplug.create("leakyswish", beta=0.8).double()
y = module(x)
w = torch.cos(x.detach())
(y * w).sum().backward()
xr = x.detach().clone().requires_grad_()
beta = module.beta.detach().clone().requires_grad_()  # 0.8 rounded to float32 by the module, then widened
yr = reference(xr, beta, 0.1)
(yr * w).sum().backward()
out["values"] = float((y - yr).abs().max())
out["dx"] = float((x.grad - xr.grad).abs().max())
out["dbeta"] = float((module.beta.grad - beta.grad).abs())

# gradcheck of the functional twin, with the trainable parameter as an input
xs = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
bs = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)
out["gradcheck"] = gradcheck(lambda t, b: actplug.functional.leakyswish(t, b, 0.1), (xs, bs))
out["gradcheck_softcube"] = gradcheck(lambda t, a: actplug.functional.softcube(t, a), (xs, bs))

# saved for backward: x and the scalar parameter only
saved = []
big = torch.randn(64, 4096, requires_grad=True)
with torch.autograd.graph.saved_tensors_hooks(lambda t: (saved.append(t), t)[1], lambda t: t):
    actplug.create("leakyswish")(big)
storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in saved}
out["saved_over_input"] = sum(storages.values()) / (big.numel() * 4)
out["saved_large"] = sorted(t.numel() for t in saved)

# the fused CPU path for a large tensor, compiled on first use, with the same values as the eager math
with kernels.use(compile="sync"):
    for name in ("leakyswish", "softcube"):
        m = actplug.create(name)
        xg = big.detach().clone().requires_grad_()
        y = m(xg)
        y.backward(torch.ones_like(y))
        with kernels.use(cpu="eager"):
            m2 = actplug.create(name)
            xe = big.detach().clone().requires_grad_()
            ye = m2(xe)
            ye.backward(torch.ones_like(ye))
        out[f"fused_{name}"] = [float((y - ye).abs().max()), float((xg.grad - xe.grad).abs().max())]
        p, pe = next(m.parameters()), next(m2.parameters())
        out[f"fused_{name}_param"] = float((p.grad - pe.grad).abs() / pe.grad.abs())
out["calls"] = sorted(kernels.compiler.calls)

# timm, torchvision and transformers build models with the names
net = timm.create_model("resnet18", pretrained=False, num_classes=3, act_layer="leakyswish")
net(torch.randn(2, 3, 32, 32)).sum().backward()
found = [m for m in net.modules() if isinstance(m, LeakySwish)]
out["timm"] = [len(found), all(m.beta.grad is not None for m in found)]
out["timm_fn"] = get_act_fn("leakyswish").__wrapped__ is actplug.functional.leakyswish
tv = torchvision.models.resnet18(act_layer="softcube", num_classes=3)
tv(torch.randn(2, 3, 32, 32)).sum().backward()
out["torchvision"] = sum(isinstance(m, SoftCube) for m in tv.modules())
tiny = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
bert = BertModel(BertConfig(**tiny, hidden_act="leaky_swish"))
bert(torch.randint(0, 50, (2, 5))).last_hidden_state.sum().backward()
out["bert"] = [sum(isinstance(m, LeakySwish) for m in bert.modules()), type(ACT2FN["softcube"]) is SoftCube]
print(json.dumps(out))
"""


def _install(root: Path) -> None:
    (root / "formula_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "formula_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: formula-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[actplug]\nformulas = formula_plugin\n")


def test_a_formula_from_an_entry_point_is_first_class(tmp_path):
    _install(tmp_path)
    path = os.pathsep.join(p for p in (str(tmp_path), ENV.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", CHECKS],
        capture_output=True,
        text=True,
        timeout=600,
        env={**ENV, "PYTHONPATH": path},
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "ActplugPluginWarning" not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["plugin"] == "formulas" and out["alias"]
    assert out["parameters"] == [["beta"], ["a"]]
    assert out["values"] < 1e-14 and out["dx"] < 1e-14 and out["dbeta"] < 1e-12
    assert out["gradcheck"] and out["gradcheck_softcube"]
    assert out["saved_over_input"] == pytest.approx(1.0, abs=1e-4), "x and a 0-d parameter, nothing else"
    assert out["saved_large"][-1] == 64 * 4096 and out["saved_large"][:-1] == [1] * (len(out["saved_large"]) - 1)
    for name in ("leakyswish", "softcube"):
        value_err, grad_err = out[f"fused_{name}"]
        assert value_err < 1e-5 and grad_err < 1e-5, (name, value_err, grad_err)
        assert out[f"fused_{name}_param"] < 1e-4
    assert "leakyswish_forward_float32_blocked" in out["calls"]
    assert "leakyswish_backward_float32_beta_blocked" in out["calls"]  # the vjp of the formula, compiled
    assert "softcube_backward_float32_a_blocked" in out["calls"]  # the plugin's own backward, compiled
    assert out["timm"] == [17, True] and out["timm_fn"]
    assert out["torchvision"] == 9  # the stem and one module per BasicBlock (called twice there)
    assert out["bert"] == [2, True]


# ------------------------------------------------------------------------------ checks at registration
@pytest.fixture
def reg() -> Registry:
    return Registry(entry_point_group=None)


def scaled_tanh(x, a, b):
    return a * torch.tanh(b * x)


def test_register_formula_builds_module_function_and_entry(reg):
    info = reg.register_formula(
        "stanh", scaled_tanh, params={"a": 1.7159, "b": 2 / 3}, trainable=("b",), formula="a tanh(b x)"
    )
    assert info.name == "stanh" and info.formula == "a tanh(b x)" and info.parameters == ("b",)
    assert info.declaration.param_names == ("a", "b")
    module = reg.create("stanh", b=0.5)
    assert isinstance(module.a, float) and isinstance(module.b, torch.nn.Parameter)
    assert module.extra_repr() == "a=1.7159, b=0.5, trainable=True"
    frozen = reg.create("stanh", trainable=False)
    assert "b" in dict(frozen.named_buffers()) and not list(frozen.parameters())
    x = torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(module.double()(x), 1.7159 * torch.tanh(0.5 * x))
    torch.testing.assert_close(info.functional(x, 1.0, 2.0), torch.tanh(2.0 * x))
    assert str(inspect_signature(info.functional)) == "(x, a=1.7159, b=0.6666666666666666) -> torch.Tensor"
    assert str(inspect_signature(info.cls)) == "(a=1.7159, b=0.6666666666666666, trainable=True, inplace=False)"
    with pytest.raises(TypeError, match=r"'bb' \(did you mean 'b'\?\)"):
        reg.create("stanh", bb=1.0)


def inspect_signature(obj):
    import inspect

    return inspect.signature(obj)


def test_module_level_register_formula_goes_to_the_process_registry(monkeypatch):
    private = Registry(entry_point_group=None)
    monkeypatch.setattr(actplug, "registry", private)
    actplug.register_formula("twice", lambda x: 2 * x)
    assert private.create("twice")(torch.ones(3)).tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(ActivationNameTaken):
        actplug.register_formula("twice", lambda x: 3 * x)
    actplug.register_formula("twice", lambda x: 3 * x, override=True)
    assert private.create("twice")(torch.ones(1)).item() == 3.0


def test_a_formula_that_is_not_elementwise_is_refused(reg):
    with pytest.raises(ValueError, match=r"not elementwise.*register\(name, module_cls\)"):
        reg.register_formula("softmaxed", lambda x: torch.softmax(x, dim=-1))
    assert "softmaxed" not in reg


def test_a_formula_that_raises_is_refused_naming_the_error(reg):
    def broken(x, k):
        return x.missing_method(k)

    with pytest.raises(TypeError, match="forward raised AttributeError"):
        reg.register_formula("broken", broken, params={"k": 1.0})


def test_a_formula_must_return_a_tensor_shaped_like_x(reg):
    with pytest.raises(TypeError, match="shaped like x"):
        reg.register_formula("summed", lambda x: x.sum())


def test_a_backward_that_disagrees_with_the_forward_is_refused(reg):
    def wrong(x, grad, *, needs=()):
        return grad * 3.0

    with pytest.raises(ValueError, match="gradient for 'x' disagrees"):
        reg.register_formula("cube", lambda x: x**3, backward=wrong)


def test_a_backward_without_a_trainable_gradient_is_refused(reg):
    def only_dx(x, grad, *, needs=(), k):
        return grad * k

    with pytest.raises(ValueError, match="no gradient for 'k'"):
        reg.register_formula("linear", lambda x, k: k * x, backward=only_dx, params={"k": 2.0}, trainable=("k",))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"params": {"k": "big"}}, TypeError, "real default"),
        ({"params": {"k": True}}, TypeError, "real default"),
        ({"params": [("k", 1.0)]}, TypeError, "must map parameter names"),
        ({"params": {"k": 1.0}, "trainable": "k"}, TypeError, "not the string"),
        ({"params": {"k": 1.0}, "trainable": ("q",)}, ValueError, r"trainable names \['q'\]"),
        ({"params": {"x": 1.0}}, ValueError, "reserved"),
        ({"params": {"inplace": 1.0}}, ValueError, "reserved"),
        ({"params": {"not valid": 1.0}}, ValueError, "identifier"),
        ({"aliases": "other"}, TypeError, "not the string"),
        ({"functional": abs}, TypeError, "unknown metadata"),
        ({"backward": 3}, TypeError, "backward must be a function"),
    ],
)
def test_bad_declarations_fail_at_registration(reg, kwargs, error, match):
    params = kwargs.pop("params", None)

    def forward(x, **p):
        return x * sum(float(v) for v in p.values()) if p else x

    with pytest.raises(error, match=match):
        reg.register_formula("bad", forward, params=params, **kwargs)
    assert "bad" not in reg


def test_forward_must_be_callable(reg):
    with pytest.raises(TypeError, match="forward must be a function"):
        reg.register_formula("nothing", 3)


def test_taken_names_need_override(reg):
    with pytest.raises(ActivationNameTaken):
        reg.register_formula("smu", lambda x: x)
    reg.register_formula("smu", lambda x: 2 * x, override=True)
    assert reg.create("smu")(torch.ones(2)).tolist() == [2.0, 2.0]


def test_a_formula_that_cannot_compile_runs_the_eager_math(reg, compiled_calls, caplog):
    """A Python branch on a parameter passes the check (eagerly a 0-d tensor converts to bool) but not the
    kernels' tracing: the kernel is reported once as not compiled, and every call runs the eager math."""

    def branchy(x, k):
        if k > 1:
            return k * x
        return x * torch.sigmoid(x)

    reg.register_formula("branchy", branchy, params={"k": 2.0}, trainable=("k",))
    module = reg.create("branchy")
    x = torch.randn(8, 4096, requires_grad=True)
    with actplug.kernels.use(cpu_min_numel=0), caplog.at_level("WARNING", logger="actplug"):
        y = module(x)
        y.sum().backward()
        module(x)
    torch.testing.assert_close(y, 2.0 * x)
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))
    assert module.k.grad is not None and math.isclose(float(module.k.grad), float(x.detach().sum()), rel_tol=1e-5)
    assert not compiled_calls
    failed = [s for s in actplug.kernels.status() if s["label"].startswith("branchy_") and s["state"] == "failed"]
    assert failed and "kernel branchy_forward_float32_blocked could not be traced" in caplog.text
