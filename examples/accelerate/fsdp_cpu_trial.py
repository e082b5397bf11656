"""FSDP2 on two CPU processes (gloo) with SMU's mu and ASH's z and alpha, the way the recipes shard on GPUs.

accelerate does not shard on CPU processes (it runs DDP there), so this trial calls ``fully_shard``
itself with what accelerate is given under ``actplug finetune``: the modules with 0-dim parameters
left unsharded (``actplug.finetune.fsdp``), their gradients averaged before each step. It trains a
small CNN, evaluates on uneven slices, checks that every process holds the same model (the loop's
fingerprints over the full state dict), saves and restores a sharded checkpoint of model and
optimiser, and shows that without the averaging the processes' scalars drift apart. Usage:

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no examples/accelerate/fsdp_cpu_trial.py --output fsdp-trial.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from accelerate import Accelerator
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

import actplug
from actplug.finetune import fsdp, ranks

SCALARS = ("1.act.mu", "2.act.z", "2.act.alpha")


class Block(nn.Sequential):
    """Conv, BatchNorm and an activation: one FSDP unit, as accelerate wraps a model's blocks."""

    def __init__(self, cin: int, cout: int, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), act


def build() -> nn.Module:
    """A small CNN with SMU (mu trainable) and ASH (z, alpha trainable), identical on every process."""
    torch.manual_seed(0)
    return nn.Sequential(
        Block(3, 8, nn.ReLU()),
        Block(8, 8, actplug.create("smu", mu=2.5)),
        Block(8, 8, actplug.create("ash")),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def shard(model: nn.Module) -> nn.Module:
    """``fully_shard`` as accelerate applies it: each block, then the root, the scalars' modules left out."""
    ignored = {p for m in fsdp.scalar_parameter_modules(model) for p in m.parameters()}
    for block in model:
        if isinstance(block, Block):
            fully_shard(block, ignored_params=ignored)
    fully_shard(model, ignored_params=ignored)
    return model


def scalars(model: nn.Module) -> dict[str, float]:
    named = dict(model.named_parameters())
    return {name: float(named[name].detach()) for name in SCALARS}


def scalar_moments(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """AdamW's first moment of each scalar: its optimiser state, which a checkpoint must bring back too."""
    named = dict(model.named_parameters())
    return {name: float(optimizer.state[named[name]]["exp_avg"]) for name in SCALARS}


def make_optimizer(model: nn.Module, *, sync: bool) -> torch.optim.Optimizer:
    """AdamW, the activations' parameters without weight decay; ``sync`` averages the scalars' gradients."""
    optimizer = torch.optim.AdamW(actplug.param_groups(model, act_weight_decay=0.0), lr=0.05)
    if sync:
        fsdp.keep_replicated_in_sync(model, optimizer)
    return optimizer


def train(model: nn.Module, optimizer: torch.optim.Optimizer, accelerator: Accelerator, steps: int) -> dict:
    """Steps on per-process data; returns the scalars' gradients seen and values before and after."""
    generator = torch.Generator().manual_seed(100 + accelerator.process_index)  # each process its own batches
    before, grads = scalars(model), {}
    model.train()
    for _ in range(steps):
        x = torch.randn(4, 3, 12, 12, generator=generator)
        y = torch.randint(0, 3, (4,), generator=generator)
        nn.functional.cross_entropy(model(x), y).backward()
        named = dict(model.named_parameters())
        grads = {name: named[name].grad is not None and float(named[name].grad.abs()) > 0 for name in SCALARS}
        optimizer.step()
        optimizer.zero_grad()
    return {"before": before, "after": scalars(model), "grads": grads}


def evaluate(model: nn.Module, accelerator: Accelerator) -> int:
    """Forward passes on this process's slice (process 0 runs one more than process 1); returns their number."""
    batches = 3 - accelerator.process_index
    ranks.sync_buffers(model, accelerator)
    model.eval()
    with fsdp.gathered(model), torch.no_grad():  # in this order, as the loop evaluates
        for _ in range(batches):
            model(torch.randn(2, 3, 12, 12))
    return batches


def checkpoint_round_trip(
    model: nn.Module, optimizer: torch.optim.Optimizer, accelerator: Accelerator, folder: str
) -> bool:
    """Save model and optimiser sharded (DCP, as accelerate's save_state does in FSDP2), train, restore, compare."""
    saved, moments = ranks.fingerprints(model, accelerator), scalar_moments(model, optimizer)
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    dcp.save(state, checkpoint_id=folder)
    train(model, optimizer, accelerator, 1)
    changed = ranks.fingerprints(model, accelerator) != saved and scalar_moments(model, optimizer) != moments
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    dcp.load(state, checkpoint_id=folder)
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optim"])
    restored = ranks.fingerprints(model, accelerator) == saved and scalar_moments(model, optimizer) == moments
    return changed and restored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="JSON file the main process writes")
    parser.add_argument("--checkpoint", type=Path, help="folder for the sharded checkpoint (default: beside --output)")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()

    accelerator = Accelerator(cpu=True)  # the gloo process group; the sharding is done by hand below
    model = shard(build())
    kinds = {name: type(p).__name__ for name, p in model.named_parameters()}
    optimizer = make_optimizer(model, sync=True)
    trained = train(model, optimizer, accelerator, args.steps)
    eval_batches = accelerator.gather(torch.tensor([evaluate(model, accelerator)])).tolist()
    resharded = all(isinstance(p, DTensor) for name, p in model.named_parameters() if name not in SCALARS)
    fingerprints = ranks.fingerprints(model, accelerator)
    folder = args.checkpoint or args.output.with_name(args.output.stem + "-checkpoint")
    restored = checkpoint_round_trip(model, optimizer, accelerator, str(folder))

    unsynced = shard(build())
    drifted = train(unsynced, make_optimizer(unsynced, sync=False), accelerator, args.steps)
    unsynced_fingerprints = ranks.fingerprints(unsynced, accelerator)

    per_process = accelerator.gather_for_metrics([trained], use_gather_object=True)
    drift = accelerator.gather_for_metrics([drifted["after"]], use_gather_object=True)
    if accelerator.is_main_process:
        result = {
            "world_size": accelerator.num_processes,
            "torch": torch.__version__,
            "parameter_types": kinds,
            "resharded_after_eval": resharded,
            "scalars": per_process,
            "eval_batches": eval_batches,
            "rank_fingerprints": fingerprints,
            "ranks_in_sync": len(set(fingerprints)) == 1,
            "checkpoint_restored": restored,
            "unsynced_scalars": drift,
            "unsynced_fingerprints": unsynced_fingerprints,
        }
        args.output.write_text(json.dumps(result, indent=2))
        accelerator.print(json.dumps({k: result[k] for k in ("world_size", "ranks_in_sync", "checkpoint_restored")}))
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main()
