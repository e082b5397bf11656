"""torchmetrics' MeanAveragePrecision, synced correctly when processes saw different numbers of images.

Its states are lists with one tensor per image, reduced with ``dist_reduce_fx=None``: torchmetrics
then runs one ``all_gather`` per list element, so processes holding different numbers of images run
different numbers of collectives and gloo aborts (NCCL hangs). An evaluation split that gives each
process a disjoint slice, so that no image counts twice, is uneven whenever the number of images is
not a multiple of the number of processes. Here every list is gathered whole, as Python objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision


class UnevenMeanAveragePrecision(MeanAveragePrecision):
    """``MeanAveragePrecision`` whose sync concatenates each process's per-image lists in rank order."""

    def _sync_dist(self, dist_sync_fn: Callable | None = None, process_group: Any | None = None) -> None:
        import torch.distributed as dist

        group = process_group or self.process_group
        local = {attr: [_to_cpu(item) for item in getattr(self, attr)] for attr in self._reductions}
        gathered: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, local, group=group)
        for attr in self._reductions:
            setattr(self, attr, [_to_device(item, self.device) for part in gathered for item in part[attr]])


def _to_cpu(item: Any) -> Any:
    """CPU copies travel between processes (a pickled CUDA tensor would land on the sender's device)."""
    if isinstance(item, Tensor):
        return item.detach().cpu()
    if isinstance(item, tuple):
        return tuple(_to_cpu(x) for x in item)
    return item


def _to_device(item: Any, device: torch.device) -> Any:
    if isinstance(item, Tensor):
        return item.to(device)
    if isinstance(item, tuple):
        return tuple(_to_device(x, device) for x in item)
    return item
