"""Checkpoints of a run: one folder per finished epoch, written with ``Accelerator.save_state``.

``DIR/checkpoints/epoch_0003/`` holds what accelerate saves (model, optimiser, scheduler, dataloader
sampler and every process's RNG states) and ``trainer_state.json`` (the epoch and the history so
far), which the main process writes last: a folder without it is an interrupted save and is never
resumed from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator

STATE_FILE = "trainer_state.json"


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


def save(accelerator: Accelerator, output: Path, epochs_done: int, history: list[dict[str, Any]], keep: int) -> Path:
    """Save the state after ``epochs_done`` epochs; keep the newest ``keep`` checkpoints."""
    folder = _epoch_dir(output, epochs_done)
    accelerator.save_state(str(folder))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {"epochs_done": epochs_done, "history": history}
        tmp = folder / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(folder / STATE_FILE)
        for old in complete_checkpoints(output)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return folder


def load_latest(accelerator: Accelerator, output: Path) -> tuple[int, list[dict[str, Any]]]:
    """Restore the newest finished checkpoint; returns (epochs done, history). (0, []) if there is none."""
    found = complete_checkpoints(output)
    if not found:
        return 0, []
    latest = found[-1]
    accelerator.load_state(str(latest))
    state = json.loads((latest / STATE_FILE).read_text())
    return int(state["epochs_done"]), list(state["history"])
