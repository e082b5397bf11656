"""Every Triton kernel compiles for real GPUs (Hopper sm_90, Ampere sm_80), without one.

The interpreter runs the kernels' math in numpy, so it never meets a GPU compiler's errors; Triton's
own ptxas (in its wheel) compiles for a GPU that is not there. tests/gpu_compile.py does it in a child
process, because this process runs Triton under the interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("gpu_compile.py")


@pytest.mark.parametrize("arch", [90, 80])
def test_every_triton_kernel_compiles_for_a_gpu(arch):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(arch)], capture_output=True, text=True, env=env, timeout=600
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, f"sm_{arch}:\n{done.stdout}\n{done.stderr[-3000:]}"
    # 7 elementwise activations x forward/backward x 2 dtypes, 4 ASH passes x 2 dtypes, 2 row kernels
    assert len(lines) == 7 * 2 * 2 + 4 * 2 + 2 and all(line.startswith("ok ") for line in lines), done.stdout
