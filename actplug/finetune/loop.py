"""The accelerate-driven fine-tuning loop: one process or many, CPU or GPUs, resumable per epoch.

Everything cheap is checked first (options, dataset folder, model and activation names), so bad
input fails before a model is built. Without CUDA the Accelerator is built with ``cpu=True``:
``accelerate launch --multi_gpu --num_processes 2`` on a CPU machine then trains one model with
two-process DDP (gloo) instead of two independent models. Evaluation gives every process a
disjoint slice of the validation set (no sampler padding, so no image counts twice) and
torchmetrics sums the states across processes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from . import checkpoints, data, models
from .config import FinetuneConfig
from .errors import FinetuneError
from .outputs import MAIN_METRIC, write_json, write_outputs
from .schedule import warmup_linear_decay
from .tasks import TASKS, Task

logger = logging.getLogger("actplug")


def check_inputs(config: FinetuneConfig) -> data.DataSpec:
    """Validate options, data spec, model and activation names, and the output folder; cheap, before anything runs."""
    if config.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise FinetuneError("--mixed-precision fp16 needs a CUDA GPU; on a CPU use --mixed-precision bf16 or no")
    spec = data.parse_data_spec(config.data, config.task)
    models.check_model_options(config.task, config.model, config.encoder, config.act, config.act_kwargs, config.size)
    smallest = models.min_train_batch_size(config.task, config.model, encoder=config.encoder, image_size=config.size)
    if config.batch_size < smallest:
        raise FinetuneError(
            f"--batch-size {config.batch_size} is too small for {config.model}: its BatchNorm layers need at least "
            f"{smallest} images per process in training; use --batch-size {smallest} or more"
        )
    output = config.output
    if output.exists() and not output.is_dir():
        raise FinetuneError(f"--output {output} is a file; give a folder path")
    if not config.resume and checkpoints.complete_checkpoints(output):
        raise FinetuneError(
            f"--output {output} already holds checkpoints of a run; pass --resume to continue it, "
            "or choose another --output folder"
        )
    saved = output / "config.json"
    if config.resume and saved.is_file():
        import json

        mismatches = config.resume_mismatches(json.loads(saved.read_text()))
        if mismatches:
            raise FinetuneError(
                f"--resume with options that differ from the run in {output} ({'; '.join(mismatches)}); "
                "use the same options, or a new --output folder for a new run"
            )
    return spec


def make_accelerator(config: FinetuneConfig):
    """The Accelerator for ``config``: ``cpu=True`` without CUDA, seeded samplers for exact resumes."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )


def _sync_buffers(model: torch.nn.Module, accelerator) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics), as DDP does before each forward."""
    if accelerator.num_processes > 1:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, src=0)


def _fingerprints(model: torch.nn.Module, accelerator) -> list[str]:
    """A SHA-256 prefix of every parameter and buffer, from each process (equal exactly when in sync)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    value = int.from_bytes(digest.digest()[:8], "big", signed=True)
    gathered = accelerator.gather(torch.tensor([value], dtype=torch.int64, device=accelerator.device))
    return [f"{int(v) & (2**64 - 1):016x}" for v in gathered.cpu()]


def _train_epoch(model, loader, optimizer, scheduler, task: Task, accelerator, ignore_index: int, desc: str) -> float:
    from tqdm.auto import tqdm

    model.train()
    totals = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    for batch in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process, leave=False):
        with accelerator.accumulate(model):
            loss = task.loss(model, batch, ignore_index)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        n = task.batch_size_of(batch)
        totals += torch.stack([loss.detach().double() * n, torch.tensor(float(n), dtype=torch.float64)]).to(totals)
    totals = accelerator.reduce(totals, reduction="sum")
    return float(totals[0] / totals[1])


def _evaluate(model, loader, tracker, task: Task, accelerator, ignore_index: int) -> dict[str, float]:
    from accelerate.utils import send_to_device

    model.eval()
    tracker.reset()
    totals = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    with torch.no_grad(), accelerator.autocast():
        for batch in loader:
            loss_sum, count = task.evaluate(model, send_to_device(batch, accelerator.device), tracker, ignore_index)
            totals += torch.tensor([loss_sum, float(count)], dtype=torch.float64, device=accelerator.device)
    results = {k: float(v) for k, v in tracker.compute().items()}
    totals = accelerator.reduce(totals, reduction="sum")
    if totals[1] > 0:
        results["val_loss"] = float(totals[0] / totals[1])
    return results


def _summary(config: FinetuneConfig, accelerator, history: list[dict[str, Any]], eval_samples: int) -> dict[str, Any]:
    metric_keys = [k for k in (history[-1] if history else {}) if k not in ("epoch", "train_loss", "lr", "seconds")]
    return {
        "task": config.task,
        "model": config.model,
        "encoder": config.encoder if config.task == "segmentation" else None,
        "act": config.act,
        "act_kwargs": config.act_kwargs,
        "data": config.data,
        "world_size": accelerator.num_processes,
        "device": accelerator.device.type,
        "mixed_precision": config.mixed_precision,
        "epochs": config.epochs,
        "epochs_done": len(history),
        "image_size": config.size,
        "batch_size": config.batch_size,
        "grad_accum": config.grad_accum,
        "seed": config.seed,
        "eval_samples": eval_samples,
        "main_metric": MAIN_METRIC[config.task],
        "final": {k: history[-1][k] for k in metric_keys} if history else {},
        "history": history,
    }


def run(config: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune and evaluate as ``config`` says; returns the summary written to ``DIR/metrics.json``."""
    from accelerate.utils import set_seed

    import actplug

    # Every input is checked, the data read and the model built before the Accelerator exists, so
    # that bad input fails the same way on one process or many, before any process group starts.
    spec = check_inputs(config)
    set_seed(config.seed)
    task = TASKS[config.task]
    datasets = data.build_datasets(
        spec,
        config.task,
        config.size,
        config.seed,
        synthetic_train=config.train_samples,
        synthetic_val=config.val_samples,
    )
    model = models.build_model(
        config.task,
        config.model,
        num_classes=datasets.num_classes,
        act=config.act,
        act_kwargs=config.act_kwargs,
        encoder=config.encoder,
        image_size=config.size,
    )
    # accelerate launch (torchrun) tells each process the world size before any process group exists.
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if len(datasets.train) < config.batch_size * world:
        raise FinetuneError(
            f"the training split has {len(datasets.train)} images, fewer than one batch of {config.batch_size} "
            f"on each of the {world} processes; use a smaller --batch-size or more training data"
        )
    if len(datasets.val) < world:
        raise FinetuneError(
            f"the validation split has {len(datasets.val)} images, fewer than the {world} processes; "
            "use more validation data or fewer processes"
        )
    accelerator = make_accelerator(config)
    world, rank = accelerator.num_processes, accelerator.process_index
    optimizer = torch.optim.AdamW(
        actplug.param_groups(model, weight_decay=config.weight_decay, act_weight_decay=0.0), lr=config.lr
    )
    train_loader = DataLoader(
        datasets.train,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,  # a last batch of one image would break BatchNorm in training
        collate_fn=task.collate,
        num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
    )
    # Counted as on one process: accelerate steps the scheduler once per process on every step.
    steps_per_epoch = math.ceil(len(train_loader) / config.grad_accum)
    warmup = steps_per_epoch if config.warmup_steps is None else config.warmup_steps
    scheduler = warmup_linear_decay(optimizer, steps_per_epoch * config.epochs, warmup)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    val_loader = DataLoader(
        Subset(datasets.val, range(rank, len(datasets.val), world)),
        batch_size=config.batch_size,
        shuffle=False,
        collate_fn=task.collate,
        num_workers=config.num_workers,
    )
    tracker = task.make_metrics(datasets).to(accelerator.device)

    output: Path = config.output
    start, history = checkpoints.load_latest(accelerator, output) if config.resume else (0, [])
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        write_json(output / "config.json", config.to_json())
        where = f"resuming after epoch {start}" if start else "starting"
        accelerator.print(
            f"actplug finetune {config.task}: {config.model} with {config.act} on {config.data}, "
            f"{world} process(es) on {accelerator.device.type}, {len(datasets.train)} training and "
            f"{len(datasets.val)} validation images; {where}"
        )
    net = accelerator.unwrap_model(model)
    eval_samples = len(datasets.val)
    for epoch in range(start, config.epochs):
        started = time.perf_counter()
        datasets.train.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        train_loss = _train_epoch(
            model,
            train_loader,
            optimizer,
            scheduler,
            task,
            accelerator,
            datasets.ignore_index,
            f"epoch {epoch + 1}/{config.epochs}",
        )
        _sync_buffers(net, accelerator)
        results = _evaluate(net, val_loader, tracker, task, accelerator, datasets.ignore_index)
        eval_samples = int(results.pop("samples"))
        if eval_samples != len(datasets.val):
            raise RuntimeError(f"evaluation counted {eval_samples} images, the validation set has {len(datasets.val)}")
        row = {"epoch": epoch + 1, "train_loss": train_loss, **results}
        row["lr"] = optimizer.param_groups[0]["lr"]
        row["seconds"] = round(time.perf_counter() - started, 3)
        history.append(row)
        checkpoints.save(accelerator, output, epoch + 1, history, config.keep_checkpoints)
        if accelerator.is_main_process:
            write_outputs(output, _summary(config, accelerator, history, eval_samples))
            shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "lr", "seconds"))
            accelerator.print(f"epoch {epoch + 1}/{config.epochs}: {shown} ({row['seconds']:.1f} s)")

    summary = _summary(config, accelerator, history, eval_samples)
    fingerprints = _fingerprints(net, accelerator)
    summary["ranks_in_sync"] = len(set(fingerprints)) == 1
    summary["rank_fingerprints"] = fingerprints
    if accelerator.is_main_process:
        write_outputs(output, summary)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary
