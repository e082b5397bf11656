"""The accelerate-driven fine-tuning loop: one process or many, CPU or GPUs, resumable per epoch.

Everything cheap is checked first (options, dataset folder, model and activation names), so bad
input fails before a model is built. Without CUDA the Accelerator is built with ``cpu=True``:
``accelerate launch --multi_gpu --num_processes 2`` on a CPU machine then trains one model with
two-process DDP (gloo) instead of two independent models. Evaluation gives every process a
disjoint slice of the validation set (no sampler padding, so no image counts twice) and
torchmetrics sums the states across processes. Under FSDP2 (GPUs) the activations' 0-dim parameters
stay unsharded with averaged gradients, and evaluation runs on the gathered weights (:mod:`.fsdp`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Subset

from . import checkpoints, data, fsdp, models, ranks, run_folder
from .config import FinetuneConfig
from .errors import FinetuneError
from .outputs import MAIN_METRIC, write_json, write_outputs
from .schedule import warmup_linear_decay
from .tasks import TASKS, Task

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger("actplug")


def check_inputs(config: FinetuneConfig) -> data.DataSpec:
    """Validate options, data spec, model and activation names, and the output folder; cheap, before anything runs."""
    fsdp.check_launch(torch.cuda.is_available())  # an FSDP launch accelerate would not shard
    if config.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise FinetuneError("--mixed-precision fp16 needs a CUDA GPU; on a CPU use --mixed-precision bf16 or no")
    spec = data.parse_data_spec(config.data, config.task)
    models.check_model_options(config.task, config.model, config.encoder, config.act, config.act_kwargs, config.size)
    models.check_pretrained(config.task, config.model, config.encoder, config.pretrained)
    smallest = models.min_train_batch_size(config.task, config.model, encoder=config.encoder, image_size=config.size)
    if config.batch_size < smallest:
        raise FinetuneError(
            f"--batch-size {config.batch_size} is too small for {config.model}: its BatchNorm layers need at least "
            f"{smallest} images per process in training; use --batch-size {smallest} or more"
        )
    run_folder.check_output(config)
    return spec


def make_accelerator(config: FinetuneConfig, model: torch.nn.Module | None = None) -> Accelerator:
    """The Accelerator for ``config``: ``cpu=True`` without CUDA, seeded samplers for exact resumes.

    Under an FSDP launch (GPUs, ``fsdp_version: 2``) the plugin leaves ``model``'s modules with 0-dim
    parameters (the activations' trainable scalars) unsharded; see :mod:`.fsdp`.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    cuda = torch.cuda.is_available()
    fsdp.check_launch(cuda)
    plugin = fsdp.make_plugin(model) if fsdp.requested() and model is not None else None
    return Accelerator(
        cpu=not cuda,
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        fsdp_plugin=plugin,
    )


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


def _summary(
    config: FinetuneConfig, accelerator, history: list[dict[str, Any]], eval_samples: int, built: dict[str, Any]
) -> dict[str, Any]:
    """metrics.json: the run's options, where it ran, the weights it started from and their fit, and every epoch."""
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
        "pretrained": built.get("pretrained"),
        "fit": built.get("fit"),
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
    built: dict[str, Any] = {}  # what --pretrained loaded and what --fit fitted, for config.json and metrics.json
    model = models.build_model(
        config.task,
        config.model,
        num_classes=datasets.num_classes,
        act=config.act,
        act_kwargs=config.act_kwargs,
        encoder=config.encoder,
        image_size=config.size,
        pretrained=config.pretrained,
        fit=config.fit,
        calibration=models.calibration_batch(config.task, datasets.train, config.seed) if config.fit else None,
        report=built,
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
    accelerator = make_accelerator(config, model)
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
    fsdp.keep_replicated_in_sync(model, optimizer)  # FSDP: the unsharded scalars' gradients averaged
    val_loader = DataLoader(
        Subset(datasets.val, range(rank, len(datasets.val), world)),
        batch_size=config.batch_size,
        shuffle=False,
        collate_fn=task.collate,
        num_workers=config.num_workers,
    )
    tracker = task.make_metrics(datasets).to(accelerator.device)

    output: Path = config.output
    run_id = run_folder.run_id(config, accelerator)
    start, history = checkpoints.load_latest(accelerator, output, run_id=run_id) if config.resume else (0, [])
    if accelerator.is_main_process:
        if config.overwrite and (gone := run_folder.discard_previous_run(output)):
            accelerator.print(f"--overwrite: deleted the previous run's {', '.join(gone)} in {output}")
        output.mkdir(parents=True, exist_ok=True)
        write_json(
            output / "config.json", {**config.to_json(), "run_id": run_id, "pretrained_weights": built["pretrained"]}
        )
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
        ranks.sync_buffers(net, accelerator)
        with fsdp.gathered(net):  # FSDP: whole weights, so processes may run different numbers of batches
            results = _evaluate(net, val_loader, tracker, task, accelerator, datasets.ignore_index)
        eval_samples = int(results.pop("samples"))
        if eval_samples != len(datasets.val):
            raise RuntimeError(f"evaluation counted {eval_samples} images, the validation set has {len(datasets.val)}")
        row = {"epoch": epoch + 1, "train_loss": train_loss, **results}
        row["lr"] = optimizer.param_groups[0]["lr"]
        row["seconds"] = round(time.perf_counter() - started, 3)
        history.append(row)
        checkpoints.save(accelerator, output, epoch + 1, history, config.keep_checkpoints, run_id=run_id)
        if accelerator.is_main_process:
            write_outputs(output, _summary(config, accelerator, history, eval_samples, built))
            shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "lr", "seconds"))
            accelerator.print(f"epoch {epoch + 1}/{config.epochs}: {shown} ({row['seconds']:.1f} s)")

    summary = _summary(config, accelerator, history, eval_samples, built)
    fingerprints = ranks.fingerprints(net, accelerator)
    summary["ranks_in_sync"] = len(set(fingerprints)) == 1
    summary["rank_fingerprints"] = fingerprints
    if accelerator.is_main_process:
        write_outputs(output, summary)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary
