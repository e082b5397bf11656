"""Timing with alternating repetitions: every candidate runs once per round, and medians are kept.

Interleaving the candidates (and rotating their order each round) spreads clock-frequency
changes, cache state and other processes' load evenly over them, so their ratios are stable even
when the absolute times drift. Warm-up calls come first: ``torch.compile`` and the fused CPU
kernels compile there, never in a timed call.

On CPU each timed call starts from the same memory state. glibc serves a tensor of more than 32 MB
from fresh pages, and the first write to each page (a page fault, the kernel zeroing it) is most
of what ReLU's forward costs on a tensor that size; but a call that finds enough free memory left
in the heap by the calls before it skips that cost and runs up to 6x faster (seen here: ReLU at
5 ms in some rounds, 30 ms in the others). So the heap's free pages go back to the system
(``malloc_trim``, untimed) before every timed call, and every candidate's outputs land on fresh
pages, as they do in a plain PyTorch process: the ``fresh`` memory mode. The ``reused`` mode is the
other steady state, that of a caching allocator (jemalloc, tcmalloc, PyTorch's CUDA allocator):
glibc is told to keep all freed memory in its heap, so after the warm-up no call faults a page in
and the times are the kernels' own.
"""

from __future__ import annotations

import ctypes
import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class Candidate:
    """One thing to time: ``call()`` is timed; ``reset()`` (untimed) runs before each call."""

    name: str
    call: Callable[[], object]
    reset: Callable[[], None] | None = None


@dataclass
class Timings:
    """Seconds of every timed call per candidate, in the order they ran."""

    samples: dict[str, list[float]] = field(default_factory=dict)

    def median_ms(self, name: str) -> float:
        """The median time of candidate ``name`` in milliseconds."""
        return statistics.median(self.samples[name]) * 1e3

    def samples_ms(self, name: str) -> list[float]:
        """Every time of candidate ``name`` in milliseconds."""
        return [s * 1e3 for s in self.samples[name]]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@functools.cache
def _libc(name: str) -> Callable[..., int] | None:
    """The C library's function ``name`` (glibc's ``malloc_trim``, ``mallopt``), or None where it has none."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim(0)``); False if it can't.

    The next allocations then land on fresh pages, whatever the calls before them freed.
    """
    trim = _libc("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
MEMORY_MODES = ("fresh", "reused")


def check_memory_mode(memory: str) -> None:
    """Raise ValueError unless ``memory`` is one of :data:`MEMORY_MODES`."""
    if memory not in MEMORY_MODES:
        raise ValueError(f"memory={memory!r} is not one of {MEMORY_MODES}")


def keep_freed_memory() -> bool:
    """Make glibc keep every freed block in its heap, for the rest of the process; False if it can't.

    No allocation is served by mmap and the heap is never trimmed, so a freed tensor's pages, once
    faulted in, serve the next tensor untouched: the ``reused`` memory mode.
    """
    mallopt = _libc("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def time_call(candidate: Candidate, device: torch.device, memory: str = "fresh", calls: int = 1) -> float:
    """Seconds one ``candidate.call()`` takes: the mean of ``calls`` calls, each after its ``reset()``.

    On CPU every call is timed on its own, the clock read with nothing queued, and before each
    (untimed) come ``candidate.reset()`` and, in the ``fresh`` memory mode, :func:`release_free_memory`.
    On CUDA the calls run back to back between two CUDA events, as they do in a training step: the
    host queues the next kernel while the GPU runs the last, so what is timed is the GPU's work plus
    whatever host overhead the queue does not hide (one call alone would also time the launch
    latency, tens of microseconds against a 0.2 ms kernel). ``reset()`` then runs inside the timed
    region; the benchmark's resets only set ``.grad`` to None.
    """
    if calls < 1:
        raise ValueError(f"calls={calls} must be >= 1")
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        synchronize(device)
        start.record()
        for _ in range(calls):
            if candidate.reset is not None:
                candidate.reset()
            candidate.call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / calls
    total = 0.0
    for _ in range(calls):
        if candidate.reset is not None:
            candidate.reset()
        if memory == "fresh":
            release_free_memory()
        synchronize(device)
        begin = time.perf_counter()
        candidate.call()
        synchronize(device)
        total += time.perf_counter() - begin
    return total / calls


def alternate(
    candidates: Sequence[Candidate],
    device: torch.device,
    repeats: int,
    warmup: int = 2,
    memory: str = "fresh",
    calls: int = 1,
) -> Timings:
    """Run each candidate ``warmup`` times untimed, then ``repeats`` rounds of one timed sample each.

    Round r starts at candidate r (mod the count), so no candidate always runs first. ``memory``:
    ``fresh`` (free heap pages go back before each CPU call) or ``reused`` (they stay; see
    :func:`keep_freed_memory`, which the caller applies). Each sample is the mean of ``calls`` calls
    (:func:`time_call`).
    """
    check_memory_mode(memory)
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be >= 1")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique, got {names}")
    for candidate in candidates:
        for _ in range(warmup):
            time_call(candidate, device, memory, calls)
    timings = Timings({c.name: [] for c in candidates})
    count = len(candidates)
    for r in range(repeats):
        for i in range(count):
            candidate = candidates[(r + i) % count]
            timings.samples[candidate.name].append(time_call(candidate, device, memory, calls))
    return timings


def clear_grads(tensors: Sequence[torch.Tensor]) -> Callable[[], None]:
    """A ``reset`` that sets ``.grad`` of ``tensors`` to None, so no backward accumulates into old grads."""

    def reset() -> None:
        for t in tensors:
            t.grad = None

    return reset
