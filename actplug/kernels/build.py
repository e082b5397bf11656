"""Turning a kernel (a plain-math function of tensors) into a compiled artifact on disk, and back.

Three steps, each with its own place:

1. :func:`trace` (the caller's thread, tens of milliseconds): ``make_fx`` records the function as a
   graph of ATen operations on fake tensors, with the dimensions that vary symbolic. The graph is
   the kernel's identity: :func:`digest` hashes it with everything else that decides the machine
   code, so an artifact is found again by any process that traces the same math.
2. :func:`compile_graph` (the compile server, :mod:`.server`, or the caller's thread with
   ``compile="sync"``): Inductor's ``standalone_compile`` of the graph, saved atomically.
3. :func:`load` (the caller's thread, milliseconds): the saved artifact as a callable.

Compiled artifacts have no guards: :class:`Signature` says what a call must look like (dtypes,
static sizes, dynamic sizes at least 2 and equal within a group, contiguous), and the compiler checks
it before every call.
"""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# Inductor options for every kernel, per device. CPU: parallelise every loop whatever the size the
# kernel was traced for (with dynamic shapes Inductor decides from the example, and the fused path only
# serves large tensors); and let the C++ compiler fuse each multiply-add into one FMA (rounded once,
# so no less accurate; Inductor compiles with -ffp-contract=off to match eager PyTorch bit for bit,
# which our kernels do not promise: they are held to float64 references). The polynomials of the
# fused forms cost half as much with FMAs.
CPU_OPTIONS = {"cpp.min_chunk_size": 1, "cpp.enable_floating_point_contract_flag": "fast"}
CUDA_OPTIONS: dict[str, Any] = {}
_VERSION = 2  # of the artifact format below: bump to orphan every artifact written before


@dataclass(frozen=True)
class Arg:
    """One argument of a kernel: its shape with None for a dimension that varies, its dtype, its
    device type, and the group its varying dimensions share a size with (``groups[i]`` for dim i)."""

    shape: tuple[int | None, ...]
    dtype: torch.dtype
    device: str
    groups: tuple[int | None, ...]

    def as_json(self) -> list[Any]:
        return [list(self.shape), str(self.dtype).removeprefix("torch."), self.device, list(self.groups)]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> Arg:
        shape, dtype, device, groups = data
        return cls(tuple(shape), getattr(torch, dtype), device, tuple(groups))


@dataclass(frozen=True)
class Signature:
    """What every call of a kernel looks like (see the module docstring)."""

    args: tuple[Arg, ...]

    def accepts(self, values: Sequence[torch.Tensor]) -> bool:
        """True if ``values`` fit: the compiled code is correct for these and only these."""
        if len(values) != len(self.args):
            return False
        sizes: dict[int, int] = {}
        for spec, t in zip(self.args, values, strict=True):
            if t.dtype != spec.dtype or t.ndim != len(spec.shape) or t.device.type != spec.device:
                return False
            if t.ndim and not t.is_contiguous():
                return False
            for size, want, group in zip(t.shape, spec.shape, spec.groups, strict=True):
                if want is not None:
                    if size != want:
                        return False
                elif size < 2 or sizes.setdefault(group, size) != size:
                    return False
        return True

    @classmethod
    def of(cls, values: Sequence[torch.Tensor], dynamic: Sequence[tuple[int, int, int]]) -> Signature:
        """The signature of calls like ``values`` whose ``(argument, dimension, group)`` dimensions vary."""
        free = {(i, d): g for i, d, g in dynamic}
        args = []
        for i, t in enumerate(values):
            groups = tuple(free.get((i, d)) for d in range(t.ndim))
            shape = tuple(None if g is not None else s for s, g in zip(t.shape, groups, strict=True))
            args.append(Arg(shape, t.dtype, t.device.type, groups))
        return cls(tuple(args))


def _fakes(signature: Signature, hints: Sequence[Sequence[int]]) -> tuple[Any, list[torch.Tensor]]:
    """Fake tensors for ``signature``: varying dimensions symbolic (hinted by ``hints``, the sizes of
    the call that asked for the kernel: Inductor makes some choices from them), the rest static."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext

    # Constants a formula makes (torch.where(c, 1.0, t) wraps the 1.0) are real tensors in the graph.
    mode = FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True)
    fakes = []
    for spec, hint in zip(signature.args, hints, strict=True):
        real = torch.empty(tuple(hint), dtype=spec.dtype, device=spec.device)  # never written: no memory touched
        dims = [DimDynamic.DYNAMIC if g is not None else DimDynamic.STATIC for g in spec.groups]
        context = StatelessSymbolicContext(dynamic_sizes=dims)
        fakes.append(mode.from_tensor(real, symbolic_context=context))
    return mode, fakes


def trace(fn: Callable[..., Any], signature: Signature, hints: Sequence[Sequence[int]]) -> torch.fx.GraphModule:
    """``fn`` as a graph of ATen operations (outputs flattened to a tuple of tensors)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    mode, fakes = _fakes(signature, hints)
    with mode:
        gm = make_fx(fn, tracing_mode="fake")(*fakes)
    return _canonical(gm)


def _canonical(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``gm`` with its inputs named by position and no type annotations (the same math gives the same
    code whatever its arguments are called or annotated), and tensor constants of one element
    (``torch.tensor(eps)`` in a formula) as ``aten.full`` calls: compiled artifacts would otherwise
    want each as an extra input. Larger constants stay (and the kernel then fails to compile,
    leaving the eager math)."""
    for node in gm.graph.nodes:
        node.type = None  # annotations of the traced function (its return type) would show in the code
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for i, node in enumerate(placeholders):  # two passes: a new name may be an old one
        node.name = node.target = f"_input_{i}"
    for i, node in enumerate(placeholders):
        node.name = node.target = f"input_{i}"
    for node in list(gm.graph.nodes):
        if node.op != "get_attr":
            continue
        value = getattr(gm, node.target, None)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            continue
        with gm.graph.inserting_before(node):
            full = gm.graph.call_function(
                torch.ops.aten.full.default,
                (list(value.shape), value.item()),
                {"dtype": value.dtype, "device": value.device},
            )
        node.replace_all_uses_with(full)
        gm.graph.erase_node(node)
        delattr(gm, node.target)
    gm.recompile()
    return gm


def digest(gm: torch.fx.GraphModule, signature: Signature, device: str, threads: int) -> str:
    """What decides a kernel's machine code, hashed: its graph (code and tensor constants), its
    signature, the Inductor options, the thread count its loops are compiled for, and the versions
    and CPU features of this installation."""
    h = hashlib.sha256()
    h.update(gm.code.encode())
    for name, value in sorted(gm.state_dict(keep_vars=True).items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    for name in sorted(k for k in vars(gm) if k.startswith("_tensor_constant")):
        h.update(name.encode())
        h.update(getattr(gm, name).detach().cpu().contiguous().numpy().tobytes())
    facts = {
        "format": _VERSION,
        "signature": [a.as_json() for a in signature.args],
        "options": options(device),
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": torch.backends.cpu.get_cpu_capability(),
    }
    h.update(json.dumps(facts, sort_keys=True).encode())
    return h.hexdigest()[:32]


def options(device: str) -> dict[str, Any]:
    """The Inductor options of kernels on ``device`` (those this PyTorch knows)."""
    from torch._inductor import config

    chosen = CPU_OPTIONS if device == "cpu" else CUDA_OPTIONS
    known = {}
    for key, value in chosen.items():
        section, _, name = key.rpartition(".")
        owner = getattr(config, section) if section else config
        if hasattr(owner, name):
            known[key] = value
    return known


def cache_dir() -> Path:
    """Where artifacts live: ``ACTPLUG_CACHE_DIR``, else an ``actplug`` folder in Inductor's own cache
    (``TORCHINDUCTOR_CACHE_DIR`` or its default), whose compiled code the artifacts need beside them."""
    chosen = os.environ.get("ACTPLUG_CACHE_DIR")
    if chosen:
        return Path(chosen)
    inductor = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not inductor:
        try:
            user = getpass.getuser()
        except Exception:  # no user name (some containers): Inductor falls back the same way
            user = "unknown"
        inductor = os.path.join(tempfile.gettempdir(), "torchinductor_" + "".join(c for c in user if c.isalnum()))
    return Path(inductor) / "actplug"


def graph_bytes(gm: torch.fx.GraphModule) -> bytes:
    """``gm`` for the compile server: its code and tensor attributes. (Not the pickled GraphModule,
    which re-traces its code on loading and turns factory calls such as ``scalar_tensor`` into
    attributes the compiled artifact would then want as inputs.)"""
    tensors = {k: v for k, v in vars(gm).items() if isinstance(v, torch.Tensor)}
    tensors.update(dict(gm.named_buffers()))
    buffer = io.BytesIO()
    torch.save({"code": gm.code, "tensors": tensors}, buffer)
    return buffer.getvalue()


def graph_from_bytes(data: bytes | Path) -> Callable[..., Any]:
    """The function :func:`graph_bytes` wrote: ``forward(*args)`` running the graph's code."""
    import math
    import types

    saved = torch.load(io.BytesIO(data) if isinstance(data, bytes) else data, weights_only=False)
    namespace: dict[str, Any] = {"torch": torch, "inf": math.inf, "nan": math.nan, "device": torch.device}
    exec(compile(saved["code"], "<actplug kernel graph>", "exec"), namespace)
    holder = types.SimpleNamespace(**saved["tensors"])
    forward = namespace["forward"]
    return lambda *args: forward(holder, *args)


def compile_graph(
    graph: Callable[..., Any], signature: Signature, hints: Sequence[Sequence[int]], device: str, out: Path
) -> None:
    """Compile ``graph`` (a traced kernel, or :func:`graph_from_bytes`' function) with Inductor for calls of
    ``signature`` and save the artifact at ``out`` (atomically)."""
    mode, fakes = _fakes(signature, hints)
    from torch.fx.experimental.proxy_tensor import make_fx

    with mode:  # traced (again) here: this trace's fake values carry the dynamic sizes to Inductor
        gm = make_fx(graph, tracing_mode="fake")(*fakes)
    artifact = torch._inductor.standalone_compile(gm, fakes, options={"config_patches": options(device)})
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    artifact.save(path=str(partial), format="binary")
    os.replace(partial, out)


def load(path: Path) -> Callable[..., Any]:
    """The artifact at ``path`` as a callable returning its outputs as a list."""
    return torch._inductor.CompiledArtifact.load(path=str(path), format="binary")


def preload() -> None:
    """Import what :func:`trace`, :func:`load` and :func:`compile_graph` need (a second or two, once), so
    that the caller's thread pays milliseconds for them later."""
    import torch._inductor.standalone_compile
    import torch._subclasses.fake_tensor
    import torch.fx.experimental.proxy_tensor
    import torch.fx.experimental.symbolic_shapes  # noqa: F401
    from torch._inductor import codecache, compile_fx  # noqa: F401
