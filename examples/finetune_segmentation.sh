#!/usr/bin/env bash
# U-Net (timm resnet34 encoder) with SMU on the generated shapes, two processes (GPUs, or CPU DDP without
# a GPU). Real data: --data voc:/path/to/VOCdevkit/VOC2012 or --data cityscapes:/path/to/cityscapes.
# Extra arguments are passed on, e.g. ./examples/finetune_segmentation.sh --model deeplabv3plus --epochs 20
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/accelerate launch --config_file examples/accelerate/two_cpu_processes.yaml -m actplug finetune segmentation \
    --model unet --encoder resnet34 --act smu --act-kwargs '{"mu": 2.5}' --data synthetic \
    --epochs 3 --batch-size 4 --image-size 96 --output runs/unet-smu "$@"
