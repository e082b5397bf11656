"""Where the GPU time goes: the Triton kernels alone against the whole module, and the host's share.

For each activation at 32x1024x56x56 on CUDA, per call (medians of rounds of back-to-back calls):

- ``kernel``: the Triton forward (or backward) kernel called directly, against ``torch.relu`` (or
  ReLU's ``threshold_backward``): what the kernels cost;
- ``module``: ``actplug.create(name)`` forward, and forward+backward, against ReLU's;
- ``host``: the wall time the host takes to queue the calls. Where it is close to ``module`` the
  module is host-bound: the GPU waits for Python, not the other way round.

Not part of the test suite. Usage: ``python benchmarks/gpu_overhead.py [--dtype bfloat16] [-o out.json]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import actplug
from actplug import atomic
from actplug.bench.naive import FORMULAS
from actplug.kernels.cuda.triton import ACTIVATIONS, elementwise_backward, elementwise_forward

CALLS = 20
ROUNDS = 15


def _time(fn: Callable[[], object]) -> tuple[float, float]:
    """(device ms, host ms) per call: medians over rounds of CALLS back-to-back calls (on a CPU, for a dry
    run under TRITON_INTERPRET=1, both are the wall time)."""
    cuda = torch.cuda.is_available()
    device, host = [], []
    for _ in range(3):
        fn()
    for _ in range(ROUNDS):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
        begin = time.perf_counter()
        for _ in range(CALLS):
            fn()
        host.append((time.perf_counter() - begin) * 1e3 / CALLS)
        if cuda:
            end.record()
            end.synchronize()
            device.append(start.elapsed_time(end) / CALLS)
        else:
            device.append(host[-1])
    return statistics.median(device), statistics.median(host)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--shape", default="32,1024,56,56")
    parser.add_argument("-o", "--output")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = tuple(int(s) for s in args.shape.split(","))
    x = torch.randn(shape, dtype=dtype, device=device)
    g = torch.randn_like(x)
    flat, gflat = x.view(-1), g.view(-1)
    if device == "cpu":  # a dry run: the Triton kernels under the interpreter, the modules on that path too
        actplug.kernels.configure(cpu="triton")
    xg = x.detach().clone().requires_grad_(True)
    relu_y = torch.relu(x)

    def fwd_bwd(module: torch.nn.Module) -> Callable[[], None]:
        def call() -> None:
            xg.grad = None
            module(xg).backward(g)

        return call

    rows = {
        "relu": {
            "kernel_fwd": _time(lambda: torch.relu(x)),
            "kernel_bwd": _time(lambda: torch.ops.aten.threshold_backward(g, relu_y, 0.0)),
            "module_fwd": _time(lambda: torch.relu(x)),
            "module_fwd_bwd": _time(fwd_bwd(torch.nn.ReLU())),
        }
    }
    for name in FORMULAS:
        module = actplug.create(name).to(device).train()
        row = {}
        if name in ACTIVATIONS:
            act = ACTIVATIONS[name]
            params = tuple(torch.full((), 0.5, device=device) for _ in range(act.num_params))
            consts = (0.25,) * act.num_consts
            needs = (False,) * act.num_params
            row["kernel_fwd"] = _time(lambda n=name, p=params, c=consts: elementwise_forward(n, flat, p, c))
            row["kernel_bwd"] = _time(
                lambda n=name, p=params, c=consts, k=needs: elementwise_backward(n, flat, gflat, p, c, k)
            )
        with torch.no_grad():
            row["module_fwd"] = _time(lambda m=module: m(x))
        row["module_fwd_bwd"] = _time(fwd_bwd(module))
        rows[name] = row

    base = rows["relu"]
    print(f"{args.dtype} {'x'.join(map(str, shape))} on {device}: ms per call, (x relu); host = queueing")
    print(f"{'':8s}{'kernel fwd':>18s}{'kernel bwd':>18s}{'module fwd':>18s}{'host':>8s}{'fwd+bwd':>18s}{'host':>8s}")
    for name, row in rows.items():
        cells = []
        for key in ("kernel_fwd", "kernel_bwd", "module_fwd", "module_fwd_bwd"):
            if key in row:
                ms, host = row[key]
                cells.append(f"{ms:9.3f} ({ms / base[key][0]:4.2f}x)")
                if key.startswith("module"):
                    cells.append(f"{host:8.3f}")
            else:
                cells.append(f"{'-':>18s}")
        print(f"{name:8s}" + "".join(f"{c:>18s}" if len(c) > 8 else c for c in cells))
    if args.output:
        name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        atomic.write_json(args.output, {"dtype": args.dtype, "shape": shape, "device": name, "rows": rows}, indent=1)


if __name__ == "__main__":
    main()
