"""The compiled CPU kernels called without dynamo (actplug.kernels.direct_call): taken where dynamo's
guards are understood, left to dynamo wherever a call falls outside them, and exact either way."""

from __future__ import annotations

import pytest
import torch

import actplug.functional as F
import actplug.kernels as K
from actplug.kernels import compiled as kcompiled
from actplug.kernels import direct_call
from actplug.kernels.fused_math import pflu as fused_pflu

COMPILED = {"cpu": "compiled", "cpu_min_numel": 0}


def _entries(fn) -> list[direct_call.DirectCall]:
    """The direct calls of ``fn``'s graphs, and of those of ``fn`` writing into a given buffer."""
    found = (fn, kcompiled._writers.get(fn))
    return [e for signature, entries in kcompiled._direct.items() if signature[0] in found for e in entries]


def _counting_direct_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = direct_call.DirectCall.__call__

    def spy(self, args):
        calls.append(1)
        return real(self, args)

    monkeypatch.setattr(direct_call.DirectCall, "__call__", spy)
    return calls


def test_elementwise_kernels_run_direct_after_their_first_call(monkeypatch):
    """This PyTorch's dynamo graphs for the fused kernels are understood: the forward and the
    backward of a blocked PFLU, SMU (a scalar parameter, a flag) and SReLU (None gradients in the
    result) all get a direct call, and later calls of other sizes take it."""
    calls = _counting_direct_calls(monkeypatch)
    with K.use(**COMPILED):
        for name, fn in (("pflu", K.pflu), ("smu", K.smu), ("srelu", K.srelu)):
            for rows in (3, 5, 3):
                x = torch.randn(rows, 2 * kcompiled.BLOCK, requires_grad=True)
                fn(x).sum().backward()
            assert kcompiled._direct, name
    assert len(calls) >= 3 * 2 * 2, "later forwards and backwards ran direct"
    assert any(e.bounds for e in _entries(fused_pflu.pflu)), "one graph serves every number of rows"


def test_direct_results_equal_dynamo_results_bit_for_bit(monkeypatch):
    x = torch.randn(7 * kcompiled.BLOCK) * 30
    x[:5] = torch.tensor([0.0, -0.0, float("nan"), float("inf"), -1e30])
    grad = torch.randn_like(x)
    with K.use(**COMPILED):
        kcompiled.run(fused_pflu.pflu, x)  # compiles (or finds) the graph
        kcompiled.run(fused_pflu.pflu_backward, x, grad)
        direct = kcompiled.run(fused_pflu.pflu, x), kcompiled.run(fused_pflu.pflu_backward, x, grad)
        monkeypatch.setattr(kcompiled, "_direct", {})
        through_dynamo = kcompiled.run(fused_pflu.pflu, x), kcompiled.run(fused_pflu.pflu_backward, x, grad)
    for got, want in zip(direct, through_dynamo, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


def test_calls_outside_the_guards_go_to_dynamo_and_stay_exact(monkeypatch):
    """Each property dynamo guards on and the direct call checks: a call that differs in one of them
    is not taken direct (and gives the right values through dynamo)."""
    x = torch.randn(4 * kcompiled.BLOCK)
    grad = torch.randn_like(x)
    with K.use(**COMPILED):
        kcompiled.run(fused_pflu.pflu_backward, x, grad)
        rows = kcompiled._call_args((x, grad), True)
        own = [e for sig, es in kcompiled._direct.items() if sig[0] is fused_pflu.pflu_backward for e in es]
        (entry,) = [e for e in own if e.accepts(rows)]
    rows = kcompiled._call_args((x, grad), True)
    assert entry.accepts(rows)
    one_row = [rows[0][:1], rows[1][:1]]  # a size dynamo specialises (0/1)
    unequal = [rows[0], rows[1][:2]]  # sizes a guard requires equal
    strided = [rows[0][::2], rows[1][::2]]  # not contiguous
    halves = [rows[0].half(), rows[1].half()]  # another dtype
    narrow = [rows[0][:, :8].contiguous(), rows[1][:, :8].contiguous()]  # a static size differs
    flat = [x, grad]  # another number of dimensions
    wants_grad = [rows[0].clone().requires_grad_(), rows[1]]
    subclass = [torch.nn.Parameter(rows[0], requires_grad=False), rows[1]]  # dynamo guards on the type
    for args in (one_row, unequal, strided, halves, narrow, flat, wants_grad, subclass):
        assert not entry.accepts(args)
    with torch.autocast("cpu"):  # a global state dynamo guards on
        assert not entry.accepts(rows)
    calls = _counting_direct_calls(monkeypatch)
    with K.use(**COMPILED):
        y = x[: kcompiled.BLOCK].clone()
        got = kcompiled.run(fused_pflu.pflu_backward, y, grad[: kcompiled.BLOCK])  # one row
    assert not calls
    torch.testing.assert_close(got, fused_pflu.pflu_backward(y, grad[: kcompiled.BLOCK]))


def _halves(x: torch.Tensor) -> torch.Tensor:
    """A kernel whose graph carries a guard of another form (the length is even)."""
    return x.view(2, -1).flip(0).reshape(-1) * 2.0


def _pair(x: torch.Tensor) -> tuple[torch.Tensor, None, torch.Tensor]:
    return x + 1.0, None, x * 3.0


@pytest.fixture
def no_direct_state(monkeypatch):
    monkeypatch.setattr(kcompiled, "_direct", {})
    monkeypatch.setattr(kcompiled, "_seen", set())


def test_graphs_with_other_guards_keep_dynamo(no_direct_state):
    for n in (6, 10, 14):
        x = torch.arange(float(n))
        assert torch.equal(kcompiled.run(_halves, x), torch.cat([x[n // 2 :], x[: n // 2]]) * 2)
    assert not _entries(_halves), "a guard this module does not check: no direct call"


def test_results_with_several_outputs_keep_their_structure(no_direct_state):
    for n in (6, 10, 6):
        x = torch.arange(float(n))
        a, none, b = kcompiled.run(_pair, x)
        assert none is None and torch.equal(a, x + 1) and torch.equal(b, x * 3)
    assert _entries(_pair), "two outputs and a None: still a direct call"


def test_prepare_refuses_what_it_cannot_map():
    """A placeholder that is neither a tensor nor a size (or an unexpected failure) gives None."""
    gm = torch.fx.symbolic_trace(lambda x, k: x * k)
    assert direct_call.prepare(gm, [torch.ones(2), 2.0], lambda *a: a, [torch.ones(2), 2.0]) is None
    assert direct_call.prepare(gm, [torch.ones(2)], lambda *a: a, []) is None


def test_bounds_from_inequality_guards_are_enforced():
    """Inductor guards its choice of reduction strategy with s <= n / s >= n: ASH's backward sums
    over a long row get a direct call whose bounds hold those, and a call outside them goes to
    dynamo (which compiles the other strategy)."""
    x = torch.randn(3, 5000, requires_grad=True)
    with K.use(**COMPILED):
        for _ in range(2):
            K.ash(x, 0.2, 0.7).backward(torch.randn(3, 5000))
    sums = [e for sig, es in kcompiled._direct.items() if sig[0].__name__ == "rows_backward_sums" for e in es]
    assert any(low > 2 or high is not None for e in sums for _, low, high in e.bounds), [e.bounds for e in sums]
    short = torch.randn(3, 100, requires_grad=True)
    grad = torch.randn(3, 100)
    with K.use(**COMPILED):
        K.ash(short, 0.2, 0.7).backward(grad)
    plain = short.detach().clone().requires_grad_()
    F.ash(plain, 0.2, 0.7).backward(grad)
    torch.testing.assert_close(short.grad, plain.grad, rtol=1e-4, atol=1e-5)


def test_accepts_checks_every_recorded_bound():
    entry = direct_call.DirectCall(
        compiled=lambda n, x: [x * 2],
        inputs=((0, 0), 0),
        tensors=(direct_call.TensorInput(0, torch.float32, torch.device("cpu"), (None, 4)),),
        bounds=(((0, 0), 3, 10),),
        equal=(),
    )
    assert [entry.accepts([torch.ones(n, 4)]) for n in (2, 3, 10, 11)] == [False, True, True, False]


def test_a_failing_direct_call_is_dropped_for_dynamo(no_direct_state, monkeypatch):
    def pair(x):  # its own code object: dynamo compiles it here, and the backend sees that
        return _pair(x)

    x = torch.arange(12.0)
    kcompiled.run(pair, x)
    (entry,) = _entries(pair)

    def broken(*args):
        raise RuntimeError("simulated")

    monkeypatch.setattr(entry, "compiled", broken)
    a, _, b = kcompiled.run(pair, x)
    assert torch.equal(a, x + 1) and torch.equal(b, x * 3)
    assert not _entries(pair) and pair not in kcompiled._broken


def _writer_entries(fn) -> list[direct_call.DirectCall]:
    writer = kcompiled._writers.get(fn)
    return [e for signature, entries in kcompiled._direct.items() if signature[0] is writer for e in entries]


def test_kernels_writing_into_a_given_buffer_run_direct_and_return_it():
    """With ``out=``, the kernel stores its (first) result straight into the caller's buffer (see
    actplug.kernels.pool), which comes back in its place; its graph still runs direct."""
    for rows in (3, 5, 3):
        x = torch.randn(rows * kcompiled.BLOCK) * 4
        out = torch.empty_like(x)
        assert kcompiled.run(fused_pflu.pflu, x, out=out) is out
        torch.testing.assert_close(out, fused_pflu.pflu(x))
        grad, slope = torch.randn_like(x), torch.tensor(0.1)
        dx = torch.empty_like(x)
        got_dx, got_slope = kcompiled.run(fused_pflu.lpflu_backward, x, grad, slope, True, out=dx)
        want_dx, want_slope = fused_pflu.lpflu_backward(x, grad, slope, True)
        assert got_dx is dx
        torch.testing.assert_close(got_dx, want_dx)
        torch.testing.assert_close(got_slope, want_slope, rtol=1e-4, atol=0)
    assert _writer_entries(fused_pflu.pflu), "the broadcast guard of out.copy_ is understood"
    assert _writer_entries(fused_pflu.lpflu_backward)


def test_confirm_requires_the_direct_call_to_write_the_buffer():
    """A graph that writes its result into an argument is confirmed on a NaN-filled twin of it: one
    that left the buffer alone would look right on the buffer dynamo had already written."""
    x = torch.randn(8)
    written = [x, x * 2]  # dynamo's call wrote x * 2 into the second argument

    def entry(compiled):
        tensors = tuple(direct_call.TensorInput(i, torch.float32, torch.device("cpu"), (8,)) for i in (0, 1))
        return direct_call.DirectCall(compiled, (0, 1), tensors, (), ())

    def writes(a, out):
        out.copy_(a * 2)
        return []

    assert entry(writes).confirm(written, None, written=1)
    assert not entry(lambda a, out: []).confirm(written, None, written=1)
    assert not entry(writes).confirm([x, torch.full((8,), float("nan"))], None, written=1), "NaN hides a missed write"
