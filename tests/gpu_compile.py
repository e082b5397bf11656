"""Compile every Triton kernel of actplug for a GPU that is not there: ``python tests/gpu_compile.py 90``.

Triton lowers a kernel to PTX and assembles it with the ``ptxas`` its wheel ships, so a GPU's own
compiler errors (types, layouts, unsupported operations), which the interpreter never meets, show on a
machine without one. Run by tests/test_triton_compile.py in a child process: the interpreter
(TRITON_INTERPRET=1, which the other tests set) replaces the kernels by Python functions. Prints one
line per kernel variant, ``ok`` or the error, and exits 1 if any failed.
"""

from __future__ import annotations

import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from actplug.kernels.cuda.triton import _ash, _elementwise

POINTER = {"float32": "*fp32", "bfloat16": "*bf16", "float16": "*fp16"}
# the tensors in the input's dtype; every other pointer is a float32 buffer (statistics, parameters)
DATA = {"x_ptr", "y_ptr", "g_ptr", "dx_ptr"}
FLOATS = {"c0", "eps"}


def signature(fn, dtype: str, constexprs: dict) -> dict[str, str]:
    """The launcher's types for ``fn``'s arguments: data pointers in ``dtype``, sizes int32."""
    types = {}
    for name in fn.arg_names:
        if name in constexprs:
            types[name] = "constexpr"
        elif name.endswith("_ptr"):
            types[name] = POINTER[dtype] if name in DATA else "*fp32"
        else:
            types[name] = "fp32" if name in FLOATS else "i32"
    return types


def compile_one(fn, dtype: str, constexprs: dict, arch: int, num_warps: int) -> None:
    """Compile ``fn`` with ``constexprs`` as the launcher would (16-byte aligned pointers, sizes divisible
    by 16) to a cubin for ``sm_<arch>``; raises what the compiler raises."""
    types = signature(fn, dtype, constexprs)
    index = {name: i for i, name in enumerate(fn.arg_names)}
    attrs = {(index[n],): [["tt.divisibility", 16]] for n, t in types.items() if t.startswith("*") or t == "i32"}
    source = ASTSource(fn=fn, signature=types, constexprs={(index[n],): v for n, v in constexprs.items()}, attrs=attrs)
    kernel = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})
    if not kernel.asm.get("cubin"):
        raise RuntimeError("no cubin")


def variants():
    """(label, kernel, dtype, constexprs, num_warps) of every kernel the package launches, each with all of
    its gradient flags on (the widest variant) and the float32 and bfloat16 inputs."""
    block, warps = 4096, 8
    common = {"BLOCK": block, "INT64": False, "RTNE": False}
    for dtype in ("float32", "bfloat16"):
        for name, act in _elementwise.ACTIVATIONS.items():
            base = {"FN": act.forward, "NP": act.num_params, **common}
            yield f"{name} forward {dtype}", _elementwise._forward_kernel, dtype, base, warps
            needs = {"NEED0": act.num_params >= 1, "NEED1": act.num_params >= 2}
            backward = {**base, "FN": act.backward, **needs}
            yield f"{name} backward {dtype}", _elementwise._backward_kernel, dtype, backward, warps
        yield f"ash stats {dtype}", _ash._stats_kernel, dtype, common, warps
        yield f"ash apply {dtype}", _ash._apply_kernel, dtype, common, warps
        yield f"ash grad sums {dtype}", _ash._grad_sums_kernel, dtype, {**common, "NEED_ALPHA": True}, warps
        yield f"ash dx {dtype}", _ash._dx_kernel, dtype, common, warps
    tile = {"TILE": 1024}
    yield "ash row stats", _ash._row_stats_kernel, "float32", {"BLOCK": block, **tile}, 4
    yield "ash row grads", _ash._row_grads_kernel, "float32", {"NEED_Z": True, "NEED_ALPHA": True, **tile}, 4


def main(arch: int) -> int:
    failed = 0
    for label, fn, dtype, constexprs, warps in variants():
        try:
            compile_one(fn, dtype, constexprs, arch, warps)
            print(f"ok   {label}")
        except Exception as exc:  # report every failure, not just the first
            failed += 1
            print(f"FAIL {label}: {type(exc).__name__}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 90))
