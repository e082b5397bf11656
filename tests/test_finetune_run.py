"""``actplug finetune`` end to end: two-process CPU DDP under ``accelerate launch``, resume, interrupt, bad input.

Every run is a real subprocess on the generated shapes, kept tiny (a few images, small sizes) so the
whole file takes a minute or two on two cores.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from actplug.cli import main

ACCELERATE = str(Path(sys.executable).with_name("accelerate"))
TINY_SEG = [
    "segmentation",
    "--model",
    "unet",
    "--encoder",
    "resnet18",
    "--act",
    "smu",
    "--act-kwargs",
    '{"mu": 2.5}',
    "--batch-size",
    "2",
    "--image-size",
    "64",
    "--train-samples",
    "8",
    "--val-samples",
    "5",
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", ACTPLUG_CPU_KERNELS="eager", TOKENIZERS_PARALLELISM="false")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def _finetune(args: list[str], *, processes: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    if processes == 1:
        cmd = [sys.executable, "-m", "actplug", "finetune", *args]
    else:
        cmd = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1"]
        cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "actplug", "finetune", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


def _metrics(output: Path) -> dict:
    return json.loads((output / "metrics.json").read_text())


def _check_outputs(output: Path, summary: dict, epochs: int) -> None:
    assert summary["epochs"] == epochs and len(summary["history"]) == epochs
    assert [row["epoch"] for row in summary["history"]] == list(range(1, epochs + 1))
    assert (output / "history.csv").read_text().count("\n") == epochs + 1
    assert (output / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (output / "checkpoints" / f"epoch_{epochs:04d}" / "trainer_state.json").is_file()
    assert json.loads((output / "config.json").read_text())["act"] == summary["act"]


# Two-process segmentation DDP runs as two machines of one process each, with every check the
# one-machine run had: tests/test_finetune_distributed.py::test_two_machines_train_one_ddp_model.


def test_two_process_detection_writes_map(tmp_path):
    out = tmp_path / "det"
    args = ["detection", "--model", "ssdlite320", "--act", "ash", "--batch-size", "2", "--image-size", "128"]
    args += ["--train-samples", "8", "--val-samples", "4", "--epochs", "1", "--output", str(out)]
    _finetune(args, processes=2)
    summary = _metrics(out)
    assert summary["world_size"] == 2 and summary["ranks_in_sync"]
    assert summary["eval_samples"] == 4
    assert set(summary["final"]) == {"map", "map_50", "map_75"}
    assert all(-1.0 <= v <= 1.0 for v in summary["final"].values())  # torchmetrics gives -1 with no detections
    _check_outputs(out, summary, 1)


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_resume_reaches_the_same_result_as_an_uninterrupted_run(tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _finetune([*TINY_SEG, "--epochs", "2", "--output", str(whole)])
    _finetune([*TINY_SEG, "--epochs", "2", "--output", str(resumed)])
    # An interruption during epoch 2: its checkpoint never finished.
    (resumed / "checkpoints" / "epoch_0002" / "trainer_state.json").unlink()
    result = _finetune([*TINY_SEG, "--epochs", "2", "--output", str(resumed), "--resume"])
    assert "resuming after epoch 1" in result.stdout
    a, b = _metrics(whole), _metrics(resumed)
    assert _without_timing(a["history"]) == _without_timing(b["history"])
    assert a["rank_fingerprints"] == b["rank_fingerprints"], "the resumed model's weights equal the uninterrupted ones"
    _check_outputs(resumed, b, 2)


def _sigint_as_at_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupt_keeps_finished_epochs_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    args = [*TINY_SEG, "--epochs", "3", "--output", str(out)]
    args[args.index("--train-samples") + 1] = "64"  # slow enough to interrupt during epoch 2
    proc = subprocess.Popen(
        [sys.executable, "-m", "actplug", "finetune", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        # Ctrl-C reaches the run as at a terminal: a test run started in the background (`make test &`,
        # nohup) ignores SIGINT, every child inherits that, and the run would finish all its epochs
        preexec_fn=_sigint_as_at_a_terminal,
    )
    marker = out / "checkpoints" / "epoch_0001" / "trainer_state.json"
    deadline = time.monotonic() + 240
    while not marker.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.is_file(), "the first epoch never finished"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err and "--resume" in err and "epoch_0001" in err
    assert _metrics(out)["epochs_done"] == 1, "metrics.json shows the finished epoch"
    result = _finetune([*args, "--resume"])
    assert "resuming after epoch 1" in result.stdout
    assert len(_metrics(out)["history"]) == 3


def _write_voc(root: Path, *, corrupt: bool = False) -> Path:
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (root / "ImageSets/Main" / f"{split}.txt").write_text("img1\n")
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("img1\n")
    Image.new("RGB", (32, 24), (120, 30, 200)).save(root / "JPEGImages/img1.jpg")
    if corrupt:
        (root / "JPEGImages/img1.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (root / "Annotations/img1.xml").write_text(
        "<annotation><size><width>32</width><height>24</height><depth>3</depth></size>"
        "<object><name>dog</name><difficult>0</difficult>"
        "<bndbox><xmin>2</xmin><ymin>3</ymin><xmax>20</xmax><ymax>15</ymax></bndbox></object></annotation>"
    )
    mask = Image.new("P", (32, 24), 0)
    mask.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
    mask.save(root / "SegmentationClass/img1.png")
    return root


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["segmentation", "--model", "pspnet", "--act", "smu"], r"pspnet"),
        (["detection", "--model", "yolo", "--act", "smu"], r"yolo"),
        (["segmentation", "--encoder", "resnet344", "--act", "smu"], r"resnet344"),
        (["segmentation", "--act", "smuu"], r"smuu.*Did you mean 'smu'"),
        (["segmentation", "--act", "smu", "--act-kwargs", '{"muu": 1}'], r"muu"),
        (["segmentation", "--act", "smu", "--act-kwargs", "mu=1"], r"--act-kwargs 'mu=1' is not valid JSON"),
        (["segmentation", "--act", "smu", "--data", "imagenet:/x"], r"imagenet"),
        (["segmentation", "--act", "smu", "--data", "voc:{missing}"], r"{missing}"),
        (["detection", "--act", "smu", "--data", "cityscapes:{tmp}"], r"cityscapes"),
        (["segmentation", "--act", "smu", "--mixed-precision", "fp16"], r"fp16 needs a CUDA GPU"),
        (["segmentation", "--model", "deeplabv3plus", "--act", "smu", "--batch-size", "1"], r"--batch-size 1 is too"),
        (["segmentation", "--act", "smu", "--batch-size", "8", "--train-samples", "4"], r"training split has 4 images"),
    ],
)
def test_bad_input_fails_before_training_with_a_named_fix(tmp_path, capsys, argv, message):
    missing = tmp_path / "no-such-folder"
    out = tmp_path / "out"
    argv = [a.replace("{missing}", str(missing)).replace("{tmp}", str(tmp_path)) for a in argv]
    code = main(["finetune", *argv, "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("actplug finetune: error: ")
    assert re.search(message.replace("{missing}", re.escape(str(missing))), err), err
    assert not (out / "checkpoints").exists(), "nothing trained"


def test_corrupt_image_fails_before_training(tmp_path, capsys):
    voc = _write_voc(tmp_path / "VOC2012", corrupt=True)
    out = tmp_path / "out"
    code = main(["finetune", "segmentation", "--act", "smu", "--data", f"voc:{voc}", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "img1.jpg" in err, err
    assert not (out / "checkpoints").exists()


def test_existing_run_needs_resume(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "checkpoints" / "epoch_0001").mkdir(parents=True)
    (out / "checkpoints" / "epoch_0001" / "trainer_state.json").write_text('{"epochs_done": 1, "history": []}')
    code = main(["finetune", "segmentation", "--act", "smu", "--output", str(out)])
    assert code == 2 and "pass --resume" in capsys.readouterr().err
    (out / "config.json").write_text(json.dumps({"task": "segmentation", "act": "ash"}))
    code = main(["finetune", "segmentation", "--act", "smu", "--output", str(out), "--resume"])
    assert code == 2 and "act: 'ash' before, 'smu' now" in capsys.readouterr().err
