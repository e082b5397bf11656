"""examples/plugin (an installable third-party package) and examples/plugin_formula.py, run as a user would."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import actplug
from actplug import Registry

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin"


def test_the_example_package_publishes_its_module_under_the_entry_point_group():
    text = (PLUGIN / "pyproject.toml").read_text()
    section = text.split("[project.entry-points.actplug]", 1)[1].split("[", 1)[0]
    assert section.strip() == 'serf = "actplug_serf"'
    assert 'py-modules = ["actplug_serf"]' in text
    spec = importlib.util.spec_from_file_location("actplug_serf_example", PLUGIN / "actplug_serf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reg = Registry(entry_point_group=None)
    assert reg.add_plugin(module, name="serf")
    assert {"serf", "swish_beta"} <= set(reg.names())
    x = torch.linspace(-5, 5, 41, dtype=torch.float64, requires_grad=True)
    y = reg.create("serf")(x)
    expected = x * torch.erf(torch.log1p(torch.exp(x)))
    torch.testing.assert_close(y, expected)
    (g,) = torch.autograd.grad(y.sum(), x)
    (ge,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(g, ge)  # its own backward, checked against the forward at registration too
    assert reg.info("swish-beta").parameters == ("beta",)
    assert "serf" not in actplug.names()  # a private registry: the process's is untouched


def test_plugin_formula_example_runs(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "plugin_formula.py"), "--steps", "8", "--threads", "1", "--json", out],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    ratios = results["saved_over_input"]
    assert ratios["serf"] == 1.0 and abs(ratios["swish_beta"] - 1.0) < 1e-5  # x, and beta's 4 bytes
    assert results["fused_calls"] == 2, "after wait(), Serf's forward and backward ran compiled"
    assert results["torchvision_serf"] == 9 and results["bert_swish_beta"] == 1
    assert len(results["betas"]) == 17 and any(b != 1.0 for b in results["betas"])
    assert results["train_losses"][-1] < results["train_losses"][0]
    assert "Serf modules" in proc.stdout
