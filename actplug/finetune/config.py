"""The options of a fine-tuning run, checked at the boundary before anything heavy starts."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FinetuneError

TASKS = ("segmentation", "detection")
MIXED_PRECISION = ("no", "fp16", "bf16")
#: The model each task builds when --model is not given, and its native input size.
DEFAULT_MODEL = {"segmentation": "unet", "detection": "ssdlite320"}
NATIVE_SIZE = {"unet": 256, "deeplabv3plus": 256, "ssd300_vgg16bn": 300, "ssdlite320": 320}
# The options a resumed run must share with the run it continues (anything else may change).
RESUME_KEYS = (
    "task",
    "model",
    "encoder",
    "act",
    "act_kwargs",
    "data",
    "epochs",
    "batch_size",
    "image_size",
    "lr",
    "weight_decay",
    "warmup_steps",
    "grad_accum",
    "seed",
    "train_samples",
    "val_samples",
    "pretrained",
    "fit",
)
#: Why ``--fit`` needs ``--pretrained``.
NEEDS_PRETRAINED = (
    "--fit matches the new activation to the one the pretrained weights were trained with; without "
    "--pretrained the weights are random and there is nothing learned to preserve: add --pretrained SOURCE, "
    "or drop --fit"
)
#: What a config.json written before an option existed means for it (the option's default).
_ADDED_DEFAULTS: dict[str, Any] = {"pretrained": None, "fit": False}


@dataclass
class FinetuneConfig:
    """One fine-tuning run: the task, model, activation, data, schedule and where outputs go.

    ``image_size`` None means the model's native size (SSD300: 300, SSDLite: 320, segmentation: 256).
    ``warmup_steps`` None means one epoch of warm-up, as lpflu.txt §5.1 (390 steps of batch 128 on
    CIFAR). ``train_samples``/``val_samples`` size the generated dataset only. ``pretrained``: a weights
    file or a framework weights name the model starts from (:mod:`.pretrained`); ``fit`` then fits
    each new activation to the one it replaces (needs ``pretrained``).
    """

    task: str
    output: Path
    act: str
    model: str | None = None
    encoder: str = "resnet34"
    act_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "synthetic"
    epochs: int = 10
    batch_size: int = 8
    image_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int | None = None
    grad_accum: int = 1
    mixed_precision: str = "no"
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    num_workers: int = 0
    keep_checkpoints: int = 2
    train_samples: int = 64
    val_samples: int = 16
    pretrained: str | None = None
    fit: bool = False

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        if self.task not in TASKS:
            raise FinetuneError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.model is None:
            self.model = DEFAULT_MODEL[self.task]
        if isinstance(self.act_kwargs, str):
            self.act_kwargs = parse_act_kwargs(self.act_kwargs)
        for name in ("epochs", "batch_size", "grad_accum", "keep_checkpoints", "train_samples", "val_samples"):
            _positive_int(name, getattr(self, name))
        if self.image_size is not None:
            _positive_int("image_size", self.image_size)
        if self.warmup_steps is not None and (not isinstance(self.warmup_steps, int) or self.warmup_steps < 0):
            raise FinetuneError(f"--warmup-steps must be an integer >= 0, got {self.warmup_steps!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise FinetuneError(f"--num-workers must be an integer >= 0, got {self.num_workers!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise FinetuneError(f"--lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise FinetuneError(f"--weight-decay must be >= 0, got {self.weight_decay!r}")
        if self.pretrained is not None and (not isinstance(self.pretrained, str) or not self.pretrained.strip()):
            raise FinetuneError(
                f"--pretrained needs a weights file (.safetensors, .pth, .pt) or weights name, got {self.pretrained!r}"
            )
        if not isinstance(self.fit, bool):
            raise FinetuneError(f"fit must be True or False, got {self.fit!r}")
        if self.fit and self.pretrained is None:
            raise FinetuneError(NEEDS_PRETRAINED)
        if self.mixed_precision not in MIXED_PRECISION:
            raise FinetuneError(
                f"--mixed-precision {self.mixed_precision!r} is not one of {', '.join(MIXED_PRECISION)}"
            )

    @property
    def size(self) -> int:
        """The input size the run uses: ``image_size`` or the model's native size."""
        return self.image_size if self.image_size is not None else NATIVE_SIZE.get(self.model, 256)

    def to_json(self) -> dict[str, Any]:
        """The options as JSON-ready values (paths as strings), as written to ``DIR/config.json``."""
        out = dataclasses.asdict(self)
        out["output"] = str(self.output)
        out["image_size"] = self.size
        return out

    def resume_mismatches(self, saved: dict[str, Any]) -> list[str]:
        """The options that differ from a saved ``config.json`` and would make ``--resume`` diverge."""
        mine = self.to_json()
        before = {k: saved.get(k, _ADDED_DEFAULTS.get(k)) for k in RESUME_KEYS}
        return [f"{k}: {before[k]!r} before, {mine[k]!r} now" for k in RESUME_KEYS if before[k] != mine[k]]


def parse_act_kwargs(text: str) -> dict[str, Any]:
    """``--act-kwargs`` as a dict: a JSON object such as ``'{"mu": 2.5}'``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FinetuneError(
            f"--act-kwargs {text!r} is not valid JSON ({exc.msg}); write a JSON object such as '{{\"mu\": 2.5}}'"
        ) from None
    if not isinstance(value, dict):
        raise FinetuneError(f"--act-kwargs must be a JSON object such as '{{\"mu\": 2.5}}', got {text!r}")
    return value


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FinetuneError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
