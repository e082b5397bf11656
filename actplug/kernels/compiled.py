"""The CPU fast path: the plain math of :mod:`actplug.functional`, fused by Inductor into one C++ loop.

Eager PyTorch runs a formula like SMU's as five or six passes over memory; Inductor fuses it into
one vectorised loop that moves the same bytes as ``torch.relu``. Each math function is compiled once
per process with dynamic shapes (one kernel serves every size; a new dtype compiles again), and
Inductor's on-disk cache makes later processes fast. The first compile takes a few seconds, so it
is announced once on the ``actplug`` logger. Anything that fails to compile (no C++ compiler, say)
is reported once and falls back to the plain math, which computes the same values.

Once dynamo has compiled a graph, later calls that its guards would pass run the graph directly
(:mod:`.direct_call`): a call through ``torch.compile`` costs more than a third of a millisecond
between two passes over memory, more than the rest of the activation's overhead together.

A kernel can write its result into a buffer the caller gives (``out=``), so that the caller chooses
the memory: the activations give one from :mod:`.pool`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from . import direct_call

logger = logging.getLogger("actplug")

_compiled: dict[Callable[..., Any], Callable[..., Any]] = {}
# Per signature, the compiled graphs that run() calls without dynamo (see direct_call), and while
# dynamo runs, the call's arguments and the list its backend adds such graphs to.
_direct: dict[tuple[Any, ...], list[direct_call.DirectCall]] = {}
_capturing: tuple[list[Any], list[direct_call.DirectCall]] | None = None
_broken: set[Callable[..., Any]] = set()
_seen: set[tuple[Any, ...]] = set()
_announced = False

# Each math function meets several dtypes, needs-gradient flags and size-1 specialisations, each a
# recompilation; torch.compile's default budget (8 per function) runs out within one test session,
# and with fullgraph=True running out raises, which would mark the function broken for good. Give
# each function room for all of them (where torch.compile takes recompile_limit; older PyTorch keeps
# the global limit).
_RECOMPILE_LIMIT = 64
# With dynamic shapes Inductor decides once, from the size of the first call, whether the loop runs
# on all cores, and its on-disk cache then serves that decision to every later size and process:
# a first call on a small tensor would leave every big one on a single core. Parallelise always
# (the fused path only serves large tensors anyway).
# Inductor's C++ is compiled with -ffp-contract=off, so that ``a * b + c`` rounds twice, as eager
# PyTorch does; our kernels are compared with float64 references instead, and letting the compiler
# fuse each multiply-add into one FMA (rounded once, so no less accurate) halves the cost of every
# polynomial in :mod:`actplug.kernels.fused_math`: 7-12% faster kernels on this CPU.
# (Where an older Inductor lacks the option, the kernels compile without it.)
_INDUCTOR_OPTIONS = {"cpp.min_chunk_size": 1}
_FP_CONTRACT = ("enable_floating_point_contract_flag", "fast")
# Flat inputs whose length is a multiple of BLOCK run as a (rows, BLOCK) matrix with only the row
# count symbolic: the inner loop then has a fixed trip count and no tail, and its reductions a fixed
# chunking, about 5-10% faster than a fully dynamic 1-D loop (the price of dynamic shapes in Inductor).
BLOCK = 4096
_COMPILE_OPTIONS: dict[str, Any] = (
    {"recompile_limit": _RECOMPILE_LIMIT} if "recompile_limit" in inspect.signature(torch.compile).parameters else {}
)


def _signature(fn: Callable[..., Any], args: tuple[Any, ...], blocked: bool) -> tuple[Any, ...]:
    """What decides whether a call compiles anew: the function, the dtypes, the flags and the shape kind."""
    return (fn, blocked, *(a.dtype if isinstance(a, torch.Tensor) else a for a in args))


def _blocked(args: tuple[Any, ...]) -> int | None:
    """The common length of the 1-D tensor arguments if it is a multiple of BLOCK, else None."""
    lengths = {a.shape[0] for a in args if isinstance(a, torch.Tensor) and a.ndim == 1}
    if any(isinstance(a, torch.Tensor) and a.ndim > 1 for a in args) or len(lengths) != 1:
        return None
    (n,) = lengths
    return n if n >= BLOCK and n % BLOCK == 0 else None


def _call_args(args: tuple[Any, ...], blocked: bool) -> list[Any]:
    """The arguments as the compiled function takes them: tensors detached, 1-D ones as BLOCK-wide rows."""
    return [
        (a.detach().view(-1, BLOCK) if blocked and a.ndim == 1 else a.detach()) if isinstance(a, torch.Tensor) else a
        for a in args
    ]


def _mark_dynamic(args: tuple[Any, ...], blocked: bool) -> None:
    """Let one kernel serve every size: each dimension is dynamic but a block's fixed inner length.

    Only the sizes: ``dynamic=True`` would also make every Python float of the formula (the
    coefficients of fused_math's polynomials) a runtime input, converted from double in the inner
    loop, which costs ASH's kernel about 10%.
    """
    for a in args:
        if isinstance(a, torch.Tensor):
            for dim in range(a.ndim - 1 if blocked and a.ndim == 2 else a.ndim):
                torch._dynamo.maybe_mark_dynamic(a, dim)


def _from_blocks(result: Any, n: int) -> Any:
    if isinstance(result, torch.Tensor):
        return result.view(n) if result.ndim == 2 and result.shape[1] == BLOCK else result
    if isinstance(result, (tuple, list)):
        return type(result)(_from_blocks(r, n) for r in result)
    return result


@functools.cache
def _inductor_options() -> dict[str, Any]:
    from torch._inductor import config

    name, value = _FP_CONTRACT
    return {**_INDUCTOR_OPTIONS, **({f"cpp.{name}": value} if hasattr(config.cpp, name) else {})}


def _inductor_backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
    """torch.compile's Inductor backend, keeping what :mod:`.direct_call` needs to call the result
    without dynamo (where the private entry point it needs is missing, plain Inductor)."""
    try:
        from torch._inductor.compile_fx import compile_fx
    except ImportError:
        return torch._inductor.compile(gm, example_inputs, options=_inductor_options())
    compiled = compile_fx(gm, example_inputs, config_patches=_inductor_options())
    if _capturing is not None:
        found = direct_call.prepare(gm, example_inputs, compiled, _capturing[0])
        if found is not None:
            _capturing[1].append(found)
    return compiled


_writers: dict[Callable[..., Any], Callable[..., Any]] = {}


def _writing(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` taking one more argument, ``out``, that its (first) result is written into; returns
    the rest of the result (None for one). Inductor stores the result straight into ``out``: no
    temporary, no copy."""
    writer = _writers.get(fn)
    if writer is None:

        def writer(*args: Any) -> Any:
            *inputs, out = args
            result = fn(*inputs)
            if isinstance(result, tuple):
                out.copy_(result[0])
                return result[1:]
            out.copy_(result)
            return None

        # A code object of its own: dynamo keeps its compiled graphs and their recompile budget per
        # code object, which every writer would otherwise share. Named after fn, as logs show it.
        names = {"co_name": fn.__name__} | ({"co_qualname": fn.__qualname__} if sys.version_info >= (3, 11) else {})
        writer.__code__ = writer.__code__.replace(**names)
        writer.__name__, writer.__qualname__ = fn.__name__, fn.__qualname__
        _writers[fn] = writer
    return writer


def _compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    compiled = _compiled.get(fn)
    if compiled is None:
        # Static but for the sizes _call() marks dynamic (see _mark_dynamic).
        compiled = _compiled[fn] = torch.compile(
            fn, backend=_inductor_backend, dynamic=False, fullgraph=True, **_COMPILE_OPTIONS
        )
    return compiled


def _through_dynamo(
    signature: tuple[Any, ...], compiled: Callable[..., Any], call_args: list[Any], written: int | None
) -> Any:
    """``compiled(*call_args)``; a graph dynamo compiles for it becomes a direct call for later ones
    (``written``: the index of an argument the graph writes, compared too)."""
    global _capturing
    found: list[direct_call.DirectCall] = []
    _capturing = (call_args, found)
    try:
        result = compiled(*call_args)
    finally:
        _capturing = None
    for candidate in found:
        if candidate.confirm(call_args, result, written):
            _direct.setdefault(signature, []).append(candidate)
    return result


def _call(
    signature: tuple[Any, ...], compiled: Callable[..., Any], call_args: list[Any], blocked: bool, written: int | None
) -> Any:
    for candidate in _direct.get(signature, ()):
        if candidate.accepts(call_args):
            try:
                return candidate(call_args)
            except Exception as exc:  # never seen; dynamo's path stays correct, so fall back to it
                _direct[signature].remove(candidate)
                logger.debug("actplug: direct call of %s failed (%s); using dynamo", signature[0].__name__, exc)
                break
    # Through dynamo: every size dynamic, so that a graph it compiles now serves all later sizes
    # (its automatic dynamic shapes would only free the sizes that changed since the last call).
    _mark_dynamic(call_args, blocked)
    return _through_dynamo(signature, compiled, call_args, written)


def _uncompiled(fn: Callable[..., Any], args: tuple[Any, ...], plain: Callable[[], Any] | None) -> Any:
    """The fallback of a kernel that did not compile: ``plain()``, or ``fn`` on detached arguments."""
    if plain is not None:
        return plain()
    return fn(*(a.detach() if isinstance(a, torch.Tensor) else a for a in args))


_FAILED = object()  # what _compiled_call returns for a kernel that does not compile


def run(
    fn: Callable[..., Any], *args: Any, plain: Callable[[], Any] | None = None, out: torch.Tensor | None = None
) -> Any:
    """``fn(*args)`` through its Inductor-compiled twin; if compiling it failed, ``plain()`` (the
    plain math computing the same result, where ``fn`` is a fused rewrite of it) or ``fn(*args)``.

    ``out``: a contiguous tensor of the (first) result's shape and dtype for the kernel to write it
    into (see :mod:`.pool`), returned in its place; the fallbacks return their own tensors.

    This runs between two passes over memory that evict every cache, so it does as little as it can
    on every call: a graph dynamo compiled is called directly where its guards allow (see
    :mod:`.direct_call`), and the first-use notice and the compile timing happen once per signature.
    """
    if out is None:
        result = _compiled_call(fn, args, None)
        return _uncompiled(fn, args, plain) if result is _FAILED else result
    result = _compiled_call(_writing(fn), (*args, out), len(args))
    if result is _FAILED:
        return _uncompiled(fn, args, plain)
    return out if result is None else (out, *result)


def _compiled_call(fn: Callable[..., Any], args: tuple[Any, ...], written: int | None) -> Any:
    """``fn(*args)`` compiled, or :data:`_FAILED` if ``fn`` does not compile (``written``: the index
    of an argument ``fn`` writes into)."""
    global _announced
    if fn in _broken:
        return _FAILED
    n = _blocked(args)
    # Detached, and run without autograd (below): the kernels get views of the caller's tensors
    # (x.view(-1), x2d, a parameter), and dynamo guards on a view's base (its shape and strides), on
    # requires_grad and on the grad mode, so that each new input shape, layout or call site (inside an
    # autograd Function or not) would compile anew; a detached alias is a plain tensor with no base.
    call_args = _call_args(args, n is not None)
    signature = _signature(fn, args, n is not None)
    first = signature not in _seen
    if first and not _announced:
        _announced = True
        logger.warning(
            "actplug: compiling fused CPU kernels on first use (a few seconds per activation and dtype, "
            "once per process; cached on disk). Set ACTPLUG_CPU_KERNELS=eager to skip this."
        )
    started = time.perf_counter()
    compiled = _compile(fn)
    try:
        if torch.is_grad_enabled():
            with torch.no_grad():
                result = _call(signature, compiled, call_args, n is not None, written)
        else:  # inside an autograd Function's forward or backward
            result = _call(signature, compiled, call_args, n is not None, written)
    except Exception as exc:  # a compiler failure must not stop training: the plain math is exact
        _broken.add(fn)
        logger.warning(
            "actplug: could not compile the CPU kernel %s (%s: %s); using the plain math instead",
            fn.__name__,
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
        return _FAILED
    if first:
        _seen.add(signature)
        logger.info("actplug: compiled %s in %.1f s", fn.__name__, time.perf_counter() - started)
    return result if n is None else _from_blocks(result, n)
