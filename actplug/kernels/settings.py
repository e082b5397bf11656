"""Which fast path the kernels take on each device, read from the environment and changeable at run time.

``ACTPLUG_CPU_KERNELS``: ``compiled`` (default: Inductor-fused C++ kernels for tensors of at least
``ACTPLUG_CPU_MIN_NUMEL`` elements, default 262144), ``eager`` (the plain math, analytic backward),
or ``triton`` (the Triton kernels on CPU tensors, only under ``TRITON_INTERPRET=1``: for tests).
``ACTPLUG_CUDA_KERNELS``: ``triton`` (default: the hand-written Triton kernels, and Inductor's for
activations declared by formula only) or ``eager``.
``ACTPLUG_COMPILE``: ``background`` (default: kernels compile in a compile server, a child process,
while calls run the eager math) or ``sync`` (the first call that needs a kernel compiles it on its own
thread and waits: benchmarks, tests). ``ACTPLUG_CACHE_DIR``: where compiled kernels are kept for later
processes (default: an ``actplug`` folder in Inductor's cache, :func:`actplug.kernels.build.cache_dir`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace

CPU_CHOICES = ("compiled", "eager", "triton")
CUDA_CHOICES = ("triton", "eager")
COMPILE_CHOICES = ("background", "sync")
DEFAULT_CPU_MIN_NUMEL = 1 << 18


@dataclass(frozen=True)
class KernelSettings:
    """The fast path per device and how kernels compile: see the module docstring for each choice."""

    cpu: str = "compiled"
    cuda: str = "triton"
    cpu_min_numel: int = DEFAULT_CPU_MIN_NUMEL
    compile: str = "background"

    def __post_init__(self) -> None:
        if self.cpu not in CPU_CHOICES:
            raise ValueError(f"actplug kernels: cpu={self.cpu!r} is not one of {CPU_CHOICES}")
        if self.cuda not in CUDA_CHOICES:
            raise ValueError(f"actplug kernels: cuda={self.cuda!r} is not one of {CUDA_CHOICES}")
        if self.compile not in COMPILE_CHOICES:
            raise ValueError(f"actplug kernels: compile={self.compile!r} is not one of {COMPILE_CHOICES}")
        if isinstance(self.cpu_min_numel, bool) or not isinstance(self.cpu_min_numel, int) or self.cpu_min_numel < 0:
            raise ValueError(f"actplug kernels: cpu_min_numel={self.cpu_min_numel!r} must be an int >= 0")
        if self.cpu == "triton" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(
                "actplug kernels: cpu='triton' runs Triton kernels on CPU tensors, which only the Triton "
                "interpreter can do; set TRITON_INTERPRET=1 before Triton is imported"
            )


def _from_environment() -> KernelSettings:
    env = os.environ
    return KernelSettings(
        cpu=env.get("ACTPLUG_CPU_KERNELS", "compiled"),
        cuda=env.get("ACTPLUG_CUDA_KERNELS", "triton"),
        cpu_min_numel=_integer(env, "ACTPLUG_CPU_MIN_NUMEL", DEFAULT_CPU_MIN_NUMEL),
        compile=env.get("ACTPLUG_COMPILE", "background"),
    )


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} must be an integer") from None


_current = _from_environment()


def current() -> KernelSettings:
    """The settings in force now."""
    return _current


def configure(**changes: object) -> KernelSettings:
    """Change the settings for the rest of the process (``cpu=``, ``cuda=``, ``cpu_min_numel=``, ``compile=``)."""
    global _current
    known = {f.name for f in fields(KernelSettings)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise TypeError(f"actplug kernels: unknown setting(s) {unknown}; the settings are {sorted(known)}")
    _current = replace(_current, **changes)
    return _current


@contextlib.contextmanager
def use(**changes: object) -> Iterator[KernelSettings]:
    """Change the settings inside a ``with`` block only, e.g. ``use(cpu="eager")``."""
    global _current
    previous = _current
    try:
        yield configure(**changes)
    finally:
        _current = previous
