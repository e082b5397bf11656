"""Import order never matters, and ``import actplug`` imports no framework: checked in fresh interpreters.

Each scenario is a script run with ``sys.executable -c``; it prints one JSON line that the tests read.
The scripts run side by side (started together by a module fixture) to keep the wall time down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

FRAMEWORKS = ("timm", "torchvision", "transformers")

PRELUDE = """
import json, sys, warnings
warnings.simplefilter("always")
_caught = warnings.catch_warnings(record=True)
_warnings = _caught.__enter__()
"""

FRAMEWORK_SET = f"""
def frameworks_loaded():
    return sorted({{name.split(".")[0] for name in sys.modules if name.split(".")[0] in {FRAMEWORKS!r}}})
"""

# Runs after both actplug and the frameworks are imported, in whichever order the scenario chose.
CHECKS = """
import torch
import actplug
import timm
import timm.layers
import torchvision
import transformers
from transformers.activations import ACT2CLS, ACT2FN

def count(model, cls):
    return sum(isinstance(child, cls) for parent in model.modules() for child in parent._modules.values())

out = {}
out["timm_smu"] = timm.layers.get_act_layer("smu") is actplug.nn.SMU
out["timm_alias"] = timm.layers.get_act_layer("smu-1") is actplug.nn.SMU1
x = torch.linspace(-3, 3, 7)
out["timm_fn"] = torch.equal(timm.layers.get_act_fn("pflu")(x), actplug.functional.pflu(x))
out["timm_relu_untouched"] = timm.layers.get_act_layer("relu") is torch.nn.ReLU
timm_model = timm.create_model("resnet18", pretrained=False, num_classes=2, act_layer="smu")
out["timm_model_smu"] = count(timm_model, actplug.nn.SMU)

out["hf_ash"] = isinstance(ACT2FN["ash"], actplug.nn.ASH)
out["hf_ash_cls"] = ACT2CLS["ash"] is actplug.nn.ASH
out["hf_gelu_untouched"] = type(ACT2FN["gelu"]).__name__
out["hf_get_activation"] = type(transformers.activations.get_activation("smu1")).__name__

tv = torchvision.models.resnet18(weights=None, num_classes=2, act_layer="smu")
out["tv_resnet18_smu"] = count(tv, actplug.nn.SMU)
out["tv_resnet18_relu_left"] = count(tv, torch.nn.ReLU)
out["tv_get_model"] = count(torchvision.models.get_model("mobilenet_v3_small", num_classes=2, act_layer="ash"),
                            actplug.nn.ASH) > 0
det = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
    weights=None, weights_backbone=None, num_classes=2, act_layer="lpflu")
out["tv_ssdlite_left"] = count(det, (torch.nn.ReLU, torch.nn.Hardswish, torch.nn.ReLU6))
out["tv_ssdlite_lpflu"] = count(det, actplug.nn.LPFLU) > 0

# registered after every framework is imported: reaches them all (the adapters subscribe)
class Halve(torch.nn.Module):
    def __init__(self, inplace=False):
        super().__init__()
    def forward(self, x):
        return 0.5 * x

actplug.register("late_halve", Halve, aliases=("late-halve",))
out["late_timm"] = timm.layers.get_act_layer("late_halve") is Halve
out["late_timm_alias"] = timm.layers.get_act_layer("late-halve") is Halve
out["late_hf"] = isinstance(ACT2FN["late_halve"], Halve)
out["late_tv"] = count(torchvision.models.resnet18(weights=None, num_classes=2, act_layer="late_halve"), Halve)

# a third-party plugin added late, the way an entry-point plugin registers
class Double(torch.nn.Module):
    def __init__(self, inplace=False):
        super().__init__()
    def forward(self, x):
        return 2 * x

class Plugin:
    @actplug.hookimpl
    def actplug_register_activations(self, registry):
        registry.register("late_double", Double)

out["plugin_added"] = actplug.add_plugin(Plugin(), name="late-plugin")
out["plugin_timm"] = timm.layers.get_act_layer("late_double") is Double
out["plugin_hf"] = isinstance(ACT2FN["late_double"], Double)
out["plugin_timm_model"] = count(timm.create_model("resnet18", pretrained=False, num_classes=2,
                                                   act_layer="late_double"), Double)
try:
    timm.layers.get_act_layer("smuu")
except KeyError as exc:
    out["timm_typo"] = type(exc).__name__ + ": " + str(exc)
"""

EPILOGUE = """
_caught.__exit__(None, None, None)
out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in _warnings
                   if "actplug" in (w.category.__module__ + str(w.message))]
print("RESULT " + json.dumps(out))
"""

SCENARIOS = {
    # (a) actplug alone, used a little (names, create, swap, param_groups): no framework imported
    "alone": """
import actplug, torch
before = frameworks_loaded()
names = actplug.names()
model = actplug.swap(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()), "smu")
groups = actplug.param_groups(model)
out = {"before": before, "after": frameworks_loaded(), "names": names, "swapped": type(model[1]).__name__,
       "groups": [g["name"] for g in groups],
       "integrations": sorted(m for m in sys.modules if m.startswith("actplug.integrations"))}
""",
    # (b) actplug first, then the frameworks' top-level packages
    "actplug_first": """
import actplug
out_before = frameworks_loaded()
import timm
import torchvision
import transformers
"""
    + CHECKS
    + """
out["loaded_by_actplug"] = out_before
""",
    # (b') actplug first, then sub-packages straight away (their parents are imported on the way)
    "actplug_first_submodules": """
import actplug
import timm.layers
import torchvision.models.detection
import transformers.activations
"""
    + CHECKS,
    # (c) every framework first (transformers.activations included), actplug last
    "frameworks_first": """
import timm
import torchvision
import transformers
import transformers.activations
before = frameworks_loaded()
import actplug
"""
    + CHECKS
    + """
out["loaded_before_actplug"] = before
""",
}


def script(body: str) -> str:
    return PRELUDE + FRAMEWORK_SET + textwrap.dedent(body) + EPILOGUE


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    """Run every scenario in its own fresh interpreter, side by side; scenario -> its JSON output."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONWARNINGS": "",
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", script(body)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for name, body in SCENARIOS.items()
    }
    found = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode == 0 and len(lines) == 1:
            found[name] = json.loads(lines[0].removeprefix("RESULT "))
        else:
            found[name] = {"failed": f"exit {proc.returncode}\n{stdout[-2000:]}\n{stderr[-4000:]}"}
    return found


def result(results: dict[str, dict], name: str) -> dict:
    out = results[name]
    assert "failed" not in out, f"scenario {name!r} failed: {out.get('failed')}"
    return out


def test_import_actplug_imports_no_framework(results):
    out = result(results, "alone")
    assert out["before"] == [] and out["after"] == []
    assert {"smu", "ash", "lpflu"} <= set(out["names"])
    assert out["swapped"] == "SMU"
    assert out["groups"] == ["decay", "no_decay", "activation"]
    # the adapters themselves are loaded (they watch for the frameworks) without importing them
    assert "actplug.integrations.torchvision" in out["integrations"]
    assert out["warnings"] == []


EXPECTED = {
    "timm_smu": True,
    "timm_alias": True,
    "timm_fn": True,
    "timm_relu_untouched": True,
    "timm_model_smu": 17,
    "hf_ash": True,
    "hf_ash_cls": True,
    "hf_gelu_untouched": "GELUActivation",
    "hf_get_activation": "SMU1",
    "tv_resnet18_smu": 9,
    "tv_resnet18_relu_left": 0,
    "tv_get_model": True,
    "tv_ssdlite_left": 0,
    "tv_ssdlite_lpflu": True,
    "late_timm": True,
    "late_timm_alias": True,
    "late_hf": True,
    "late_tv": 9,
    "plugin_added": True,
    "plugin_timm": True,
    "plugin_hf": True,
    "plugin_timm_model": 17,
    "warnings": [],
}

ORDERS = ["actplug_first", "actplug_first_submodules", "frameworks_first"]


@pytest.mark.parametrize("order", ORDERS)
def test_every_framework_sees_every_name(results, order):
    out = result(results, order)
    assert {k: out.get(k) for k in EXPECTED} == EXPECTED
    assert out["timm_typo"].startswith("UnknownActivationError") and "'smu'" in out["timm_typo"]


def test_both_orders_give_the_same_result(results):
    first, last = (
        {k: v for k, v in result(results, o).items() if not k.startswith("loaded_")}
        for o in ("actplug_first", "frameworks_first")
    )
    assert first == last
    assert result(results, "actplug_first_submodules") == first


def test_the_orders_really_differ(results):
    # guard against a scenario that silently imports in the wrong order
    assert result(results, "actplug_first")["loaded_by_actplug"] == []
    assert result(results, "frameworks_first")["loaded_before_actplug"] == list(FRAMEWORKS)
