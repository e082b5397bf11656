"""Shared fixtures: a fixed seed for every test, the registered activation names, and the compiled
kernels that served calls during a test (with kernels compiled on first use, not in the background)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

# Without a GPU, Triton kernels run on CPU tensors under the interpreter (tests/test_triton_kernels.py);
# this must be set before anything imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# test_functional.py and test_modules.py import the float64 references (tests/references.py)
# whichever way pytest imports the test files.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state (torch.rand/randn and LPFLU's draws)."""
    torch.manual_seed(0)


@pytest.fixture
def registered_names() -> list[str]:
    """The canonical names actplug's registry knows now."""
    import actplug

    return actplug.names()


class CompiledCalls:
    """The labels of the compiled kernels that served calls since it was made (or cleared), one per call,
    read from the process's compiler (``actplug.kernels.compiler.calls``)."""

    def __init__(self) -> None:
        from actplug.kernels import compiler

        self._counter = compiler.calls
        self.clear()

    def clear(self) -> None:
        self._start = dict(self._counter)

    def labels(self) -> list[str]:
        return [label for label, n in self._counter.items() for _ in range(n - self._start.get(label, 0))]

    def __len__(self) -> int:
        return len(self.labels())

    def __bool__(self) -> bool:
        return bool(self.labels())

    def __iter__(self):
        return iter(self.labels())

    def __repr__(self) -> str:
        return repr(self.labels())


@pytest.fixture
def compiled_calls():
    """The compiled kernels that ran during the test; kernels compile on the first call that needs them
    (``compile="sync"``), so that which path a call takes does not depend on a background thread."""
    import actplug.kernels

    with actplug.kernels.use(compile="sync"):
        yield CompiledCalls()
