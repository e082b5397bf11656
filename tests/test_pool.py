"""The CPU output pool (actplug.kernels.pool) reuses a storage only when nothing else can reach it,
stays within its limit, drops storages changed behind its back, and serves the compiled path's
outputs and gradients end to end."""

from __future__ import annotations

import gc

import pytest
import torch

import actplug
import actplug.kernels as K
from actplug.kernels import pool

COMPILED = {"cpu": "compiled", "cpu_min_numel": 0}
BIG = pool.MIN_BYTES // 4 + 4096  # float32 elements: just over the threshold
CPU = torch.device("cpu")


@pytest.fixture
def fresh_pool(monkeypatch) -> pool.BufferPool:
    """An empty pool in place of the process's one, for the test alone."""
    p = pool.BufferPool()
    monkeypatch.setattr(pool, "_pool", p)
    return p


def _address(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def test_a_freed_buffer_is_handed_out_again_and_a_held_one_never(fresh_pool):
    a = pool.empty((BIG,), torch.float32, CPU)
    assert a.shape == (BIG,) and a.is_contiguous() and a._base is None
    address = _address(a)
    b = pool.empty((BIG,), torch.float32, CPU)
    assert _address(b) != address, "a is alive: its memory is not free"
    assert fresh_pool.held_bytes == 2 * BIG * 4
    del a
    c = pool.empty((BIG // 2, 2), torch.float32, CPU)  # same bytes, another shape
    assert _address(c) == address and c.shape == (BIG // 2, 2)
    d = pool.empty((BIG,), torch.int32, CPU)  # another dtype of the same size shares the storages
    assert _address(d) not in (address, _address(b))
    assert fresh_pool.held_bytes == 3 * BIG * 4


def _storage_values(storage: torch.UntypedStorage) -> torch.Tensor:
    return torch.empty(0).set_(storage)


@pytest.mark.parametrize(
    ("hold", "read"),
    [
        pytest.param(lambda t: t.view(-1, 4096), lambda k: k, id="view"),
        pytest.param(lambda t: t[1:], lambda k: k, id="slice"),
        pytest.param(lambda t: t.untyped_storage(), _storage_values, id="storage handle"),
        pytest.param(lambda t: t.numpy(), torch.from_numpy, id="numpy"),
        pytest.param(lambda t: torch.utils.dlpack.to_dlpack(t), torch.utils.dlpack.from_dlpack, id="dlpack capsule"),
        pytest.param(lambda t: torch.sin(t.requires_grad_()), lambda k: k.grad_fn._saved_self, id="saved input"),
        pytest.param(lambda t: torch.empty(0).set_(t.untyped_storage()), lambda k: k, id="set_"),
    ],
)
def test_memory_that_anything_still_reaches_is_not_reused(fresh_pool, hold, read):
    t = pool.empty((BIG,), torch.float32, CPU)
    t.fill_(1.0)
    address = _address(t)
    kept = hold(t)
    del t
    gc.collect()
    other = pool.empty((BIG,), torch.float32, CPU)
    other.fill_(2.0)
    assert _address(other) != address
    assert (read(kept).detach() == 1.0).all(), "what is still reachable was not overwritten"
    del kept
    gc.collect()
    assert _address(pool.empty((BIG,), torch.float32, CPU)) == address, "free once nothing holds it"


def test_resized_or_shared_storages_are_dropped_not_reused(fresh_pool):
    t = pool.empty((BIG,), torch.float32, CPU)
    t.resize_(BIG + 1)  # a new allocation inside the same storage object
    del t
    u = pool.empty((BIG,), torch.float32, CPU)
    assert u.untyped_storage().nbytes() == BIG * 4
    assert fresh_pool.held_bytes == BIG * 4, "the resized storage is dropped when next met"
    u.share_memory_()  # moved to shared memory another process may map
    address = _address(u)
    del u
    v = pool.empty((BIG,), torch.float32, CPU)
    assert _address(v) != address and not v.is_shared()


def test_the_pool_stays_within_its_limit_and_empty_cache_gives_memory_back(fresh_pool):
    n = BIG * 4
    with K.use(cpu_pool_mb=(3 * n) >> 20):  # room for two buffers, not three
        a = pool.empty((BIG,), torch.float32, CPU)
        b = pool.empty((BIG,), torch.float32, CPU)
        c = pool.empty((BIG,), torch.float32, CPU)  # no room, nothing free: a plain tensor
        assert fresh_pool.held_bytes == 2 * n
        del a, b, c
        assert fresh_pool.free_bytes() == 2 * n
        small = pool.empty((BIG // 4,), torch.float32, CPU)  # under MIN_BYTES: never pooled
        assert fresh_pool.held_bytes == 2 * n
        del small
        double = pool.empty((2 * BIG,), torch.float32, CPU)  # both free ones make room for it
        assert fresh_pool.held_bytes == 2 * n and _address(double) in {e.address for e in fresh_pool._entries}
        keep = pool.empty((BIG,), torch.float32, CPU)  # no room while double is alive
        assert fresh_pool.held_bytes == 2 * n and _address(keep) not in {e.address for e in fresh_pool._entries}
        del double
        assert K.empty_cache() == 2 * n
    assert fresh_pool.held_bytes == 0 and fresh_pool.free_bytes() == 0
    assert keep.shape == (BIG,)


def test_switched_off_small_or_not_cpu_buffers_are_plain(fresh_pool):
    with K.use(cpu_pool_mb=0):
        t = pool.empty((BIG,), torch.float32, CPU)
    assert t.shape == (BIG,) and fresh_pool.held_bytes == 0
    assert pool.empty((BIG,), torch.float32, torch.device("meta")).device.type == "meta"
    assert pool.empty((4, 5), torch.float16, CPU).shape == (4, 5)
    assert fresh_pool.held_bytes == 0


@pytest.mark.parametrize(
    ("name", "kwargs", "sums_parameters"),
    [
        ("pflu", {}, False),
        ("lpflu", {}, False),
        ("srelu", {}, False),
        ("srelu", {"trainable": True}, True),
        ("ash", {}, False),
    ],
)
def test_module_outputs_and_gradients_on_the_compiled_path_come_from_the_pool(
    name, kwargs, sums_parameters, fresh_pool
):
    """End to end, twice (the second time on reused memory): a large forward and backward through a
    module write their output and the input's gradient into pooled buffers and give the plain
    math's values. An elementwise backward that also sums a parameter's gradient (SReLU's trainable
    alpha and beta) keeps Inductor's own buffer for x's gradient, so that its one loop is not split."""
    module = actplug.create(name, **kwargs)
    x = (torch.randn(BIG // 4096, 4096) * 3).requires_grad_(True)
    grad = torch.randn_like(x)
    plain_x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(1)  # LPFLU draws its slope: the same draw on both paths
    with K.use(cpu="eager"):
        want = module(plain_x)
        want.backward(grad)
    for _ in range(2):
        x.grad = None
        held_before = fresh_pool.held_bytes
        torch.manual_seed(1)
        with K.use(**COMPILED):
            y = module(x)
            y.backward(grad)
        pooled = {e.address for e in fresh_pool._entries}
        assert _address(y) in pooled, "the output"
        assert (_address(x.grad) in pooled) is not sums_parameters, "the input's gradient"
        torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(x.grad, plain_x.grad, rtol=1e-4, atol=1e-5)
        del y
    assert fresh_pool.held_bytes == held_before, "the second round reused the first round's memory"
