#!/usr/bin/env bash
# The GPU checks in one go: the Triton kernels' tests on the GPU (tests/test_triton_kernels.py runs them
# on CUDA tensors when a GPU is visible), `actplug bench` in float32 (with the ResNet-50 row) and
# bfloat16 at the 32x1024x56x56, and benchmarks/gpu_overhead.py (kernels alone, host share) in
# both dtypes. Each step has its own time limit, so one that hangs or fails leaves the others' results.
#
# Usage, from the repository root with actplug installed (not editable: the benchmark runs from
# another folder so that the installed package, entry points included, is what runs):
#   benchmarks/gpu_run.sh OUTDIR [REPEATS]
# Writes OUTDIR/tests.log, OUTDIR/{float32,bfloat16}/bench.{json,png} and OUTDIR/overhead-{dtype}.json.
set -u
out=$(realpath -m "${1:?usage: benchmarks/gpu_run.sh OUTDIR [REPEATS]}")
repeats=${2:-30}
repo=$(pwd)
mkdir -p "$out"
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv
cd /tmp || exit 1
python3 -c "import torch, triton, timm, actplug; print('torch', torch.__version__, 'triton', triton.__version__,
  'timm', timm.__version__, 'actplug', actplug.__version__, actplug.__file__)" || exit 1

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local begin=$SECONDS
    timeout "$limit" "$@"
    echo "== $name: exit $? after $((SECONDS - begin)) s"
}

cd "$repo/tests" || exit 1
step "triton tests" 140 python3 -m pytest -q -n 8 -p no:cacheprovider test_triton_kernels.py >"$out/tests.log" 2>&1
tail -25 "$out/tests.log"
cd /tmp || exit 1
step "bench float32" 250 python3 -m actplug bench --device cuda --dtype float32 --repeats "$repeats" \
    -o "$out/float32"
step "bench bfloat16" 170 python3 -m actplug bench --device cuda --dtype bfloat16 --repeats "$repeats" \
    --no-model -o "$out/bfloat16"
for dtype in float32 bfloat16; do
    step "overhead $dtype" 60 python3 "$repo/benchmarks/gpu_overhead.py" --dtype $dtype -o "$out/overhead-$dtype.json"
done
