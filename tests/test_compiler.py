"""The compiler of the fused kernels (actplug/kernels/compiler.py, build.py, server.py): a call never waits
for a kernel, kernels compile in a child process, artifacts are found again by later processes, calls
that do not fit a kernel are not passed to it, failures leave the eager math, and a process that forks
or exits while compiling stays sound (and keeps its random numbers).

Most tests use a private :class:`Compiler` with its own artifact folder and one-line kernels, so that
they depend neither on what the process's compiler has seen nor on artifacts of earlier runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import actplug
import actplug.kernels as K
from actplug.kernels import build, server
from actplug.kernels.compiler import MISS, Compiler, Job

ROOT = Path(__file__).resolve().parents[1]


def scale(x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor]:
    return (x * k + 1.0,)


def args(rows: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(rows * 8, dtype=torch.float32).reshape(rows, 8), torch.tensor(2.0)


def job(label: str = "scale", fn=scale) -> Job:
    return Job.like(fn, label, args(), [(0, 0, 0)])


def test_a_first_call_is_not_kept_waiting_and_later_calls_are_served(tmp_path):
    compiler = Compiler(directory=tmp_path)
    with K.use(compile="background"):
        assert compiler.get("k", job) is None  # the caller runs the eager math
        assert compiler.get("k", job) is None  # still on its way, and met once
        assert len(compiler.status()) == 1 and compiler.status()[0]["state"] in ("new", "building")
        assert compiler.wait(300)
        kernel = compiler.get("k", job)
    assert kernel is not None and compiler.status()[0]["state"] == "ready"
    x, k = args(rows=7)  # another size: the first dimension varies
    (y,) = compiler.run("k", kernel, (x, k))
    torch.testing.assert_close(y, x * 2 + 1)
    assert compiler.calls["scale"] == 1
    assert sorted(p.suffix for p in tmp_path.glob("scale-*")) == [".bin", ".graph", ".lock"]


def test_sync_compiles_on_the_calling_thread(tmp_path):
    compiler = Compiler(directory=tmp_path)
    with K.use(compile="sync"):
        kernel = compiler.get("k", job)
    assert kernel is not None
    x, k = args()
    torch.testing.assert_close(compiler.run("k", kernel, (x, k))[0], x * 2 + 1)


def test_an_artifact_is_found_again_by_another_process(tmp_path, monkeypatch):
    with K.use(compile="sync"):
        assert Compiler(directory=tmp_path).get("k", job) is not None

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled again: the artifact was not found")

    monkeypatch.setattr(build, "compile_graph", no_compiling)
    later = Compiler(directory=tmp_path)  # as a new process would: it traces, finds and loads
    with K.use(compile="sync"):
        kernel = later.get("k", job)
    x, k = args(rows=3)
    torch.testing.assert_close(later.run("k", kernel, (x, k))[0], x * 2 + 1)


def test_the_same_math_gives_the_same_artifact_and_other_math_another(tmp_path):
    x, k = args()
    signature = build.Signature.of((x, k), [(0, 0, 0)])
    hints = [tuple(x.shape), ()]

    def digest(fn, threads=2):
        return build.digest(build.trace(fn, signature, hints), signature, "cpu", threads)

    assert digest(scale) == digest(lambda t, c: (t * c + 1.0,))  # traced, not named: the same graph
    assert digest(scale) != digest(lambda t, c: (t * c + 2.0,))
    assert digest(scale) != digest(scale, threads=1)  # loops are compiled for a thread count


def test_calls_that_do_not_fit_the_kernel_are_not_passed_to_it(tmp_path):
    compiler = Compiler(directory=tmp_path)
    with K.use(compile="sync"):
        kernel = compiler.get("k", job)
    x, k = args(rows=6)
    misfits = [
        (x.double(), k),  # another dtype
        (x.t().contiguous().t(), k),  # not contiguous
        (x[:1], k),  # a varying size below 2
        (torch.zeros(6, 9), k),  # a static size differs
        (x, torch.tensor([2.0])),  # a 0-d argument with a dimension
        (x,),  # an argument short
    ]
    for misfit in misfits:
        assert compiler.run("k", kernel, misfit) is MISS
    assert compiler.status()[0]["state"] == "ready"  # not the kernel's fault
    assert not compiler.calls


def test_groups_of_varying_sizes_must_agree():
    signature = build.Signature.of((torch.zeros(4, 8), torch.zeros(4, 1)), [(0, 0, 0), (1, 0, 0)])
    assert signature.accepts((torch.zeros(5, 8), torch.zeros(5, 1)))
    assert not signature.accepts((torch.zeros(5, 8), torch.zeros(6, 1)))


def test_a_kernel_that_cannot_be_traced_leaves_the_eager_math(tmp_path, caplog):
    def branchy(x, k):
        return (x * 2 if float(k) > 1 else x,)  # data-dependent Python: no graph

    compiler = Compiler(directory=tmp_path)
    with K.use(compile="sync"), caplog.at_level("WARNING", logger="actplug"):
        assert compiler.get("bad", lambda: job("branchy", branchy)) is None
        assert compiler.get("bad", lambda: job("branchy", branchy)) is None
    (entry,) = compiler.status()
    assert entry["state"] == "failed" and entry["error"].startswith("could not be traced")
    assert caplog.text.count("kernel branchy could not be traced") == 1


def test_a_kernel_that_fails_stays_eager_and_its_artifact_goes(tmp_path, caplog):
    compiler = Compiler(directory=tmp_path)
    with K.use(compile="sync"):
        assert compiler.get("k", job) is not None
    (artifact,) = tmp_path.glob("scale-*.bin")

    def broken(*args):
        raise RuntimeError("simulated: the library went missing")

    with caplog.at_level("WARNING", logger="actplug"):
        assert compiler.run("k", broken, args()) is MISS
    assert compiler.status()[0]["state"] == "failed" and compiler.get("k", job) is None
    assert not artifact.exists(), "a later process compiles it again"
    assert "kernel scale failed (RuntimeError: simulated: the library went missing)" in caplog.text


def test_the_server_compiles_a_request_and_then_finds_it(tmp_path):
    x, k = args()
    signature = build.Signature.of((x, k), [(0, 0, 0)])
    gm = build.trace(scale, signature, [tuple(x.shape), ()])
    graph = tmp_path / "scale.graph"
    graph.write_bytes(build.graph_bytes(gm))
    request = {
        "id": 7,
        "graph": str(graph),
        "signature": [a.as_json() for a in signature.args],
        "hints": [list(x.shape), []],
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "out": str(tmp_path / "scale.bin"),
    }
    first = server.handle(request)
    assert first["ok"] and not first["cached"] and first["id"] == 7
    assert server.handle(request)["cached"]
    torch.testing.assert_close(build.load(tmp_path / "scale.bin")(x, k)[0], x * 2 + 1)


def test_a_forked_child_keeps_the_ready_kernels_and_compiles_nothing_new(tmp_path):
    compiler = Compiler(directory=tmp_path)
    with K.use(compile="sync"):
        ready = compiler.get("ready", job)
    pid = os.fork()
    if pid == 0:  # the child: no torch computation here (OpenMP is not fork-safe)
        ok = (
            compiler.get("ready", job) is ready
            and compiler.get("new", lambda: job("new")) is None
            and compiler._worker is None
            and [s["label"] for s in compiler.status()] == ["scale"]
        )
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_inference_mode_and_inference_tensors_are_served(compiled_calls):
    """Compiled artifacts have no guards on dispatch keys: inside ``torch.inference_mode`` one kernel serves
    ordinary tensors and inference tensors alike."""
    module = actplug.create("pflu")
    x = torch.randn(16, 4096)
    with K.use(cpu_min_numel=0):
        expected = module(x)
        with torch.inference_mode():
            torch.testing.assert_close(module(x), expected)
            torch.testing.assert_close(module(x.clone()), expected)
    assert len(compiled_calls) == 3
    labels = [s["label"] for s in K.status() if s["label"] == "pflu_forward_float32_blocked"]
    assert len(labels) == 1


def test_warmup_compiles_and_waits():
    assert K.warmup(["fpflu"])
    states = {s["label"]: s["state"] for s in K.status() if s["label"].startswith("fpflu_")}
    assert states and set(states.values()) == {"ready"}, states


BACKGROUND = """
import json, sys
import torch
import actplug

seed, steps = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(seed)
model = torch.nn.Sequential(torch.nn.Linear(64, 4096), actplug.create("gish"), torch.nn.Dropout(0.5))
draws = []
for _ in range(steps):
    model(torch.randn(64, 64)).sum().backward()  # nn.Module calls while the kernels compile
    draws.append(torch.rand(()).item())
print(json.dumps({"draws": draws, "states": [s["state"] for s in actplug.kernels.status()]}))
"""


def _run(script: str, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT
    )


def test_compiling_in_the_background_leaves_modules_and_random_numbers_alone(tmp_path):
    """The user's modules keep running and their random numbers (dropout masks, draws) are the very ones
    of a process that never compiles; the process ends cleanly while a kernel may still be compiling."""
    env = {**os.environ, "ACTPLUG_CACHE_DIR": str(tmp_path / "kernels"), "ACTPLUG_COMPILE": "background"}
    env.pop("ACTPLUG_CPU_KERNELS", None)
    compiling = _run(BACKGROUND, "3", "40", env=env)
    eager = _run(BACKGROUND, "3", "40", env={**env, "ACTPLUG_CPU_KERNELS": "eager"})
    for proc in (compiling, eager):
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "terminate called" not in proc.stderr and "Fatal" not in proc.stderr
    out, reference = (json.loads(p.stdout.strip().splitlines()[-1]) for p in (compiling, eager))
    assert out["draws"] == reference["draws"]
    assert out["states"] and reference["states"] == []


@pytest.mark.parametrize("bad", ["sometimes", "", "SYNC"])
def test_bad_compile_setting_names_the_choices(bad):
    with pytest.raises(ValueError, match=r"compile=.*\('background', 'sync'\)"):
        K.configure(compile=bad)
