#!/usr/bin/env bash
# SSDLite320 (MobileNetV3) with ASH on the generated shapes, two processes (GPUs, or CPU DDP without a GPU).
# Real data: --data voc:/path/to/VOCdevkit/VOC2012; SSD300 with a VGG16-BN backbone: --model ssd300_vgg16bn.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/accelerate launch --config_file examples/accelerate/two_cpu_processes.yaml -m actplug finetune detection \
    --model ssdlite320 --act ash --data synthetic \
    --epochs 3 --batch-size 4 --image-size 128 --output runs/ssdlite-ash "$@"
