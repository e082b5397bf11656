"""``actplug finetune segmentation|detection``: fine-tune U-Net / DeepLabV3+ or SSD with any activation.

Runs on one process as it is, or on several under ``accelerate launch`` (GPUs, or CPU processes
with DDP when there is no GPU). Writes DIR/metrics.json, DIR/history.csv, DIR/curves.png and a
checkpoint per epoch under DIR/checkpoints (``--resume`` continues from the newest). A DIR holding
another run's files is refused unless --resume (continue it) or --overwrite (replace it; files the
run did not write stay). Examples:

  actplug finetune segmentation --model unet --encoder resnet34 --act smu --data synthetic --epochs 3 --output runs/seg
  accelerate launch --multi_gpu --num_processes 2 -m actplug finetune detection --model ssdlite320 --act ash \\
      --data voc:/data/VOCdevkit/VOC2012 --epochs 80 --batch-size 32 --output runs/ssdlite-ash
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

MODELS = {"segmentation": ("unet", "deeplabv3plus"), "detection": ("ssd300_vgg16bn", "ssdlite320")}
#: What --pretrained takes: the part a file may hold, and the framework's weights names.
PRETRAINED_HELP = {
    "segmentation": (
        "timm encoder",
        "a timm tag of the encoder (a1_in1k or resnet18.a1_in1k; default or imagenet: timm's default tag), "
        "fetched by timm",
    ),
    "detection": (
        "backbone",
        "the backbone's torchvision weights (VGG16_BN_Weights.IMAGENET1K_V1 for ssd300_vgg16bn, "
        "MobileNet_V3_Large_Weights.IMAGENET1K_V1 or IMAGENET1K_V2 for ssdlite320; default or imagenet: DEFAULT), "
        "fetched by torchvision",
    ),
}
DATA_HELP = {
    "segmentation": "synthetic (generated shapes, the default), voc:PATH (VOC2012 folder) or cityscapes:PATH",
    "detection": "synthetic (generated shapes, the default) or voc:PATH (a VOC2007/VOC2012 folder)",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune SSD (detection) or U-Net / DeepLabV3+ (segmentation) with an activation, via accelerate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    for task, models in MODELS.items():
        t = tasks.add_parser(task, help=f"{task} with {' or '.join(models)}", description=__doc__)
        _add_options(t, task, models)
        t.set_defaults(run=run)


def _add_options(p: argparse.ArgumentParser, task: str, models: tuple[str, ...]) -> None:
    from ..finetune.config import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL[task], help=f"{', '.join(models)} (default {DEFAULT_MODEL[task]})")
    if task == "segmentation":
        p.add_argument("--encoder", default="resnet34", help="a timm encoder name (default resnet34)")
    p.add_argument("--act", required=True, help="a registered activation (actplug list) or relu, gelu, silu, ...")
    p.add_argument("--act-kwargs", default="{}", help="the activation's options as JSON, e.g. '{\"mu\": 2.5}'")
    part, names = PRETRAINED_HELP[task]
    p.add_argument(
        "--pretrained",
        metavar="SOURCE",
        help=f"start from these weights, loaded with the model's own activations before --act is swapped in: "
        f"a .safetensors or .pth/.pt state dict of the {part} or of the whole model, or {names}",
    )
    p.add_argument(
        "--fit",
        action="store_true",
        help="with --pretrained: fit each new activation's parameters to the activation it replaces, on a few "
        "training images (actplug.swap(fit=True))",
    )
    p.add_argument("--data", default="synthetic", help=DATA_HELP[task])
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument("--batch-size", type=int, default=8, help="images per process per step (default 8)")
    p.add_argument("--image-size", type=int, help="square input size (default: the model's own, 256 for segmentation)")
    p.add_argument("--output", required=True, help="folder for metrics.json, history.csv, curves.png, checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace another run's results and checkpoints in --output (other files there stay)",
    )
    p.add_argument("--mixed-precision", default="no", help="no (default), fp16 (CUDA only) or bf16")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of AdamW (default 1e-3)")
    p.add_argument(
        "--weight-decay", type=float, default=1e-4, help="AdamW weight decay (none on activations, norms, biases)"
    )
    p.add_argument("--warmup-steps", type=int, help="linear warm-up steps (default: one epoch, as lpflu.txt §5.1)")
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and augmentation")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="newest checkpoints kept (default 2)")
    p.add_argument("--train-samples", type=int, default=64, help="generated training images (synthetic data only)")
    p.add_argument("--val-samples", type=int, default=16, help="generated validation images (synthetic data only)")


def run(args: argparse.Namespace) -> int:
    from ..finetune import FinetuneConfig
    from ..finetune import run as finetune
    from ..finetune.checkpoints import complete_checkpoints

    config = FinetuneConfig(
        task=args.task,
        output=Path(args.output),
        act=args.act,
        model=args.model,
        encoder=getattr(args, "encoder", "resnet34"),
        act_kwargs=args.act_kwargs,
        data=args.data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=args.image_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        grad_accum=args.grad_accum,
        mixed_precision=args.mixed_precision,
        seed=args.seed,
        resume=args.resume,
        overwrite=args.overwrite,
        num_workers=args.num_workers,
        keep_checkpoints=args.keep_checkpoints,
        train_samples=args.train_samples,
        val_samples=args.val_samples,
        pretrained=args.pretrained,
        fit=args.fit,
    )
    try:
        summary = finetune(config)
    except KeyboardInterrupt:
        done = complete_checkpoints(config.output)
        where = f"the newest checkpoint is {done[-1]}" if done else "no epoch had finished"
        print(f"actplug finetune: interrupted; {where}. Continue with the same command and --resume.", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") == "0":  # torchrun (accelerate launch) numbers the processes
        final = ", ".join(f"{k} {v:.4f}" for k, v in summary["final"].items())
        print(f"final: {final}; wrote {config.output / 'metrics.json'}")
    return 0
