"""Output buffers for the CPU fast path, kept after use and handed out again: a caching allocator.

glibc serves every allocation of more than 32 MiB with a fresh ``mmap`` and unmaps it when freed,
so in a plain PyTorch process each large output is new memory, and the first write to each of its
4 KiB pages faults into the kernel, which zeroes the page. On the development machine (a KVM guest
whose host takes freed memory back) that is about 3 µs a page, 70-80% of ReLU's forward on a
51 MB tensor and of every fused kernel's. PyTorch's CUDA allocator never pays this: it keeps freed
blocks and hands them out again. This pool does the same for the outputs of our CPU kernels (the
activation and the input's gradient) of at least :data:`MIN_BYTES`; smaller ones come from glibc's
heap, which already recycles its memory.

The pool keeps one reference to each storage it made. A storage is free when that reference is its
only one (``torch._C._storage_Use_Count``, and the Python reference count of the storage object):
no tensor, view, saved-for-backward slot, storage handle, NumPy array or DLPack capsule holds it
any more. A storage that was resized, moved to shared memory or swapped
out is dropped, never reused. The pool holds at most ``cpu_pool_mb`` MiB (in use or free; the
oldest free storages go first to make room, and past that outputs are allocated plainly);
``ACTPLUG_CPU_POOL_MB=0`` or ``use(cpu_pool_mb=0)`` turns it off, and :func:`empty_cache` gives
the free storages back, as ``torch.cuda.empty_cache`` does.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from . import settings

MIN_BYTES = 32 << 20


# A private PyTorch function (the C++ reference count of a StorageImpl); where it is missing, the
# pool is off.
_use_count: Callable[[int], int] | None = getattr(torch._C, "_storage_Use_Count", None)


@dataclass
class _Entry:
    storage: torch.UntypedStorage
    nbytes: int
    address: int

    def intact(self) -> bool:
        """The storage still holds the memory it was made with (not resized, shared or swapped)."""
        s = self.storage
        return s.data_ptr() == self.address and s.nbytes() == self.nbytes and not s.is_shared()

    def free(self) -> bool:
        """Only the pool holds the storage: nothing can read or write its memory any more.

        No tensor holds it (the C++ use count is the pool's one), and no Python handle to it either
        (``t.untyped_storage()`` gives the very object the pool keeps, so its reference count says).
        """
        return _use_count(self.storage._cdata) == 1 and sys.getrefcount(self.storage) == _OWN_REFERENCES


class BufferPool:
    """Storages for CPU outputs, reused once nothing else holds them; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []  # least recently handed out first

    @property
    def held_bytes(self) -> int:
        """Bytes of all storages the pool keeps, in use or free."""
        with self._lock:
            return sum(e.nbytes for e in self._entries)

    def free_bytes(self) -> int:
        """Bytes of the storages nothing but the pool holds."""
        with self._lock:
            return sum(e.nbytes for e in self._entries if e.free())

    def storage(self, nbytes: int, limit: int) -> torch.UntypedStorage:
        """A storage of exactly ``nbytes``: a free one of the pool, or a new one it keeps if the pool
        stays within ``limit`` bytes (making room by dropping its oldest free storages), or else a
        plain one the pool does not keep."""
        with self._lock:
            entries = self._entries
            for i, entry in enumerate(entries):
                if entry.nbytes != nbytes or not entry.free():
                    continue
                del entries[i]
                if entry.intact():
                    entries.append(entry)
                    return entry.storage
                break  # changed behind our back: dropped, and a new one made below
            held = sum(e.nbytes for e in entries)
            for entry in [e for e in entries if e.free()]:  # oldest first
                if held + nbytes <= limit:
                    break
                entries.remove(entry)
                held -= entry.nbytes
            storage = torch.empty(nbytes, dtype=torch.uint8).untyped_storage()
            if held + nbytes <= limit:
                entries.append(_Entry(storage, nbytes, storage.data_ptr()))
            return storage

    def empty_cache(self) -> int:
        """Drop every free storage (its memory goes back to the system); returns the bytes dropped."""
        with self._lock:
            dropped = 0
            kept = []
            for entry in self._entries:  # one look per entry: a tensor freed meanwhile is not lost
                if entry.free():
                    dropped += entry.nbytes
                else:
                    kept.append(entry)
            self._entries = kept
        return dropped


def _own_references() -> int:
    """``sys.getrefcount`` of a pooled storage that only its entry holds (measured, as it depends
    on the Python version)."""
    entry = _Entry(torch.UntypedStorage(0), 0, 0)
    return sys.getrefcount(entry.storage)


_OWN_REFERENCES = _own_references()
_pool = BufferPool()


def empty(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A contiguous uninitialised tensor for a kernel to write: from the pool for large CPU buffers
    (while it is on and fits), else from ``torch.empty``."""
    shape = tuple(shape)
    if device.type != "cpu" or _use_count is None:
        return torch.empty(shape, dtype=dtype, device=device)
    nbytes = math.prod(shape) * dtype.itemsize
    limit = settings.current().cpu_pool_mb << 20
    if nbytes < MIN_BYTES or nbytes > limit:
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.empty(0, dtype=dtype).set_(_pool.storage(nbytes, limit), 0, shape)


def empty_cache() -> int:
    """Give the free storages of the CPU output pool back to the system; returns how many bytes."""
    return _pool.empty_cache()


def held_bytes() -> int:
    """Bytes the CPU output pool keeps now, in use or free."""
    return _pool.held_bytes
