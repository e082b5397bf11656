"""Memory-lean autograd for every elementwise activation, built-in or declared by a plugin.

Naive autograd of SMU keeps four input-sized tensors per call (PFLU seven); this Function keeps the
input alone (plus scalar parameters) and computes every gradient from it: with the declaration's
analytic backward where it has one, else by differentiating the forward recomputed from x inside
backward. Each call takes the fast path of its device (:mod:`actplug.kernels.cpu`,
:mod:`actplug.kernels.cuda`) where that kernel is ready, and the eager math otherwise.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ...activations._precision import check_floating, reduce_to
from ...declaration import Activation
from .. import cpu, cuda, dispatch

Value = torch.Tensor | float
Grads = dict[str, torch.Tensor]


class Elementwise:
    """One elementwise declaration made runnable: dispatch, autograd and the eager math."""

    def __init__(self, declaration: Activation):
        if not declaration.elementwise:
            raise ValueError(f"activation {declaration.name!r} is not elementwise: it needs its own lean function")
        self.declaration = declaration
        self.name = declaration.name
        self.names = declaration.param_names
        self.has_triton = declaration.triton is not None

    def __repr__(self) -> str:
        return f"Elementwise({self.name!r})"

    def __call__(self, x: torch.Tensor, values: Sequence[Value]) -> torch.Tensor:
        """The activation of ``x`` with parameter ``values`` (in declaration order): floats or tensors."""
        check_floating(x, self.name)
        if dispatch.plain_only():
            return self.plain(x, values)
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        path = dispatch.fast_path(x, tensors, triton=self.has_triton)
        if not dispatch.needs_graph(x, *tensors):
            return self.forward(path, x, values)
        return _ElementwiseFunction.apply(self, path, x, *values)

    # ----------------------------------------------------------------------------- the math
    def plain(self, x: torch.Tensor, values: Sequence[Value]) -> torch.Tensor:
        """The declaration's forward, as autograd and tracers see it."""
        return self.declaration.forward(x, **dict(zip(self.names, values, strict=True)))

    def forward(self, path: str, x: torch.Tensor, values: Sequence[Value]) -> torch.Tensor:
        """y on ``path``, or on the eager math where that kernel is not ready."""
        if path != "eager":
            y = _backend(path, x).forward(self, x, values, path)
            if y is not None:
                return y
        return self.plain(x, values)

    def backward(
        self, path: str, x: torch.Tensor, grad: torch.Tensor, values: Sequence[Value], needs: tuple[str, ...]
    ) -> tuple[torch.Tensor, Grads]:
        """``(dL/dx, {name: dL/dname for name in needs})`` on ``path``, or on the eager math."""
        if path != "eager":
            found = _backend(path, x).backward(self, x, grad, values, needs, path)
            if found is not None:
                return found
        backward = self.declaration.backward
        if backward is None:
            return self.recomputed_backward(x, grad, values, needs)
        return split_grads(backward(x, grad, needs=needs, **dict(zip(self.names, values, strict=True))), self.name)

    def recomputed_backward(
        self, x: torch.Tensor, grad: torch.Tensor, values: Sequence[Value], needs: tuple[str, ...]
    ) -> tuple[torch.Tensor, Grads]:
        """Gradients by autograd of the forward recomputed from x: what a formula without a backward gets."""
        with torch.enable_grad():
            xd = x.detach().requires_grad_(True)
            leaves = {
                n: v.detach().requires_grad_(n in needs) if isinstance(v, torch.Tensor) else v
                for n, v in zip(self.names, values, strict=True)
            }
            y = self.declaration.forward(xd, **leaves)
            wanted = [xd, *(leaves[n] for n in needs)]
            found = torch.autograd.grad(y, wanted, grad, allow_unused=True)
        dx = found[0] if found[0] is not None else torch.zeros_like(x)
        return dx, {n: g for n, g in zip(needs, found[1:], strict=True) if g is not None}


def _backend(path: str, x: torch.Tensor) -> Any:
    return cpu if path == "compiled" and x.device.type == "cpu" else cuda


def split_grads(result: Any, name: str) -> tuple[torch.Tensor, Grads]:
    """A backward's result, ``dx`` or ``(dx, {name: grad})``, as the pair."""
    if isinstance(result, torch.Tensor):
        return result, {}
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        return result
    raise TypeError(
        f"the backward of activation {name!r} must return dL/dx or (dL/dx, {{parameter: gradient}}), "
        f"got {type(result).__name__}"
    )


class _ElementwiseFunction(torch.autograd.Function):
    """Saves x and the tensor parameters; backward computes every gradient from them on the same path."""

    @staticmethod
    def forward(ctx, op: Elementwise, path: str, x: torch.Tensor, *values: Value) -> torch.Tensor:
        ctx.op, ctx.path = op, path
        ctx.floats = tuple(None if isinstance(v, torch.Tensor) else v for v in values)
        ctx.save_for_backward(x, *(v for v in values if isinstance(v, torch.Tensor)))
        return op.forward(path, x, values)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, *tensors = ctx.saved_tensors
        op: Elementwise = ctx.op
        found = iter(tensors)
        values = tuple(next(found) if f is None else f for f in ctx.floats)
        need_x = ctx.needs_input_grad[2]
        flags = ctx.needs_input_grad[3:]
        if torch.is_grad_enabled():  # create_graph=True: higher-order gradients of the plain math
            inputs = (x, *(v for v in values if isinstance(v, torch.Tensor)))
            needs = (need_x, *(f for f, v in zip(flags, values, strict=True) if isinstance(v, torch.Tensor)))
            grads = iter(dispatch.differentiate_plain(lambda: op.plain(x, values), inputs, needs, grad))
            dx = next(grads)
            return (None, None, dx, *(next(grads) if isinstance(v, torch.Tensor) else None for v in values))
        needs = tuple(n for n, f in zip(op.names, flags, strict=True) if f)
        dx, grads = op.backward(ctx.path, x, grad, values, needs)
        missing = [n for n in needs if n not in grads]
        if missing:
            raise RuntimeError(f"the backward of activation {op.name!r} returned no gradient for {missing}")
        shaped = []
        for n, v, f in zip(op.names, values, flags, strict=True):
            if not f:
                shaped.append(None)
                continue
            g = grads[n]
            if g.shape != v.shape:
                g = reduce_to(g, v) if g.numel() != v.numel() else g.reshape(v.shape)
            shaped.append(g.to(v.dtype))
        return (None, None, dx if need_x else None, *shaped)


# --------------------------------------------------------------------------------------------------
# The functional twin of a declaration.
# --------------------------------------------------------------------------------------------------


def check_value(owner: str, name: str, value: object, declaration: Activation) -> Value:
    """A parameter value at the functional boundary: a real number inside its range, or a floating tensor."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{owner}({name}=...) expects a real number or a floating-point tensor, got {value.dtype}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        got = f"{type(value).__name__} {value!r}"
        raise TypeError(f"{owner}({name}=...) expects a real number or a floating-point tensor, got {got}")
    return declaration.param(name).check(owner, value)


def lean_function(op: Elementwise) -> Callable[..., torch.Tensor]:
    """``fn(x, *params)`` with the declaration's signature: what ``actplug.functional.NAME`` is."""
    decl = op.declaration
    params = [inspect.Parameter("x", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [
        inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default) for p in decl.params
    ]
    signature = inspect.Signature(params, return_annotation=torch.Tensor)
    names, defaults = decl.param_names, tuple(p.default for p in decl.params)

    def function(x: torch.Tensor, *args: Value, **kwargs: Value) -> torch.Tensor:
        if kwargs or len(args) > len(names):
            try:
                bound = signature.bind(x, *args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{decl.name}(): {exc}; the signature is {decl.name}{signature}") from None
            given = {k: v for k, v in bound.arguments.items() if k != "x"}
            values = tuple(given.get(n, d) for n, d in zip(names, defaults, strict=True))
        else:
            values = (*args, *defaults[len(args) :])
        return op(x, tuple(check_value(decl.name, n, v, decl) for n, v in zip(names, values, strict=True)))

    function.__name__ = function.__qualname__ = decl.name.replace("-", "_")
    function.__doc__ = (
        f"{decl.docstring}\n\nMemory-lean: autograd keeps only x; the fast path of x's device where it is ready."
    )
    function.__signature__ = signature  # type: ignore[attr-defined]
    function.__module__ = "actplug.functional"
    function.declaration = decl  # type: ignore[attr-defined]
    return function
