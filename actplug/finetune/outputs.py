"""What a fine-tuning run leaves in its output folder: metrics.json, history.csv and curves.png.

Written by the main process after every epoch (atomically, with :mod:`actplug.atomic`), so an
interrupted run still shows every finished epoch. :data:`RESULT_FILES` and :data:`CONFIG_FILE` are the
files of the folder's top level that a run writes: the only ones ``--overwrite`` replaces.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import atomic

#: The metric each task plots and reports first.
MAIN_METRIC = {"segmentation": "miou", "detection": "map"}
#: The options of the run (and its id), written when it starts.
CONFIG_FILE = "config.json"
#: The results a run writes after every epoch.
RESULT_FILES = ("metrics.json", "history.csv", "curves.png")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """``payload`` as indented JSON at ``path``, atomically."""
    atomic.write_json(path, payload)


def write_history_csv(path: Path, history: Sequence[dict[str, Any]]) -> None:
    """One row per epoch, one column per key (in first-seen order)."""
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic.write_text(path, buffer.getvalue())


def plot_curves(path: Path, history: Sequence[dict[str, Any]], task: str, title: str) -> None:
    """Training (and validation) loss and the task's main metric per epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    metric = MAIN_METRIC[task]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], marker="o", label="train")
    if all("val_loss" in row for row in history):
        ax_loss.plot(epochs, [row["val_loss"] for row in history], marker="o", label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_metric.plot(epochs, [row[metric] for row in history], marker="o", color="tab:green")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel(metric)
    fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic.write_figure(path, fig, format="png", dpi=100)
    finally:
        plt.close(fig)


def write_outputs(output: Path, summary: dict[str, Any]) -> None:
    """metrics.json (the whole summary), history.csv and curves.png for ``summary["history"]``."""
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / "metrics.json", summary)
    history = summary["history"]
    if history:
        write_history_csv(output / "history.csv", history)
        title = f"{summary['task']}: {summary['model']} with {summary['act']}"
        plot_curves(output / "curves.png", history, summary["task"], title)
