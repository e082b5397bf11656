"""Checkpoints of a run: one folder per finished epoch, written with ``Accelerator.save_state``.

``DIR/checkpoints/epoch_0003/`` holds what accelerate saves (model, optimiser, scheduler, dataloader
sampler and every process's RNG states) and ``trainer_state.json`` (the epoch and the history so
far, and the id of the run that wrote it), which the main process writes last: a folder without it
is an interrupted save and is never resumed from. Pruning and resuming look only at the checkpoints
of one run id (the run's ``config.json`` holds it), so a run never deletes or continues another's.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from .. import atomic

STATE_FILE = "trainer_state.json"
_EPOCH_DIR = re.compile(r"epoch_\d{4,}")


def checkpoint_root(output: Path) -> Path:
    """Where a run's checkpoints live."""
    return output / "checkpoints"


def _epoch_dir(output: Path, epoch: int) -> Path:
    return checkpoint_root(output) / f"epoch_{epoch:04d}"


def complete_checkpoints(output: Path) -> list[Path]:
    """Finished checkpoint folders, oldest first."""
    root = checkpoint_root(output)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("epoch_*") if (p / STATE_FILE).is_file())


def run_id_of(folder: Path) -> str | None:
    """The run id in a finished checkpoint's state (None for checkpoints older than run ids)."""
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state.get("run_id") if isinstance(state, dict) else None


def run_checkpoints(output: Path, run_id: str | None) -> list[Path]:
    """The finished checkpoints of the run ``run_id``, oldest first."""
    return [p for p in complete_checkpoints(output) if run_id_of(p) == run_id]


def remove_all(output: Path) -> list[Path]:
    """Delete every ``epoch_NNNN`` folder (finished or not) under ``output``, as ``--overwrite`` does; returns them."""
    root = checkpoint_root(output)
    if not root.is_dir():
        return []
    removed = sorted(p for p in root.iterdir() if p.is_dir() and _EPOCH_DIR.fullmatch(p.name))
    for folder in removed:
        shutil.rmtree(folder)
    return removed


def save(
    accelerator: Accelerator,
    output: Path,
    epochs_done: int,
    history: list[dict[str, Any]],
    keep: int,
    *,
    run_id: str | None,
) -> Path:
    """Save the state after ``epochs_done`` epochs; keep the newest ``keep`` checkpoints of the run ``run_id``."""
    folder = _epoch_dir(output, epochs_done)
    accelerator.save_state(str(folder))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {"run_id": run_id, "epochs_done": epochs_done, "history": history}
        atomic.write_json(folder / STATE_FILE, state)
        for old in run_checkpoints(output, run_id)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return folder


def load_latest(accelerator: Accelerator, output: Path, *, run_id: str | None) -> tuple[int, list[dict[str, Any]]]:
    """Restore the newest finished checkpoint of the run ``run_id``; returns (epochs done, history), (0, []) if none."""
    found = run_checkpoints(output, run_id)
    if not found:
        return 0, []
    latest = found[-1]
    accelerator.load_state(str(latest))
    state = json.loads((latest / STATE_FILE).read_text())
    return int(state["epochs_done"]), list(state["history"])
