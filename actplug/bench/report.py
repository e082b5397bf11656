"""What ``actplug bench`` shows and writes: a rich table, the JSON record and a bar chart PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .. import atomic
from . import targets as targets_mod

MODE_LABELS = {"forward": "fwd", "forward_backward": "fwd+bwd"}


def _ratio(value: float | None, target: dict[str, Any] | None = None) -> str:
    if value is None:
        return "-"
    text = f"{value:.2f}"
    if target is not None and target["met"] is not None:
        text += " [green]✓[/green]" if target["met"] else " [red]✗[/red]"
    return text


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def _calls_note(config: dict[str, Any]) -> str:
    calls = config.get("calls_per_sample", 1)
    return f" samples of {calls} back-to-back calls" if calls > 1 else ""


def _console() -> Console:
    console = Console()
    # Piped output (files, CI logs) gets a width that fits the table instead of rich's default 80.
    return console if console.is_terminal else Console(width=160)


def activation_table(result: dict[str, Any]) -> Table:
    """Per activation: ours as ratios to ReLU, the naive formula and its torch.compile; saved bytes / x."""
    config = result["config"]
    title = (
        f"actplug bench: {'x'.join(map(str, config['shape']))} {config['dtype']} on {result['machine']['device_name']}"
        f", median of {config['repeats']}{_calls_note(config)}{_memory_note(config)}; ratios are ours / other"
        " (lower is better)"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("activation")
    table.add_column("path")
    for label in MODE_LABELS.values():
        table.add_column(f"{label} ms\nours (relu)", justify="right")
        table.add_column(f"{label}\n/relu", justify="right")
        table.add_column(f"{label}\n/naive", justify="right")
        if config["compile"]:
            table.add_column(f"{label}\n/compiled", justify="right")
    table.add_column("saved / x\nours", justify="right")
    table.add_column("saved / x\nnaive", justify="right")
    if config["compile"]:
        table.add_column("saved / x\ncompiled", justify="right")
    for name, record in result["activations"].items():
        cells = [name, record["path"]]
        for mode in MODE_LABELS:
            m = record[mode]
            cells.append(f"{m['median_ms']['ours']:.2f} ({m['median_ms']['relu']:.2f})")
            cells.append(_ratio(m["vs_relu"]["ours"], targets_mod.target_for(record, mode, "vs_relu")))
            cells.append(_ratio(m["ours_vs_naive"]))
            if config["compile"]:
                cells.append(_ratio(m["ours_vs_compiled"], targets_mod.target_for(record, mode, "ours_vs_compiled")))
        ratios = record["saved"]["ratio"]
        cells += [_ratio(ratios.get("ours")), _ratio(ratios.get("naive"))]
        if config["compile"]:
            cells.append(_ratio(ratios.get("compiled")))
        table.add_row(*cells)
    return table


def model_table(result: dict[str, Any]) -> Table:
    """The ResNet-50 training-step row of every activation against ReLU."""
    model = result["model"]
    kind = model["peak_memory_kind"]
    memory_label = "peak MiB\n(cuda max allocated)" if kind == "cuda_max_allocated" else "saved for\nbackward MiB"
    table = Table(
        title=(
            f"{model['arch']} training step (batch {model['batch']}, {model['image_size']}x{model['image_size']}), "
            f"median of {model['repeats']}"
        ),
        title_justify="left",
    )
    for column in ("activation", "step ms", "step / relu", memory_label, "memory / relu"):
        table.add_column(column, justify="left" if column == "activation" else "right")
    for name, row in model["rows"].items():
        table.add_row(
            name,
            f"{row['step_ms']:.1f}",
            _ratio(row["step_vs_relu"]),
            _mb(row["memory_bytes"]),
            _ratio(row["memory_vs_relu"]),
        )
    return table


def target_lines(result: dict[str, Any]) -> list[str]:
    """One line per target, naming the activations it applies to; ✓ in the table means it is met."""
    applies: dict[str, list[str]] = {}
    for name, record in result["activations"].items():
        for target in record["targets"]:
            label = target["label"] + (" [not measured]" if target["value"] is None else "")
            applies.setdefault(label, []).append(name)
    return [f"target: {label} ({', '.join(names)})" for label, names in applies.items()]


def print_report(result: dict[str, Any], console: Console | None = None) -> None:
    """Print the activation table, the targets and the model table (if measured)."""
    console = console or _console()
    console.print(activation_table(result))
    for line in target_lines(result):
        console.print(line, highlight=False)
    if result["config"]["device"] == "cuda" and tuple(result["config"]["shape"]) != targets_mod.CUDA_REFERENCE_SHAPE:
        shape = "x".join(map(str, targets_mod.CUDA_REFERENCE_SHAPE))
        console.print(f"note: the CUDA targets are stated for {shape}; this run used another shape", highlight=False)
    if result.get("model"):
        console.print(model_table(result))


def write_json(result: dict[str, Any], path: Path) -> Path:
    """Write ``result`` as indented JSON, atomically."""
    return atomic.write_json(path, result)


def write_chart(result: dict[str, Any], path: Path) -> Path:
    """Bar chart: ours' forward and forward+backward time as ratios to ReLU, with the targets marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = list(result["activations"].values())
    names = [r["name"] for r in records]
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4.5))
    for offset, (mode, label) in zip((-width / 2, width / 2), MODE_LABELS.items(), strict=True):
        values = [r[mode]["vs_relu"]["ours"] for r in records]
        xs = [i + offset for i in range(len(records))]
        bars = ax.bar(xs, values, width, label=f"ours {label} / relu")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
        for i, record in enumerate(records):
            target = targets_mod.target_for(record, mode, "vs_relu")
            if target is not None:
                ax.hlines(target["limit"], i + offset - width / 2, i + offset + width / 2, colors="k", linestyles="--")
            compiled = record[mode]["vs_relu"].get("compiled")
            if compiled is not None:
                ax.plot(i + offset, compiled, marker="_", color="tab:red", markersize=14, markeredgewidth=2)
    config = result["config"]
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.plot([], [], "k--", label="target (ours / relu)")
    if config["compile"]:
        label = "torch.compile naive / relu"
        if config["device"] == "cpu":
            label += "\n(CPU target for ours fwd+bwd)"
        ax.plot([], [], marker="_", color="tab:red", linestyle="none", markersize=14, label=label)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.7, len(names) - 0.3)
    ax.set_ylabel("time / ReLU time")
    ax.set_title(f"actplug bench: {'x'.join(map(str, config['shape']))} {config['dtype']}, {config['device']}")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        atomic.write_figure(path, fig, dpi=120)
    finally:
        plt.close(fig)
    return path


def _memory_note(config: dict[str, Any]) -> str:
    """How the CPU timings treated memory (older JSON has no ``memory``: fresh pages then too)."""
    if config.get("device") != "cpu":
        return ""
    if config.get("memory") == "reused":
        return ", freed memory reused"
    if config.get("kernels", {}).get("cpu_pool_mb"):  # JSON of older versions, which kept an output pool
        return ", fresh pages per call (ours: outputs from 32 MiB reused from actplug's pool: an allocator's ratio)"
    return ", fresh pages per call"
