"""``actplug bench``: forward and forward+backward time of each activation against ReLU, the naive formula
and torch.compile of it; saved-for-backward bytes; a timm ResNet-50 training step per activation.

Prints a table and writes DIR/bench.json and DIR/bench.png (``--output DIR``). Ratios are
ours / other, medians of alternating repetitions. Examples:

  actplug bench --acts smu,ash --repeats 5 --no-model
  actplug bench --device cuda --dtype bfloat16 --shape 32,1024,56,56
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
CPU_SHAPE = (16, 256, 56, 56)
CUDA_SHAPE = (32, 1024, 56, 56)
MIN_IMAGE_SIZE = 32  # ResNet-50 downsamples by 32


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time activations against ReLU, the naive formulas and torch.compile; table, JSON and PNG",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--acts", help="comma-separated names (default: every built-in activation)")
    p.add_argument(
        "--shape",
        help=f"input shape, e.g. 16,256,56,56 (default: {_fmt(CUDA_SHAPE)} on CUDA, {_fmt(CPU_SHAPE)} on CPU)",
    )
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available, else cpu)")
    p.add_argument("--repeats", type=int, default=10, help="timed repetitions per candidate (default 10)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile of the naive formulas")
    p.add_argument(
        "--memory",
        choices=("fresh", "reused"),
        default="fresh",
        help="CPU: fresh (default) gives every call fresh pages, as a plain PyTorch process does; reused "
        "keeps freed memory in the heap, as a caching allocator does, and times the kernels alone",
    )
    p.add_argument("--no-model", action="store_true", help="skip the ResNet-50 training-step row")
    p.add_argument("--model-batch", type=int, help="ResNet-50 batch size (default: 64 on CUDA, 8 on CPU)")
    p.add_argument("--model-image-size", type=int, help="ResNet-50 image size (default: 224 on CUDA, 112 on CPU)")
    p.add_argument("-o", "--output", default="actplug-bench", help="folder for bench.json and bench.png")
    p.set_defaults(run=run)


def _fmt(shape: tuple[int, ...]) -> str:
    return ",".join(map(str, shape))


def _error(message: str) -> Exception:
    from . import CommandError

    return CommandError(message)


def parse_shape(text: str) -> tuple[int, ...]:
    """``"16,256,56,56"`` (or ``16x256x56x56``) -> ``(16, 256, 56, 56)``; every size a positive integer."""
    parts = [p.strip() for p in re.split(r"[,x×]", text.strip())]
    if not parts or not all(re.fullmatch(r"\d+", p) for p in parts) or any(int(p) < 1 for p in parts):
        raise _error(f"--shape {text!r}: write positive integers separated by commas, e.g. --shape 16,256,56,56")
    return tuple(int(p) for p in parts)


def parse_dtype(text: str):
    """A dtype name (float32, bfloat16, float16, or fp32 / bf16 / fp16 / half) -> ``torch.dtype``."""
    import torch

    canonical = DTYPES.get(text.strip().lower())
    if canonical is None:
        raise _error(f"--dtype {text!r} is not supported; use float32, bfloat16 or float16")
    return getattr(torch, canonical)


def parse_device(text: str | None):
    """``cpu``, ``cuda`` or ``cuda:N`` -> ``torch.device``; None picks CUDA when it is available."""
    import torch

    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text.strip().lower()):
        raise _error(f"--device {text!r} is not supported; use cpu or cuda (or cuda:N)")
    device = torch.device(text.strip().lower())
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise _error(f"--device {text}: CUDA is not available ({why}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise _error(f"--device {text}: there are {torch.cuda.device_count()} CUDA device(s); use cuda:0")
    return device


def parse_acts(text: str | None) -> list[str]:
    """Comma-separated activation names (aliases, any case) -> canonical names, each once."""
    import actplug
    from actplug.bench.naive import FORMULAS

    if text is None:
        return [n for n in actplug.names() if n in FORMULAS]
    wanted = [p.strip() for p in text.split(",") if p.strip()]
    if not wanted:
        raise _error(f"--acts {text!r} names no activation; e.g. --acts smu,ash")
    names: list[str] = []
    for raw in wanted:
        try:
            name = actplug.info(raw).name
        except KeyError as exc:
            raise _error(f"--acts: {getattr(exc, 'message', exc)}") from None
        if name not in FORMULAS:
            raise _error(
                f"--acts: {name!r} has no naive formula to compare with; the benchmark covers {', '.join(FORMULAS)}"
            )
        if name not in names:
            names.append(name)
    return names


def _positive(value: int | None, option: str, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise _error(f"{option} {value} must be >= {minimum}")


def _output_dir(text: str) -> Path:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise _error(f"--output {text!r} is a file; give a folder for bench.json and bench.png")
    return path


def _check_imports(need_model: bool) -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise _error("the bar chart needs matplotlib: pip install 'actplug[plot]'")
    if need_model and importlib.util.find_spec("timm") is None:
        raise _error("the model row needs timm: pip install 'actplug[timm]', or pass --no-model")


def parse_options(args: argparse.Namespace) -> dict[str, Any]:
    """Every option checked and converted; raises CommandError naming the option and the fix."""
    device = parse_device(args.device)
    default_shape = CUDA_SHAPE if device.type == "cuda" else CPU_SHAPE
    options = {
        "acts": parse_acts(args.acts),
        "device": device,
        "dtype": parse_dtype(args.dtype),
        "shape": default_shape if args.shape is None else parse_shape(args.shape),
        "repeats": args.repeats,
        "compile_naive": not args.no_compile,
        "memory": args.memory,
        "model_row": not args.no_model,
        "model_batch": args.model_batch,
        "model_image_size": args.model_image_size,
    }
    _positive(args.repeats, "--repeats")
    _positive(args.model_batch, "--model-batch")
    _positive(args.model_image_size, "--model-image-size", MIN_IMAGE_SIZE)
    _check_imports(options["model_row"])
    return options


def run(args: argparse.Namespace) -> int:
    from ..bench import report, run_benchmark

    options = parse_options(args)
    output = _output_dir(args.output)

    def log(message: str) -> None:
        print(f"actplug bench: {message}", file=sys.stderr, flush=True)

    result = run_benchmark(**options, log=log)
    report.print_report(result)
    output.mkdir(parents=True, exist_ok=True)
    print(f"wrote {report.write_json(result, output / 'bench.json')}")
    print(f"wrote {report.write_chart(result, output / 'bench.png')}")
    return 0
