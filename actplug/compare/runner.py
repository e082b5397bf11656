"""Every activation x seed of a comparison, resumable: one JSON file per finished run under DIR/runs/.

Runs of one seed are paired (same split, initial weights, batch order and schedule; the task sees
to that), and every finished run is written at once, so re-running the same command skips what is
done and an interruption loses at most the run in progress.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import CompareError
from .tasks import CompareTask

#: What must match for finished runs in an output folder to be reused.
SETTINGS_FILE = "compare.json"


@dataclass(frozen=True)
class Plan:
    """What a comparison runs: the task, activations (the first is the reference), seeds and epochs."""

    task: CompareTask
    task_spec: str
    model: str | None
    acts: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int
    output: Path
    device: torch.device

    def settings(self) -> dict[str, Any]:
        """The settings a finished run depends on (activations and seeds may be added later)."""
        return {"task": self.task_spec, "model": self.model, "epochs": self.epochs}

    def run_path(self, act: str, seed: int) -> Path:
        """Where the record of (act, seed) is kept."""
        return self.output / "runs" / f"{act}__seed{seed}.json"


def check_output(plan: Plan) -> None:
    """Refuse an output folder whose finished runs were made with other settings."""
    path = plan.output / SETTINGS_FILE
    if plan.output.exists() and not plan.output.is_dir():
        raise CompareError(f"--output {plan.output} is a file; give a folder path")
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    different = [f"{k}: {saved.get(k)!r} before, {v!r} now" for k, v in plan.settings().items() if saved.get(k) != v]
    if different:
        raise CompareError(
            f"--output {plan.output} holds runs made with other settings ({'; '.join(different)}); "
            "use the same settings to resume it, or another --output folder"
        )


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def load_record(plan: Plan, act: str, seed: int) -> dict[str, Any] | None:
    """The finished record of (act, seed), or None if that run has not finished."""
    path = plan.run_path(act, seed)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("epochs") != plan.epochs or record.get("act") != act or record.get("seed") != seed:
        return None
    return record


def run_all(plan: Plan, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run every (activation, seed) not finished yet, seed by seed; returns all records in plan order."""
    from tqdm.auto import tqdm

    check_output(plan)
    _write_json(plan.output / SETTINGS_FILE, plan.settings())
    pairs = [(act, seed) for seed in plan.seeds for act in plan.acts]
    todo = [(act, seed) for act, seed in pairs if load_record(plan, act, seed) is None]
    if progress is not None:
        progress(
            f"{len(pairs) - len(todo)} of {len(pairs)} runs already finished in {plan.output}; running {len(todo)}"
        )
    bar = tqdm(todo, desc=f"compare {plan.task.name}", unit="run", disable=not todo)
    for act, seed in bar:
        bar.set_postfix_str(f"{act} seed {seed}")
        started = time.perf_counter()
        result = plan.task.run(act, seed, plan.epochs, plan.device)
        record = {
            "task": plan.task.name,
            "act": act,
            "seed": seed,
            "epochs": plan.epochs,
            "seconds": round(time.perf_counter() - started, 3),
            "metrics": result["metrics"],
            "history": result["history"],
        }
        _write_json(plan.run_path(act, seed), record)
    return [load_record(plan, act, seed) for act, seed in pairs]


def unique_acts(names: Sequence[str]) -> tuple[str, ...]:
    """Activation names, canonical and in order; a name given twice is refused."""
    from ..baselines import activation_class, is_baseline
    from ..registry import UnknownActivationError, registry

    out: list[str] = []
    for raw in names:
        try:
            activation_class(raw)
        except UnknownActivationError as exc:
            raise CompareError(f"--acts: {exc}") from None
        key = raw.strip().lower()
        name = key if is_baseline(key) else registry.info(key).name
        if name in out:
            raise CompareError(f"--acts names {name!r} twice; list each activation once")
        out.append(name)
    if not out:
        raise CompareError("--acts is empty; give activations such as --acts relu,srelu,smu,ash")
    return tuple(out)
