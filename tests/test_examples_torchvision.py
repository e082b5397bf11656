"""examples/torchvision_lpflu.py runs as a script (a few steps) and learns."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "torchvision_lpflu.py"


def test_torchvision_lpflu_example_runs_and_the_loss_goes_down(tmp_path):
    out = tmp_path / "results.json"
    args = ["--steps", "12", "--batch-size", "24", "--log-every", "4", "--threads", "1", "--json", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(out.read_text())

    losses = results["train_losses"]
    assert len(losses) == 12
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
    assert results["accuracy"] > 0.2  # ten classes: chance is 0.1

    # every ReLU slot of ResNet-18 became its own LPFLU, whose running slope moved inside [lower, upper]
    slopes = results["running_slopes"]
    assert len(slopes) == 9 and "layer4.1.relu" in slopes
    middle = (results["lower"] + results["upper"]) / 2
    assert all(results["lower"] <= s <= results["upper"] for s in slopes.values())
    assert any(s != middle for s in slopes.values())
    assert set(results["param_groups"]) == {"decay", "no_decay"}  # LPFLU has no parameter of its own

    assert "LPFLU running_slope" in proc.stdout
    assert "step   12: train loss" in proc.stdout


def test_torchvision_lpflu_example_rejects_bad_arguments(capsys):
    spec = importlib.util.spec_from_file_location("torchvision_lpflu_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.parse_args(["--steps", "3"]).steps == 3
    for bad in (["--steps", "0"], ["--batch-size", "0"], ["--steps", "many"]):
        with pytest.raises(SystemExit) as info:
            module.parse_args(bad)
        assert info.value.code == 2
    assert "--steps" in capsys.readouterr().err
