"""examples/timm_smu.py and examples/hf_ash.py run as a user runs them: a subprocess, a few steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _run_example(script: str, tmp_path: Path, *args: str) -> tuple[str, dict]:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        # one thread each: pytest -n 2 runs two of these side by side on a two-core machine
        [sys.executable, str(ROOT / "examples" / script), *args, "--threads", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_timm_smu_trains_resnet18_with_smu(tmp_path):
    stdout, results = _run_example("timm_smu.py", tmp_path, "--steps", "16", "--batch-size", "32")
    assert "17 SMU modules" in stdout and "SMU(alpha=0.01, mu=2.5, trainable=True)" in stdout
    assert "activation (17 tensors)" in stdout  # actplug.param_groups gave mu its own group
    assert "test accuracy" in stdout
    assert results["n_activations"] == 17 and results["act_kwargs"] == {"alpha": 0.01, "mu": 2.5}
    assert len(results["train_losses"]) == 16
    assert results["train_loss_end"] < results["train_loss_start"] - 0.3, results["train_losses"]
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert len(results["act_parameters"]) == 17
    assert any(v != 2.5 for v in results["act_parameters"].values())  # mu trained


def test_timm_smu_by_name_without_kwargs(tmp_path):
    stdout, results = _run_example("timm_smu.py", tmp_path, "--act", "srelu", "--act-kwargs", "", "--steps", "3")
    assert "act_layer='srelu'" in stdout and "17 SReLU modules" in stdout
    assert results["act_parameters"] == {}  # SReLU's alpha and beta are buffers by default


def test_hf_ash_fine_tunes_minilm_with_ash(tmp_path):
    stdout, results = _run_example("hf_ash.py", tmp_path, "--steps", "12")
    assert "swapped GELU for ash: 6 ASH modules, pretrained weights kept" in stdout
    assert "test accuracy" in stdout
    assert results["n_activations"] == 6
    assert len(results["batch_losses"]) == 12
    assert results["train_loss"] < results["train_loss_before"] - 0.1
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert len(results["act_parameters"]) == 12  # z and alpha of six ASH modules


def test_examples_reject_bad_arguments(tmp_path):
    for script, args in (("timm_smu.py", ["--act", "smuu"]), ("hf_ash.py", ["--steps", "0"])):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "examples" / script), *args],
            capture_output=True,
            text=True,
            timeout=600,
            env=ENV,
            cwd=tmp_path,
        )
        assert proc.returncode != 0
        assert ("'smu'" in proc.stderr) if script == "timm_smu.py" else ("--steps" in proc.stderr)
