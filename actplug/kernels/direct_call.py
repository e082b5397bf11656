"""Calling an Inductor-compiled kernel without dynamo's per-call machinery, where that is provably safe.

A call through ``torch.compile`` runs dynamo's frame evaluation, its guards and several Python
wrappers before the C++ loop starts. Between two passes over a 50 MB tensor, which leave every
cache cold, that costs about 0.3 ms per call on this CPU: 4-5% of an activation's forward and
backward, and twice what ``torch.compile`` of the naive formula pays (one call per forward, none
of dynamo's in its backward).

So when dynamo compiles one of our kernels, the backend (:mod:`actplug.kernels.compiled`) keeps
the compiled graph and :func:`prepare` works out, from the graph's own placeholders and the shape
environment, how to call it directly: which argument feeds each tensor input, which tensor
dimension each symbolic size is read from, and what dynamo's guards demand of them (type, dtype,
device, contiguity, the static sizes, the bounds of each symbolic size, equal sizes, autocast). A
:class:`DirectCall` then checks exactly that on every call (:meth:`DirectCall.accepts`) and
otherwise leaves the call to dynamo. Anything :func:`prepare` does not recognise (a guard of
another form, a size that is an expression, an input that is not a tensor or a size) gives no
direct call, and :meth:`DirectCall.confirm` compares its first result with dynamo's before it is
used at all; the kernels then run through ``torch.compile`` as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils._pytree as pytree

logger = logging.getLogger("actplug")

Dim = tuple[int, int]  # (argument index, dimension)
_TENSOR = object()  # marks where the result's tensors go among its leaves


@dataclass(frozen=True)
class TensorInput:
    """What dynamo's guards demand of one tensor argument: sizes are None where symbolic."""

    arg: int
    dtype: torch.dtype
    device: torch.device
    sizes: tuple[int | None, ...]


@dataclass
class DirectCall:
    """A compiled graph called with the arguments of :func:`actplug.kernels.compiled.run`."""

    compiled: Callable[..., Any]
    inputs: tuple[int | Dim, ...]  # per graph input: an argument index, or where to read a size
    tensors: tuple[TensorInput, ...]
    bounds: tuple[tuple[Dim, int, int | None], ...]  # (where, lowest, highest or None)
    equal: tuple[tuple[Dim, Dim], ...]
    autocast: bool = False  # CPU autocast on while dynamo traced (it guards on that state)
    spec: pytree.TreeSpec | None = None  # the result's structure, set by confirm()
    constants: tuple[Any, ...] = ()  # the result's leaves, _TENSOR where a graph output goes

    def accepts(self, args: Sequence[Any]) -> bool:
        """True if dynamo's guards would let ``args`` through to this graph."""
        if torch.is_autocast_enabled("cpu") != self.autocast:
            return False
        for t in self.tensors:
            a = args[t.arg]
            if type(a) is not torch.Tensor or a.dtype != t.dtype or a.device != t.device:
                return False
            if a.ndim != len(t.sizes) or not a.is_contiguous() or a.requires_grad:
                return False
            shape = a.shape
            for dim, size in enumerate(t.sizes):
                if size is not None and shape[dim] != size:
                    return False
        for (arg, dim), low, high in self.bounds:
            n = args[arg].shape[dim]
            if n < low or (high is not None and n > high):
                return False
        return all(args[a].shape[d] == args[b].shape[e] for (a, d), (b, e) in self.equal)

    def _run(self, args: Sequence[Any]) -> list[torch.Tensor]:
        """The graph's outputs for ``args``: each input an argument, or a size read from one."""
        return self.compiled(*(args[i] if isinstance(i, int) else args[i[0]].shape[i[1]] for i in self.inputs))

    def __call__(self, args: Sequence[Any]) -> Any:
        outputs = self._run(args)
        if self.spec.is_leaf() and self.constants[0] is _TENSOR:  # one tensor, the common case
            return outputs[0]
        found = iter(outputs)
        return pytree.tree_unflatten([next(found) if c is _TENSOR else c for c in self.constants], self.spec)

    def confirm(self, args: Sequence[Any], expected: Any, written: int | None = None) -> bool:
        """Learn the result's structure from dynamo's ``expected`` result for ``args``, and check
        that this direct call gives exactly that (same tensors, bit for bit, NaN included).

        ``written``: the index of an argument the graph writes into (dynamo's call just did); the
        direct call then writes into a NaN-filled twin of it, which must come out equal."""
        leaves, spec = pytree.tree_flatten(expected)
        if any(isinstance(leaf, (torch.SymInt, torch.SymFloat)) for leaf in leaves):
            return False
        self.spec = spec
        self.constants = tuple(_TENSOR if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves)
        tensors = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
        if written is not None:
            wanted = args[written]
            if not wanted.is_floating_point() or wanted.isnan().all():  # a missed write would not show
                return False
            args = list(args)
            args[written] = torch.full_like(wanted, float("nan"))
        outputs = list(self._run(args))
        if written is not None:
            outputs.append(args[written])
            tensors.append(wanted)
        try:
            torch.testing.assert_close(outputs, tensors, rtol=0, atol=0, equal_nan=True, check_stride=True)
        except (AssertionError, TypeError, ValueError):
            return False
        return True


def _argument_of(example: torch.Tensor, args: Sequence[Any]) -> int | None:
    """The index of the argument that dynamo passed as ``example`` (the same tensor, or one tensor
    with its memory, shape and strides); None if there is no such argument or more than one."""
    same = [i for i, a in enumerate(args) if a is example]
    if len(same) == 1:
        return same[0]
    alike = [
        i
        for i, a in enumerate(args)
        if isinstance(a, torch.Tensor)
        and a.data_ptr() == example.data_ptr()
        and a.shape == example.shape
        and a.stride() == example.stride()
        and a.dtype == example.dtype
    ]
    return alike[0] if len(alike) == 1 else None


def prepare(gm: torch.fx.GraphModule, example_inputs: Sequence[Any], compiled: Callable[..., Any], args: Sequence[Any]):
    """A :class:`DirectCall` for the graph dynamo compiled from a call with ``args``, or None if any
    part of its inputs or guards is of a form this module does not check (then dynamo keeps it)."""
    try:
        return _prepare(gm, example_inputs, compiled, args)
    except Exception as exc:  # a private structure changed: keep the dynamo path, which is correct
        logger.debug("actplug: no direct call for %s (%s: %s)", gm.__class__.__name__, type(exc).__name__, exc)
        return None


def _prepare(gm, example_inputs, compiled, args) -> DirectCall | None:
    import sympy
    from torch._guards import TracingContext
    from torch.utils._sympy.numbers import int_oo

    context = TracingContext.try_get()
    shape_env = getattr(getattr(context, "fake_mode", None), "shape_env", None)
    placeholders = [node for node in gm.graph.nodes if node.op == "placeholder"]
    if shape_env is None or len(placeholders) != len(example_inputs):
        return None
    if any(getattr(shape_env, "deferred_runtime_asserts", {}).values()):
        return None
    home: dict[sympy.Symbol, Dim] = {}  # where each symbolic size is read from
    equal: list[tuple[Dim, Dim]] = []  # sizes that must agree: one symbol in two places, Eq guards
    tensors: list[TensorInput] = []
    inputs: list[int | Dim | None] = []
    for node, example in zip(placeholders, example_inputs, strict=True):
        value = node.meta.get("example_value")
        if isinstance(example, torch.Tensor) and isinstance(value, torch.Tensor):
            arg = _argument_of(example, args)
            plain_tensor = arg is not None and type(args[arg]) is torch.Tensor
            if not plain_tensor or not example.is_contiguous() or example.requires_grad:
                return None
            sizes: list[int | None] = []
            for dim, size in enumerate(value.shape):
                if isinstance(size, torch.SymInt):
                    expr = size.node.expr
                    if not isinstance(expr, sympy.Symbol):
                        return None
                    if expr in home:
                        equal.append((home[expr], (arg, dim)))
                    else:
                        home[expr] = (arg, dim)
                    sizes.append(None)
                else:
                    sizes.append(int(size))
            tensors.append(TensorInput(arg, example.dtype, example.device, tuple(sizes)))
            inputs.append(arg)
        elif isinstance(value, torch.SymInt):
            inputs.append(None)  # resolved below, once every tensor's sizes are known
        else:
            return None

    def canonical(expr):  # dynamo replaces a symbol it proved equal to another (s1 -> s0)
        return shape_env.replacements.get(expr, expr)

    for i, (node, value) in enumerate(zip(placeholders, inputs, strict=True)):
        if value is None:
            where = home.get(canonical(node.meta["example_value"].node.expr))
            if where is None:
                return None
            inputs[i] = where
    unbounded = (int_oo, -int_oo, sympy.oo, -sympy.oo)
    limits: dict[sympy.Symbol, list[int | None]] = {}
    for symbol in home:
        bound = shape_env.var_to_range.get(symbol)
        if bound is None or bound.lower in unbounded or not isinstance(bound.lower, (int, sympy.Integer)):
            return None
        if bound.upper in unbounded:
            limits[symbol] = [int(bound.lower), None]
        elif isinstance(bound.upper, (int, sympy.Integer)):
            limits[symbol] = [int(bound.lower), int(bound.upper)]
        else:
            return None
    for guard in shape_env.guards:
        # Eq(s1, s0) between sizes, or s <= n, s >= n, s < n, s > n (Inductor's choice of a
        # reduction strategy); one that the sizes' known equalities make true is kept by them (as
        # Eq(s0, 1) | Eq(s1, s0), a copy's broadcast check, with s1 -> s0); anything else keeps dynamo
        expr = guard.expr
        if expr.xreplace(shape_env.replacements) is sympy.true:
            continue
        if not isinstance(expr, (sympy.Eq, sympy.Le, sympy.Ge, sympy.Lt, sympy.Gt)):
            return None
        left, right = (canonical(side) for side in expr.args)
        if isinstance(expr, sympy.Eq) and left in home and right in home:
            if left != right:
                equal.append((home[left], home[right]))
            continue
        if isinstance(expr, sympy.Eq) or not (left in home and isinstance(right, sympy.Integer)):
            return None
        low, high = limits[left]
        n = int(right)
        if isinstance(expr, (sympy.Ge, sympy.Gt)):
            limits[left][0] = max(low, n + 1 if isinstance(expr, sympy.Gt) else n)
        else:
            cap = n - 1 if isinstance(expr, sympy.Lt) else n
            limits[left][1] = cap if high is None else min(high, cap)
    bounds = tuple((home[symbol], low, high) for symbol, (low, high) in limits.items())
    autocast = torch.is_autocast_enabled("cpu")
    return DirectCall(compiled, tuple(inputs), tuple(tensors), bounds, tuple(equal), autocast)
