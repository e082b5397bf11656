"""FSDP2 (``fully_shard``) with the activations' trainable scalars: SMU's mu, ASH's z and alpha.

torch 2.14 refuses 0-dim parameters in both FSDP versions ("fully_shard doesn't support scalar
parameters. Change mu to a 1D tensor with numel equal to 1."; FSDP1 says the same). Reshaping them
would change every checkpoint and the modules' documented shapes, so the modules that own a 0-dim
parameter are given to FSDP as ``ignored_modules`` instead: FSDP leaves their parameters whole on
every process and never reduces their gradients, so :func:`keep_replicated_in_sync` averages those
gradients across processes before each optimiser step (one all-reduce of a few numbers), which keeps
every process's copy equal, as DDP would.

Under accelerate, FSDP runs only on GPUs: with ``Accelerator(cpu=True)`` accelerate 1.16 makes the
processes MULTI_CPU and wraps the model in DDP whatever the FSDP settings say, and without
``cpu=True`` on a machine without an accelerator it starts no process group at all.
:func:`check_launch` refuses both, and FSDP1, rather than letting a run silently do something else.
The sharding itself works on CPU processes with gloo (``examples/accelerate/fsdp_cpu_trial.py``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .errors import FinetuneError

if TYPE_CHECKING:
    from accelerate.utils import FullyShardedDataParallelPlugin


def requested() -> bool:
    """Whether ``accelerate launch`` was asked for FSDP (``--use_fsdp`` or ``distributed_type: FSDP``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").strip().lower() in ("1", "true", "yes", "y", "on")


def check_launch(cuda: bool) -> None:
    """Refuse an FSDP launch that accelerate would not shard (no CUDA) or that actplug does not support (FSDP1)."""
    if not requested():
        return
    version = os.environ.get("FSDP_VERSION", "1").strip()
    if version != "2":
        raise FinetuneError(
            f"FSDP version {version} is not supported by actplug finetune (its unsharded activation scalars and "
            "evaluation are built on FSDP2's fully_shard); launch with --fsdp_version 2, e.g. "
            "--config_file examples/accelerate/fsdp.yaml"
        )
    if not cuda:
        raise FinetuneError(
            "FSDP under accelerate needs CUDA GPUs: on CPU processes accelerate runs DDP instead (MULTI_CPU) and "
            "shards nothing; on a machine without a GPU launch with --multi_gpu or "
            "--config_file examples/accelerate/two_cpu_processes.yaml"
        )


def scalar_parameter_modules(model: nn.Module) -> list[nn.Module]:
    """The modules that own a 0-dim parameter themselves (the activations with trainable scalars)."""
    return [m for m in model.modules() if any(p.dim() == 0 for p in m.parameters(recurse=False))]


def make_plugin(model: nn.Module) -> FullyShardedDataParallelPlugin:
    """accelerate's FSDP plugin from the launch settings, with the 0-dim parameters' modules left unsharded."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()  # reads FSDP_* as accelerate launch set them
    ignored = list(_named_modules(model, plugin.ignored_modules))
    for module in scalar_parameter_modules(model):
        if all(module is not m for m in ignored):
            ignored.append(module)
    plugin.ignored_modules = ignored or None
    return plugin


def _named_modules(model: nn.Module, ignored: Any) -> Iterator[nn.Module]:
    """The modules ``ignored`` names: accelerate's regex over module names, or modules given as they are."""
    if ignored is None:
        return
    if isinstance(ignored, str):
        pattern = re.compile(ignored)
        yield from (m for name, m in model.named_modules() if pattern.fullmatch(name))
    else:
        yield from ignored


def is_sharded(model: nn.Module) -> bool:
    """Whether ``fully_shard`` was applied to ``model`` or a module inside it."""
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


def replicated_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters FSDP left whole on every process (plain tensors, not DTensors)."""
    from torch.distributed.tensor import DTensor

    return [p for p in model.parameters() if p.requires_grad and not isinstance(p, DTensor)]


def average_gradients(params: list[nn.Parameter]) -> None:
    """Average ``params``' gradients over all processes in one all-reduce, as FSDP does for its own.

    A parameter without a gradient on every process keeps none (the optimiser then skips it, as on
    one process); one with a gradient on some processes gets the average over all of them.
    """
    if not params or not torch.distributed.is_initialized():
        return
    world = torch.distributed.get_world_size()
    device = params[0].device
    values, flags = [], []
    for p in params:
        has = p.grad is not None
        flags.append(float(has))
        values.append(p.grad.detach().reshape(-1).float() if has else torch.zeros(p.numel(), device=device))
    flat = torch.cat([torch.cat(values).to(device), torch.tensor(flags, device=device)])
    torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
    flat /= world
    offset = 0
    for i, p in enumerate(params):
        mean = flat[offset : offset + p.numel()].view(p.shape)
        offset += p.numel()
        if float(flat[-len(params) + i]) == 0.0:
            continue
        if p.grad is None:
            p.grad = mean.to(p.dtype).clone()
        else:
            p.grad.copy_(mean)


def keep_replicated_in_sync(model: nn.Module, optimizer: torch.optim.Optimizer) -> RemovableHandle | None:
    """On a sharded ``model``, average the unsharded parameters' gradients before every optimiser step.

    Hooks the torch optimiser inside accelerate's wrapper, whose ``step`` runs only on the steps that
    update (not on gradient-accumulation steps), so the all-reduce runs once per update on every
    process. Returns the hook's handle, or None when ``model`` is not sharded or has none to sync.
    """
    if not is_sharded(model):
        return None
    params = replicated_parameters(model)
    if not params:
        return None
    inner = getattr(optimizer, "optimizer", optimizer)
    return inner.register_step_pre_hook(lambda *_: average_gradients(params))


@contextmanager
def gathered(model: nn.Module) -> Iterator[nn.Module]:
    """Hold every FSDP unit of ``model`` unsharded for the block, so that processes may run different
    numbers of forward passes (evaluation on disjoint slices of the validation set) without
    collectives; resharded, with each unit's ``reshard_after_forward`` restored, afterwards.

    A no-op for a model that is not sharded. It holds the whole model on every process, as DDP does.
    """
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    # FSDP2 has a setter but no getter for reshard_after_forward; each param group's
    # post_forward_mesh_info (None when it stays unsharded after forward) holds it.
    states = [u._get_fsdp_state() for u in units]
    saved = [(s._auto_reshard_after_forward, [g.post_forward_mesh_info for g in s._fsdp_param_groups]) for s in states]
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield model
    finally:
        for unit, state, (auto, infos) in zip(units, states, saved, strict=True):
            state._auto_reshard_after_forward = auto
            for group, info in zip(state._fsdp_param_groups, infos, strict=True):
                group.post_forward_mesh_info = info
            unit.reshard()


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor on every process: a DTensor's shards gathered (a collective), others as they are."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
