"""What the processes of a run must agree on: BatchNorm statistics before evaluation, and a fingerprint
of the whole model per process, equal exactly when every process holds the same weights.

Both work for DDP and FSDP2 alike: a sharded parameter's fingerprint is taken over its full tensor
(gathered from every shard), so the processes compare the full state dict, not their own shards.
"""

from __future__ import annotations

import hashlib

import torch

from .fsdp import full_tensor


def sync_buffers(model: torch.nn.Module, accelerator) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics), as DDP does before each forward."""
    if accelerator.num_processes > 1:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, src=0)


def fingerprints(model: torch.nn.Module, accelerator) -> list[str]:
    """A SHA-256 prefix of every parameter and buffer in the full state dict, one per process (a collective)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        whole = full_tensor(tensor).detach().cpu().contiguous()
        digest.update(whole.view(-1).view(torch.uint8).numpy().tobytes())
    value = int.from_bytes(digest.digest()[:8], "big", signed=True)
    gathered = accelerator.gather(torch.tensor([value], dtype=torch.int64, device=accelerator.device))
    return [f"{int(v) & (2**64 - 1):016x}" for v in gathered.cpu()]
