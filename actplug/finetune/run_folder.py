"""Whose run an ``--output`` folder holds, so that no run replaces another's results unasked.

A run writes ``config.json`` (its options and run id) when it starts, ``metrics.json``, ``history.csv``
and ``curves.png`` after every epoch, and ``checkpoints/epoch_NNNN/``. A folder holding none of these
(missing, empty, or only the user's own files) is free. A folder holding them is another run's,
and a new run goes there only with:

- ``--resume``, to continue that run: same options, and a checkpoint of the run its config.json names;
- ``--overwrite``, to replace it: once the new run has built its model, the old run's results and
  every ``checkpoints/epoch_*`` folder are deleted (so ``--resume`` can never continue them later) and
  config.json is rewritten; nothing else in the folder is touched.

The one exception: a config.json of the same options and nothing else (a run stopped before its
first epoch ended) holds no results, so the same command may start over there.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from ..atomic import read_record
from . import checkpoints
from .config import FinetuneConfig
from .errors import FinetuneError
from .outputs import CONFIG_FILE, RESULT_FILES

_OVERWRITE = (
    "--overwrite to replace that run (its config.json, results and checkpoints are deleted or rewritten; "
    "other files in the folder stay)"
)


def _checkpoint_names(found: list[Path]) -> str:
    return f"{len(found)} checkpoint(s), the newest {found[-1].parent.name}/{found[-1].name}"


def check_output(config: FinetuneConfig) -> None:
    """Refuse an ``--output`` folder with another run's files unless ``--resume`` or ``--overwrite`` says what to do."""
    output = config.output
    if output.exists() and not output.is_dir():
        raise FinetuneError(f"--output {output} is a file; give a folder path")
    if config.resume and config.overwrite:
        raise FinetuneError("--resume continues the run in --output and --overwrite replaces it; pass only one of them")
    if config.overwrite or not output.is_dir():
        return
    saved: dict[str, Any] | None = None
    if (output / CONFIG_FILE).exists():
        saved, why = read_record(output / CONFIG_FILE, "task")
        if saved is None:
            raise FinetuneError(
                f"--output {output} holds a {CONFIG_FILE} that actplug finetune did not write (it {why}); "
                f"pass {_OVERWRITE}, or choose another --output folder"
            )
    results = [name for name in RESULT_FILES if (output / name).exists()]
    every = checkpoints.complete_checkpoints(output)
    own = checkpoints.run_checkpoints(output, saved.get("run_id") if saved else None)
    mismatches = config.resume_mismatches(saved) if saved else []
    if mismatches and config.resume:
        raise FinetuneError(
            f"--resume with options that differ from the run in {output} ({'; '.join(mismatches)}); "
            f"use the same options, or pass {_OVERWRITE} instead of --resume, or choose another --output folder"
        )
    if mismatches:
        held = ", ".join(results + ([_checkpoint_names(own)] if own else [])) or CONFIG_FILE
        resume = (
            "use its options with --resume to continue it instead" if own else "it has no checkpoint to --resume from"
        )
        raise FinetuneError(
            f"--output {output} holds another run ({held}), made with other options ({'; '.join(mismatches)}); "
            f"pass {_OVERWRITE}, or choose another --output folder ({resume})"
        )
    foreign = [p for p in every if p not in own]
    if foreign:
        raise FinetuneError(
            f"--output {output} holds checkpoints of another run than the one its {CONFIG_FILE} names "
            f"({_checkpoint_names(foreign)}), which --resume cannot continue; pass {_OVERWRITE}, "
            "or choose another --output folder"
        )
    if own and not config.resume:
        raise FinetuneError(
            f"--output {output} already holds checkpoints of a run ({_checkpoint_names(own)}); pass --resume to "
            f"continue it, or {_OVERWRITE}, or choose another --output folder"
        )
    if results and not own:
        raise FinetuneError(
            f"--output {output} holds results of another run ({', '.join(results)}) and no checkpoint to "
            f"--resume from; pass {_OVERWRITE}, or choose another --output folder"
        )


def run_id(config: FinetuneConfig, accelerator: Any = None) -> str | None:
    """The run's id, the main process's on every process: the saved one when resuming, else a new one."""
    if config.resume and (config.output / CONFIG_FILE).is_file():
        saved, _ = read_record(config.output / CONFIG_FILE, "task")
        value = saved.get("run_id") if saved else None
    else:
        value = uuid.uuid4().hex
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        value = broadcast_object_list([value])[0]
    return value


def discard_previous_run(output: Path) -> list[str]:
    """Delete what the run an ``--overwrite`` replaces wrote (results and checkpoint folders); returns what went."""
    gone = [name for name in RESULT_FILES if (output / name).is_file()]
    for name in gone:
        (output / name).unlink()
    gone += [f"{p.parent.name}/{p.name}" for p in checkpoints.remove_all(output)]
    return gone
