"""Every activation x seed of a comparison, resumable: one JSON file per finished run under DIR/runs/.

Runs of one seed are paired (same split, initial weights, batch order and schedule; the task sees
to that), and every finished run is written at once (atomically), so re-running the same command
skips what is done and an interruption loses at most the run in progress.

A folder with another comparison's files (other settings, or reports without compare.json) is refused
unless ``overwrite``: then every run of this comparison is run again and compare.json, its records and
the reports are rewritten. Each comparison has an id, in compare.json and in each of its records, and
only records of the folder's own id are ever reused; a record of another comparison is never deleted.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import atomic
from .errors import CompareError
from .report import REPORT_FILES
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
    overwrite: bool = False

    def settings(self) -> dict[str, Any]:
        """The settings a finished run depends on (activations and seeds may be added later)."""
        return {"task": self.task_spec, "model": self.model, "epochs": self.epochs}

    def run_path(self, act: str, seed: int) -> Path:
        """Where the record of (act, seed) is kept."""
        return self.output / "runs" / f"{act}__seed{seed}.json"


_OVERWRITE = (
    "--overwrite to replace it (every run is run again; compare.json, those runs' records and the reports are "
    "rewritten; other files stay and other records are never reused)"
)


def check_output(plan: Plan) -> None:
    """Refuse a folder with another comparison's files unless ``plan.overwrite``; the same settings resume it."""
    output = plan.output
    if output.exists() and not output.is_dir():
        raise CompareError(f"--output {output} is a file; give a folder path")
    if plan.overwrite or not output.is_dir():
        return
    if (output / SETTINGS_FILE).exists():
        saved, why = atomic.read_record(output / SETTINGS_FILE, "task")
        if saved is None:
            raise CompareError(
                f"--output {output} holds a {SETTINGS_FILE} that actplug compare did not write (it {why}); "
                f"pass {_OVERWRITE}, or choose another --output folder"
            )
        settings = plan.settings().items()
        different = [f"{k}: {saved.get(k)!r} before, {v!r} now" for k, v in settings if saved.get(k) != v]
        if different:
            raise CompareError(
                f"--output {output} holds runs made with other settings ({'; '.join(different)}); "
                f"use the same settings to resume it, or pass {_OVERWRITE}, or choose another --output folder"
            )
        return
    found = [name for name in REPORT_FILES if (output / name).exists()]
    if any((output / "runs").glob("*__seed*.json")):
        found.append("runs/")
    if found:
        raise CompareError(
            f"--output {output} holds another comparison's files ({', '.join(found)}) but no {SETTINGS_FILE} "
            f"to resume it by; pass {_OVERWRITE}, or choose another --output folder"
        )


def comparison_id(plan: Plan) -> str | None:
    """The comparison's id: the folder's own when resuming (None for folders older than ids), else a new one."""
    if not plan.overwrite and (plan.output / SETTINGS_FILE).is_file():
        saved, _ = atomic.read_record(plan.output / SETTINGS_FILE, "task")
        return saved.get("comparison_id") if saved else None
    return uuid.uuid4().hex


def load_record(plan: Plan, act: str, seed: int, comparison: str | None) -> dict[str, Any] | None:
    """The finished record of (act, seed) of the comparison ``comparison``, or None if that run has not finished."""
    path = plan.run_path(act, seed)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("epochs") != plan.epochs or record.get("act") != act or record.get("seed") != seed:
        return None
    if record.get("comparison_id") != comparison:
        return None
    return record


def run_all(plan: Plan, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run every (activation, seed) not finished yet, seed by seed; returns all records in plan order."""
    from tqdm.auto import tqdm

    check_output(plan)
    comparison = comparison_id(plan)
    atomic.write_json(plan.output / SETTINGS_FILE, {**plan.settings(), "comparison_id": comparison})
    pairs = [(act, seed) for seed in plan.seeds for act in plan.acts]
    todo = [(act, seed) for act, seed in pairs if load_record(plan, act, seed, comparison) is None]
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
            "comparison_id": comparison,
            "task": plan.task.name,
            "act": act,
            "seed": seed,
            "epochs": plan.epochs,
            "seconds": round(time.perf_counter() - started, 3),
            "metrics": result["metrics"],
            "history": result["history"],
        }
        atomic.write_json(plan.run_path(act, seed), record)
    return [load_record(plan, act, seed, comparison) for act, seed in pairs]


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
