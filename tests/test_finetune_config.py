"""Options, schedule and outputs of ``actplug finetune``: checked without training anything."""

from __future__ import annotations

import csv
import itertools
import json

import pytest
import torch

from actplug.finetune import FinetuneConfig, FinetuneError
from actplug.finetune.config import parse_act_kwargs
from actplug.finetune.outputs import write_outputs
from actplug.finetune.schedule import DECAY_END_FRACTION, FINAL_SCALE, lr_scale, warmup_linear_decay


def test_schedule_follows_lpflu_section_5_1():
    """CIFAR in lpflu.txt: 0 -> 1 over 390 steps, 1 -> 0.01 by step 21450 of 31200, then 0.01."""
    total, warmup = 31200, 390
    assert round(total * DECAY_END_FRACTION) == 21450
    assert lr_scale(0, total, warmup) == 0.0
    assert lr_scale(195, total, warmup) == pytest.approx(0.5)
    assert lr_scale(390, total, warmup) == 1.0
    midway = (390 + 21450) // 2
    assert lr_scale(midway, total, warmup) == pytest.approx(1 - (1 - FINAL_SCALE) * (midway - 390) / (21450 - 390))
    assert lr_scale(21450, total, warmup) == FINAL_SCALE
    assert lr_scale(31199, total, warmup) == FINAL_SCALE


def test_scheduler_scales_the_optimiser_rate():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=0.1)
    sched = warmup_linear_decay(opt, total_steps=10, warmup_steps=2)
    rates = []
    for _ in range(10):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[0] == 0.0 and rates[1] == pytest.approx(0.05) and rates[2] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(rates[2:]))
    assert rates[-1] == pytest.approx(0.1 * FINAL_SCALE)
    # warm-up longer than training is cut so the rate still reaches its peak
    opt2 = torch.optim.AdamW([p], lr=1.0)
    sched2 = warmup_linear_decay(opt2, total_steps=3, warmup_steps=50)
    seen = []
    for _ in range(3):
        seen.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert max(seen) == 1.0


def test_config_defaults_and_native_sizes(tmp_path):
    seg = FinetuneConfig(task="segmentation", output=tmp_path, act="smu")
    assert (seg.model, seg.size, seg.encoder) == ("unet", 256, "resnet34")
    det = FinetuneConfig(task="detection", output=tmp_path, act="ash", model="ssd300_vgg16bn")
    assert det.size == 300
    assert FinetuneConfig(task="detection", output=tmp_path, act="ash").size == 320
    assert FinetuneConfig(task="segmentation", output=tmp_path, act="smu", act_kwargs='{"mu": 2.5}').act_kwargs == {
        "mu": 2.5
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "classification"}, r"unknown task 'classification'; choose one of segmentation, detection"),
        ({"epochs": 0}, r"--epochs must be an integer >= 1, got 0"),
        ({"batch_size": 2.5}, r"--batch-size must be an integer >= 1"),
        ({"grad_accum": -1}, r"--grad-accum must be an integer >= 1"),
        ({"image_size": 0}, r"--image-size must be an integer >= 1"),
        ({"lr": 0.0}, r"--lr must be a positive number"),
        ({"weight_decay": -1.0}, r"--weight-decay must be >= 0"),
        ({"warmup_steps": -3}, r"--warmup-steps must be an integer >= 0"),
        ({"mixed_precision": "fp8"}, r"--mixed-precision 'fp8' is not one of no, fp16, bf16"),
        ({"act_kwargs": "{mu: 2}"}, r"--act-kwargs '\{mu: 2\}' is not valid JSON .*'\{\"mu\": 2.5\}'"),
        ({"act_kwargs": "[1, 2]"}, r"--act-kwargs must be a JSON object"),
    ],
)
def test_bad_options_name_the_option_and_the_fix(tmp_path, kwargs, message):
    base = {"task": "segmentation", "output": tmp_path, "act": "smu"}
    with pytest.raises(FinetuneError, match=message):
        FinetuneConfig(**{**base, **kwargs})


def test_resume_mismatches_list_every_changed_option(tmp_path):
    a = FinetuneConfig(task="segmentation", output=tmp_path, act="smu", epochs=3)
    b = FinetuneConfig(task="segmentation", output=tmp_path, act="ash", epochs=3, lr=0.01)
    assert a.resume_mismatches(a.to_json()) == []
    diff = b.resume_mismatches(a.to_json())
    assert diff == ["act: 'smu' before, 'ash' now", "lr: 0.001 before, 0.01 now"]
    assert parse_act_kwargs("{}") == {}


def test_outputs_json_csv_and_png(tmp_path):
    history = [
        {"epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "miou": 0.2, "pixel_acc": 0.5, "lr": 1e-3, "seconds": 1.0},
        {"epoch": 2, "train_loss": 0.5, "val_loss": 0.6, "miou": 0.4, "pixel_acc": 0.7, "lr": 5e-4, "seconds": 1.0},
    ]
    summary = {"task": "segmentation", "model": "unet", "act": "smu", "final": {"miou": 0.4}, "history": history}
    write_outputs(tmp_path, summary)
    assert json.loads((tmp_path / "metrics.json").read_text()) == summary
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [float(r["miou"]) for r in rows] == [0.2, 0.4] and list(rows[0]) == list(history[0])
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))
