"""``actplug compare``: train every activation over several seeds and write paper-style tables.

Each seed fixes the data split, the initial weights and the batch order, the same for every
activation (paired runs). Writes DIR/results.csv (one row per run), DIR/summary.md (mean ± std,
95% confidence interval, paired tests against the first activation), DIR/results.json and
DIR/curves.png. Re-running the same command skips finished runs; a folder with another comparison's
files is refused unless --overwrite (which re-runs everything and rewrites what compare writes; other
files stay). Examples:

  actplug compare --task wdbc --acts relu,srelu,smu,ash --seeds 5 --output runs/wdbc
  actplug compare --task digits --acts relu,gelu,smu,lpflu --seeds 3 --epochs 10 --output runs/digits
  actplug compare --task folder:/data/flowers --model resnet18 --acts relu,smu --seeds 3 --output runs/flowers
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare activations over seeds on a task: tables with statistics, curves",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", required=True, help="wdbc, digits, shapes-seg, shapes-det or folder:PATH")
    p.add_argument("--acts", required=True, help="comma-separated activations; the first is the reference")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default 5)")
    p.add_argument("--epochs", type=int, help="training epochs per run (default: the task's own)")
    p.add_argument("--output", required=True, help="folder for results.csv, summary.md, results.json, curves.png")
    p.add_argument(
        "--model",
        help="the task's model (shapes-seg: unet[:encoder] or deeplabv3plus[:encoder]; "
        "shapes-det: ssdlite320 or ssd300_vgg16bn; folder: a timm model name)",
    )
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace another comparison in --output: re-run every run and rewrite its files (other files stay)",
    )
    p.set_defaults(run=run)


def _device(text: str | None):
    import torch

    from ..compare import CompareError

    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text not in ("cpu", "cuda") and not text.startswith("cuda:"):
        raise CompareError(f"--device {text!r}: use cpu or cuda (cuda:N for one GPU of several)")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise CompareError(f"--device {text}: this machine has no CUDA GPU; use --device cpu")
    return torch.device(text)


def build_plan(args: argparse.Namespace):
    """Everything checked before the first run: task, activations, seeds, epochs, device and output folder."""
    from ..compare import CompareError
    from ..compare.runner import Plan, check_output, unique_acts
    from ..compare.tasks import get_task

    task = get_task(args.task, model=args.model)
    acts = unique_acts([a for a in args.acts.split(",") if a.strip()] if args.acts.strip() else [])
    if args.seeds < 1:
        raise CompareError(f"--seeds must be >= 1, got {args.seeds}")
    epochs = task.default_epochs if args.epochs is None else args.epochs
    if epochs < 1:
        raise CompareError(f"--epochs must be >= 1, got {epochs}")
    plan = Plan(
        task,
        args.task,
        args.model,
        acts,
        tuple(range(args.seeds)),
        epochs,
        Path(args.output),
        _device(args.device),
        overwrite=args.overwrite,
    )
    check_output(plan)
    return plan


def run(args: argparse.Namespace) -> int:
    from ..compare import report, stats
    from ..compare.runner import run_all

    plan = build_plan(args)
    print(
        f"actplug compare {plan.task.name}: {', '.join(plan.acts)} x {len(plan.seeds)} seeds, {plan.epochs} epochs, "
        f"on {plan.device}; reference {plan.acts[0]}"
    )
    records = run_all(plan, progress=print)
    summary = stats.summarize(records, list(plan.acts), list(plan.task.metrics), plan.task.main_metric)
    meta = {
        "task": plan.task.name,
        "description": plan.task.description,
        "command": command_line(plan),
        "seeds": len(plan.seeds),
        "epochs": plan.epochs,
        "acts": list(plan.acts),
        "device": str(plan.device),
        "model": plan.model,
    }
    out = plan.output
    report.write_results_csv(out / "results.csv", records)
    report.write_summary_md(out / "summary.md", summary, meta)
    report.write_results_json(out / "results.json", summary, records, meta)
    report.plot_curves(out / "curves.png", records, list(plan.acts), plan.task.main_metric)
    print((out / "summary.md").read_text())
    print(f"wrote {out / 'results.csv'}, {out / 'summary.md'}, {out / 'results.json'}, {out / 'curves.png'}")
    return 0


def command_line(plan) -> str:
    """The command that regenerates this comparison, every setting spelled out."""
    words = ["actplug", "compare", "--task", plan.task_spec, "--acts", ",".join(plan.acts)]
    words += ["--seeds", str(len(plan.seeds)), "--epochs", str(plan.epochs)]
    if plan.model:
        words += ["--model", plan.model]
    words += ["--output", str(plan.output)]
    return " ".join(shlex.quote(w) for w in words)
