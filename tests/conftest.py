"""Shared fixtures: a fixed seed for every test, the registered activation names, and a spy on the
fused CPU kernels (which functions ran through ``actplug.kernels.compiled.run``)."""

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


@pytest.fixture
def compiled_calls(monkeypatch) -> list[str]:
    """The names of the functions run through actplug.kernels.compiled.run during the test."""
    from actplug.kernels import compiled

    calls: list[str] = []
    real = compiled.run

    def spy(fn, *args, **kwargs):
        calls.append(fn.__name__)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(compiled, "run", spy)
    return calls
