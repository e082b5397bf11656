"""Which fast path the kernels take on each device, read from the environment and changeable at run time.

``ACTPLUG_CPU_KERNELS``: ``compiled`` (default: Inductor-fused C++ kernels for tensors of at least
``ACTPLUG_CPU_MIN_NUMEL`` elements, default 262144), ``eager`` (the plain math, analytic backward),
or ``triton`` (the Triton kernels on CPU tensors, only under ``TRITON_INTERPRET=1``: for tests).
``ACTPLUG_CPU_POOL_MB``: how many MiB the compiled CPU path may keep of its large outputs to hand
out again (:mod:`actplug.kernels.pool`); default 2048, ``0`` turns the pool off.
``ACTPLUG_CUDA_KERNELS``: ``triton`` (default) or ``eager``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace

CPU_CHOICES = ("compiled", "eager", "triton")
CUDA_CHOICES = ("triton", "eager")
DEFAULT_CPU_MIN_NUMEL = 1 << 18
DEFAULT_CPU_POOL_MB = 2048


@dataclass(frozen=True)
class KernelSettings:
    """The fast path per device: see the module docstring for what each choice means."""

    cpu: str = "compiled"
    cuda: str = "triton"
    cpu_min_numel: int = DEFAULT_CPU_MIN_NUMEL
    cpu_pool_mb: int = DEFAULT_CPU_POOL_MB

    def __post_init__(self) -> None:
        if self.cpu not in CPU_CHOICES:
            raise ValueError(f"actplug kernels: cpu={self.cpu!r} is not one of {CPU_CHOICES}")
        if self.cuda not in CUDA_CHOICES:
            raise ValueError(f"actplug kernels: cuda={self.cuda!r} is not one of {CUDA_CHOICES}")
        if isinstance(self.cpu_min_numel, bool) or not isinstance(self.cpu_min_numel, int) or self.cpu_min_numel < 0:
            raise ValueError(f"actplug kernels: cpu_min_numel={self.cpu_min_numel!r} must be an int >= 0")
        if isinstance(self.cpu_pool_mb, bool) or not isinstance(self.cpu_pool_mb, int) or self.cpu_pool_mb < 0:
            raise ValueError(
                f"actplug kernels: cpu_pool_mb={self.cpu_pool_mb!r} must be an int >= 0 (MiB; 0 turns the pool off)"
            )
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
        cpu_pool_mb=_integer(env, "ACTPLUG_CPU_POOL_MB", DEFAULT_CPU_POOL_MB),
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
    """Change the settings for the rest of the process (``cpu=``, ``cuda=``, ``cpu_min_numel=``, ``cpu_pool_mb=``)."""
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
