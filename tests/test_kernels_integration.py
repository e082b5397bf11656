"""actplug.kernels inside the tools that trace, cast or wrap models: torch.compile (fullgraph),
torch.export, CPU autocast and DistributedDataParallel (two CPU processes over gloo).

Under torch.compile and torch.export the kernels step aside for the plain math, which those tools
trace themselves; the results must equal the kernels' own, forward and backward.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import references as R
import torch
from torch import nn

import actplug
import actplug.functional as lean
import actplug.kernels as K
from actplug.functional import reference

# the compiled path compiles each kernel on the first call that needs it, not in the background
PATHS = {"eager": {"cpu": "eager"}, "compiled": {"cpu": "compiled", "cpu_min_numel": 0, "compile": "sync"}}
BOTH = list(PATHS)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Smooth settings with every parameter trainable; LPFLU deterministic (its training draws are random).
SETTINGS = {
    "smu": {"alpha": 0.25, "mu": 2.5},
    "smu1": {"alpha": 0.25, "mu": 0.5},
    "pflu": {},
    "lpflu": {"lower": 0.1, "upper": 0.3, "randomized": False},
    "fpflu": {},
    "gish": {},
    "srelu": {"alpha": 0.7, "beta": 1.3, "trainable": True},
    "ash": {"z": 0.3, "alpha": 0.8},
}
ORDER = ("smu", "smu1", "pflu", "lpflu", "fpflu", "gish", "srelu", "ash")


def conv_then(*names: str, channels: int = 4) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), *(actplug.create(n, **SETTINGS[n]) for n in names))


@pytest.fixture
def fresh_dynamo():
    """A fresh dynamo for the test, and again after it (actplug's compiled kernels are compiled again after
    a reset: test_compiled_kernels_keep_serving_after_dynamo_resets)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def forward_backward(model: nn.Module, x: torch.Tensor, call=None):
    """Output, input gradient and parameter gradients of a weighted sum of the output of ``call``
    (``model`` itself, or a compiled wrapper of it)."""
    model.zero_grad(set_to_none=True)
    xi = x.clone().requires_grad_()
    out = (call or model)(xi)
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape).to(out.dtype)
    (out * weights).sum().backward()
    return out.detach(), xi.grad, {k: p.grad.clone() for k, p in model.named_parameters()}


# --------------------------------------------------------------------------------------------------
# torch.compile.
# --------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_dynamo")
def test_compile_fullgraph_of_all_eight_matches_eager(compiled_calls):
    """One model holding every activation in sequence, compiled by Inductor without graph breaks,
    against the kernels on both CPU paths."""
    model = conv_then(*ORDER).train()
    x = torch.randn(2, 3, 6, 6)
    compiled = torch.compile(model, fullgraph=True)
    with K.use(**PATHS["compiled"]):
        c_out, c_gx, c_gp = forward_backward(model, x, compiled)
        c_out2, _, _ = forward_backward(model, x * 0.5, compiled)  # a second call reuses the graph
        assert not compiled_calls, "inside torch.compile the kernels leave the math to Inductor"
    for path in BOTH:
        compiled_calls.clear()
        with K.use(**PATHS[path]):
            out, gx, gp = forward_backward(model, x)
            out2 = model(x * 0.5).detach()
        assert bool(compiled_calls) == (path == "compiled")
        torch.testing.assert_close(c_out, out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(c_out2, out2, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(c_gx, gx, rtol=1e-4, atol=1e-5)
        assert gp.keys() == c_gp.keys()
        assert {"1.mu", "2.mu", "7.alpha", "7.beta", "8.z", "8.alpha"} <= gp.keys()
        for key in gp:
            torch.testing.assert_close(c_gp[key], gp[key], rtol=1e-4, atol=1e-4, msg=f"{path}: {key}")


@pytest.mark.usefixtures("fresh_dynamo")
def test_compiled_kernels_keep_serving_after_dynamo_resets(compiled_calls):
    """A process that resets dynamo now and then (notebooks, test suites, torch.compile users) keeps the
    compiled kernels (they are artifacts of their own, not dynamo's graphs): the values are right on
    every call, and every call after a reset is served."""
    x = torch.randn(4, 12)
    with K.use(**PATHS["compiled"]):
        lean.pflu(x)  # compiled on this first call
        for reset in range(1, 4):
            torch._dynamo.reset()
            compiled_calls.clear()
            for _ in range(2):
                torch.testing.assert_close(lean.pflu(x), reference.pflu(x))
            assert compiled_calls, f"after reset {reset} the kernel serves no call: {K.status()}"


# --------------------------------------------------------------------------------------------------
# torch.export.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", R.NAMES)
def test_export_in_eval_mode_matches_the_module(name, compiled_calls):
    model = conv_then(name).eval()
    x = torch.randn(2, 3, 6, 6)
    with K.use(**PATHS["compiled"]):
        program = torch.export.export(model, (x,))
        assert not compiled_calls, "export traces the plain math, not the kernels"
        code = program.graph_module.code
        assert "autograd_function_apply" not in code and "_ElementwiseFunction" not in code
        exported = program.module()
        for inputs in (x, torch.randn(2, 3, 6, 6) * 3):
            torch.testing.assert_close(exported(inputs), model(inputs), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Autocast.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BOTH)
@pytest.mark.parametrize("name", R.NAMES)
def test_autocast_bfloat16_forward_and_backward(name, path, compiled_calls):
    model = conv_then(name).train()
    x = torch.randn(2, 3, 6, 6)
    reference = forward_backward(model, x)  # float32
    model.zero_grad(set_to_none=True)
    xi = x.clone().requires_grad_()
    with K.use(**PATHS[path]):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(xi)
        assert out.dtype == torch.bfloat16  # the conv ran in bfloat16 and the activation kept it
        weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
        (out.float() * weights).sum().backward()
    assert bool(compiled_calls) == (path == "compiled")
    assert out.isfinite().all() and xi.grad.isfinite().all() and xi.grad.dtype == torch.float32
    for key, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32 and p.grad.isfinite().all(), key
    # bfloat16 keeps 8 bits: the results are those of float32 to a few percent of their scale
    r_out, r_gx, r_gp = reference
    torch.testing.assert_close(out.float(), r_out, rtol=0.05, atol=0.05 * float(r_out.abs().max()))
    torch.testing.assert_close(xi.grad, r_gx, rtol=0.1, atol=0.05 * float(r_gx.abs().max()))
    for key, p in model.named_parameters():
        torch.testing.assert_close(p.grad, r_gp[key], rtol=0.1, atol=0.05 * float(r_gp[key].abs().max()), msg=key)


# --------------------------------------------------------------------------------------------------
# DistributedDataParallel: two CPU processes over gloo.
# --------------------------------------------------------------------------------------------------

DDP_SCRIPT = textwrap.dedent(
    """
    import json
    import os
    import sys

    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp

    import actplug


    def build():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1),
            actplug.create("smu", alpha=0.25, mu=2.5),
            actplug.create("ash", z=0.3, alpha=0.8),
            torch.nn.Flatten(),
            torch.nn.Linear(4 * 6 * 6, 2),
        )


    def data():
        g = torch.Generator().manual_seed(1)
        return torch.randn(8, 3, 6, 6, generator=g), torch.randn(8, 2, generator=g)


    def train(model, x, y, steps=3):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(steps):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()


    def worker(rank, world, port, out, path):
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world)
        try:
            with actplug.kernels.use(**path):
                model = torch.nn.parallel.DistributedDataParallel(build())
                x, y = data()
                train(model, x.chunk(world)[rank], y.chunk(world)[rank])
            torch.save(dict(model.module.named_parameters()), os.path.join(out, f"rank{rank}.pt"))
        finally:
            dist.destroy_process_group()


    if __name__ == "__main__":
        port, out, path = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
        mp.spawn(worker, args=(2, port, out, path), nprocs=2, join=True)
        # one process on the whole batch: the mean of the ranks' gradients is its gradient
        with actplug.kernels.use(**path):
            model = build()
            initial = {k: v.detach().clone() for k, v in model.named_parameters()}
            train(model, *data())
        torch.save({"initial": initial, "single": dict(model.named_parameters())}, os.path.join(out, "single.pt"))
    """
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_keep_identical_parameters(tmp_path):
    """Two ranks train a Conv + SMU + ASH model on halves of a batch (the eager CPU path: the
    compiled one would compile again in each fresh process); afterwards every parameter, mu, z and
    alpha included, is the same on both ranks, and equals one process trained on the whole batch."""
    path = "eager"
    script = tmp_path / "ddp_worker.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    for attempt in range(3):  # another process may take the free port in between
        result = subprocess.run(
            [sys.executable, str(script), str(_free_port()), str(tmp_path), json.dumps(PATHS[path])],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode == 0 or "address already in use" not in result.stderr.lower() or attempt == 2:
            break
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    single = torch.load(tmp_path / "single.pt")
    assert {"1.mu", "2.z", "2.alpha"} <= ranks[0].keys()
    assert ranks[0].keys() == ranks[1].keys() == single["single"].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), f"{key} differs between the ranks"
        torch.testing.assert_close(ranks[0][key], single["single"][key], rtol=1e-5, atol=1e-6, msg=key)
    for key in ("1.mu", "2.z", "2.alpha"):
        assert not torch.equal(ranks[0][key], single["initial"][key]), f"{key} was not trained"
