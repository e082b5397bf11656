"""An activation declared by its formula alone: what ``register_formula(...)`` builds and checks.

A plugin author writes the forward as plain PyTorch math (and, if they like, its backward); this
turns it into a :class:`~actplug.declaration.Activation` and tries it once on a few float64 numbers,
so that a formula that raises, is not elementwise, cannot take its parameters as tensors, or whose
backward disagrees with its forward's derivative fails at registration, naming the fix, and not
in the middle of someone's training run.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from .declaration import Activation, Backward, Forward, Param

#: Metadata that register_formula passes on to the declaration (the rest of the registry's keys are derived).
FORMULA_METADATA = ("paper", "formula", "approximates", "doc", "class_name")

# Probe points: no exact zeros or integers, where kinked formulas have one-sided derivatives.
_PROBE = (-3.7, -1.3, -0.45, -0.05, 0.07, 0.6, 1.9, 3.3)


def declare_formula(
    name: str,
    forward: Forward,
    *,
    backward: Backward | None = None,
    params: Mapping[str, float] | None = None,
    trainable: Iterable[str] = (),
    aliases: Iterable[str] = (),
    **metadata: Any,
) -> Activation:
    """The declaration ``register_formula`` registers; raises TypeError/ValueError naming what is wrong."""
    where = f"register_formula({name!r})"
    if not callable(forward):
        raise TypeError(f"{where}: forward must be a function forward(x, **params), got {type(forward).__name__}")
    if backward is not None and not callable(backward):
        raise TypeError(f"{where}: backward must be a function backward(x, grad, *, needs, **params) or None")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise TypeError(f"{where}: params must map parameter names to default values, got {type(params).__name__}")
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{where}: parameter {key!r} needs a real default value, got {value!r}")
    if isinstance(trainable, str):
        raise TypeError(f"{where}: trainable takes a sequence of parameter names, not the string {trainable!r}")
    trainable = tuple(trainable)
    unknown = [t for t in trainable if t not in params]
    if unknown:
        raise ValueError(f"{where}: trainable names {unknown}, which are not in params {sorted(params)}")
    if isinstance(aliases, str):
        raise TypeError(f"{where}: aliases takes a sequence of names, not the string {aliases!r}")
    bad = sorted(set(metadata) - set(FORMULA_METADATA) - {k for k in metadata if k.startswith("x_")})
    if bad:
        raise TypeError(f"{where} got unknown metadata {bad}; known keys are {', '.join(FORMULA_METADATA)}")
    declared = {k: v for k, v in metadata.items() if not k.startswith("x_")}
    try:
        decl = Activation(
            name=name,
            forward=forward,
            backward=backward,
            params=tuple(Param(k, float(v), trainable=k in trainable) for k, v in params.items()),
            aliases=tuple(aliases),
            **declared,
        )
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    check(decl, where)
    return decl


def check(decl: Activation, where: str) -> None:
    """Run the formula on a few float64 numbers: it must be elementwise, take tensor parameters, and its
    backward (if any) must agree with the derivative of its forward."""
    x = torch.tensor(_PROBE, dtype=torch.float64)
    floats = {p.name: p.default for p in decl.params}
    tensors = {k: torch.tensor(v, dtype=torch.float64) for k, v in floats.items()}
    y = _call(decl.forward, where, "forward", x, **floats)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape or not y.is_floating_point():
        raise TypeError(f"{where}: forward(x) must return a floating-point tensor shaped like x, got {_what(y)}")
    grid = _call(decl.forward, where, "forward", x.flip(0).reshape(2, 4), **floats)
    if not isinstance(grid, torch.Tensor) or not torch.allclose(grid, y.flip(0).reshape(2, 4), equal_nan=True):
        raise ValueError(
            f"{where}: forward is not elementwise (its value at an element depends on the others or on the "
            "shape); register_formula is for elementwise activations: register(name, module_cls) takes any module"
        )
    with_tensors = _call(decl.forward, where, "forward", x, **tensors)
    if not isinstance(with_tensors, torch.Tensor) or not torch.allclose(with_tensors, y, equal_nan=True):
        raise ValueError(
            f"{where}: forward gives other values when its parameters are 0-d tensors (the fused kernels pass "
            "them so); write it with tensor math only, e.g. torch.where instead of `if` on a parameter"
        )
    if decl.backward is not None:
        _check_backward(decl, where, x, tensors)


def _check_backward(decl: Activation, where: str, x: torch.Tensor, tensors: dict[str, torch.Tensor]) -> None:
    from .kernels.autograd.elementwise import split_grads

    grad = torch.linspace(0.5, 1.5, x.numel(), dtype=torch.float64)
    needs = decl.trainable
    dx, grads = split_grads(_call(decl.backward, where, "backward", x, grad, needs=needs, **tensors), decl.name)
    leaves = {k: v.clone().requires_grad_(k in needs) for k, v in tensors.items()}
    xr = x.clone().requires_grad_()
    expected = torch.autograd.grad(
        decl.forward(xr, **leaves), [xr, *(leaves[k] for k in needs)], grad, allow_unused=True
    )
    pairs = [("x", dx, expected[0]), *((k, grads.get(k), e) for k, e in zip(needs, expected[1:], strict=True))]
    for what, got, want in pairs:
        if got is None:
            raise ValueError(f"{where}: backward returned no gradient for {what!r}, which is trainable")
        want = torch.zeros_like(got) if want is None else want
        if got.shape != want.shape:
            got = got.sum() if want.ndim == 0 else got
        if not torch.allclose(got.to(torch.float64), want, rtol=1e-5, atol=1e-8, equal_nan=True):
            raise ValueError(
                f"{where}: backward's gradient for {what!r} disagrees with the derivative of forward "
                f"(at x = {list(_PROBE)}: got {got.tolist()}, autograd gives {want.tolist()})"
            )


def _call(fn: Callable[..., Any], where: str, what: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        raise TypeError(
            f"{where}: {what} raised {type(exc).__name__} on a float64 test input: {exc}. It must be plain "
            f"PyTorch math {'forward(x, **params)' if what == 'forward' else 'backward(x, grad, *, needs, **params)'}"
        ) from exc


def _what(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__
