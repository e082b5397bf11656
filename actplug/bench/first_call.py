"""What a new user's first call costs: forward+backward of a large tensor in a fresh process.

Each measurement runs in a new Python process (``python -m actplug.bench.first_call --child ...``),
with Inductor's on-disk cache either empty (``cold``: a new ``TORCHINDUCTOR_CACHE_DIR``) or filled
by an earlier process (``warm``), and once more with ``ACTPLUG_CPU_KERNELS=eager`` as the baseline
the first call is compared with. The child calls the activation until its compiled kernels serve
(they compile in the background meanwhile) and reports: the first call's time, the time until the
compiled path took over and how many calls ran eagerly before, the compiled steady state, and for
SMU whether a second module with other constants (the README's ``alpha=0.01, mu=2.5``) compiled
anything new. Ratios come from one run; the command is printed with the table and the JSON written.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import atomic

DEFAULT_SHAPE = (16, 256, 56, 56)
#: Stop calling after this many seconds without the compiled path taking over.
LIMIT_S = 180.0


def child(name: str, shape: Sequence[int], steady: int) -> dict[str, Any]:
    """The measurement inside the fresh process (imports included in ``import_s``)."""
    import torch

    import actplug
    from actplug import kernels

    module = actplug.create(name)
    x = torch.randn(*shape, requires_grad=True)
    grad = torch.randn(*shape)
    times: list[float] = []
    served: list[bool] = []
    began = time.perf_counter()
    compiled_after = None
    while True:
        before = sum(kernels.compiler.calls.values())
        t = time.perf_counter()
        module(x).backward(grad)
        times.append(time.perf_counter() - t)
        states = [s["state"] for s in kernels.status()]
        # served: the whole forward and backward ran compiled (every kernel met so far ready and used)
        served.append(
            bool(states)
            and all(s == "ready" for s in states)
            and sum(kernels.compiler.calls.values()) - before >= len(states)
        )
        if served[-1] and compiled_after is None:
            compiled_after = time.perf_counter() - began
        if sum(served) >= steady or time.perf_counter() - began > LIMIT_S:
            break
        if kernels.current().cpu == "eager" and len(times) >= steady:
            break
    record = {
        "name": name,
        "first_call_s": times[0],
        "times_s": times,
        "largest_later_s": max(times[1:], default=0.0),
        "calls": len(times),
        "eager_calls": served.index(True) if any(served) else len(served),
        "compiled_after_s": compiled_after,
        "steady_s": statistics.median([t for t, s in zip(times, served, strict=True) if s][-steady:])
        if any(served)
        else statistics.median(times[-steady:]),
        "kernels": kernels.status(),
    }
    if name == "smu" and any(served):
        known = len(kernels.status())
        other = actplug.create("smu", alpha=0.01, mu=2.5)
        before = sum(kernels.compiler.calls.values())
        other(x).backward(grad)
        record["other_constants_served_compiled"] = sum(kernels.compiler.calls.values()) - before == 2
        record["other_constants_new_kernels"] = len(kernels.status()) - known
    return record


def _run_child(name: str, shape: Sequence[int], steady: int, env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "actplug.bench.first_call", "--child", name, "--shape", ",".join(map(str, shape))]
    command += ["--steady", str(steady)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=LIMIT_S + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"first-call child for {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(acts: Sequence[str], shape: Sequence[int], steady: int = 3, log=print) -> dict[str, Any]:
    """Measure each activation in fresh processes: eager baseline, cold cache, warm cache."""
    results: dict[str, Any] = {"shape": list(shape), "activations": {}}
    for name in acts:
        with tempfile.TemporaryDirectory(prefix="actplug-first-call-") as cache:
            base = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "ACTPLUG_COMPILE": "background"}
            base.pop("ACTPLUG_CPU_KERNELS", None)
            row = {}
            for label, env in (
                ("eager", {**base, "ACTPLUG_CPU_KERNELS": "eager"}),
                ("cold", base),
                ("warm", base),
            ):
                log(f"{name}: fresh process, {label}")
                row[label] = _run_child(name, shape, steady, env)
            results["activations"][name] = row
    return results


def table(results: dict[str, Any]) -> str:
    """A markdown table: per activation and cache state, the first call against the eager one's."""
    lines = [
        "| activation | cache | first fwd+bwd s | eager first s | extra s | compiled from call | after s | "
        "compiled fwd+bwd s | eager fwd+bwd s |",
        "| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in results["activations"].items():
        eager = row["eager"]
        for label in ("cold", "warm"):
            r = row[label]
            after = f"{r['compiled_after_s']:.1f}" if r["compiled_after_s"] is not None else "never"
            lines.append(
                f"| {name} | {label} | {r['first_call_s']:.2f} | {eager['first_call_s']:.2f} | "
                f"{r['first_call_s'] - eager['first_call_s']:+.2f} | {r['eager_calls'] + 1} | {after} | "
                f"{r['steady_s']:.3f} | {eager['steady_s']:.3f} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acts", default="smu,ash", help="comma-separated activations (default smu,ash)")
    parser.add_argument("--shape", default=",".join(map(str, DEFAULT_SHAPE)), help="input shape N,C,H,W")
    parser.add_argument("--steady", type=int, default=3, help="compiled calls to time after the switch")
    parser.add_argument("-o", "--output", type=Path, default=None, help="folder for first-call.json and .md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split(","))
    if args.child:
        print(json.dumps(child(args.child, shape, args.steady)))
        return 0
    command = "python -m actplug.bench.first_call " + " ".join(argv if argv is not None else sys.argv[1:])
    results = run([a.strip() for a in args.acts.split(",") if a.strip()], shape, args.steady)
    results["command"] = command.strip()
    text = f"```bash\n{results['command']}\n```\n\n{table(results)}\n"
    print(text)
    if args.output is not None:
        atomic.write_json(args.output / "first-call.json", results)
        atomic.write_text(args.output / "first-call.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
