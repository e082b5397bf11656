"""Large fresh outputs of the compiled CPU path are advised onto transparent huge pages
(actplug.kernels.hugepages); resident, small or non-CPU memory never is, and the switch works."""

from __future__ import annotations

import sys

import pytest
import torch

import actplug
import actplug.kernels as K
from actplug.bench.timing import release_free_memory
from actplug.kernels import hugepages

COMPILED = {"cpu": "compiled", "cpu_min_numel": 0}
BIG = hugepages.MIN_BYTES // 4 + 4096  # float32 elements: just over the threshold


def _vm_flags(address: int) -> list[str]:
    """The kernel's VmFlags of the mapping that holds ``address`` (``hg``: MADV_HUGEPAGE asked)."""
    mapping_holds = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                start, end = (int(part, 16) for part in head.split("-"))
                mapping_holds = start <= address < end
            elif mapping_holds and head == "VmFlags:":
                return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


def _inside_huge_page(t: torch.Tensor) -> int:
    """An address inside the first whole huge page of ``t``'s memory."""
    huge = hugepages._huge_page_size()
    return -(-t.data_ptr() // huge) * huge


@pytest.fixture
def honoured() -> bool:
    """True where this system takes MADV_HUGEPAGE hints (Linux with THP in madvise mode)."""
    advisor = hugepages._advisor()
    return advisor is not None and advisor.working


def test_a_large_fresh_buffer_is_advised_where_the_system_takes_hints(honoured):
    release_free_memory()  # glibc's free pages go back: whatever serves the buffer, it is fresh
    t = hugepages.empty((BIG,), torch.float32, torch.device("cpu"))
    if not honoured:  # nothing to ask for: the buffer is a plain one
        assert not hugepages.advise(t)
        return
    assert sys.platform == "linux"
    assert "hg" in _vm_flags(_inside_huge_page(t))
    t.fill_(1.5)  # the memory works as any other
    assert t.sum().item() == 1.5 * BIG


def test_resident_small_and_switched_off_buffers_are_left_alone(honoured):
    resident = torch.ones(BIG)  # written already: a caching allocator's memory looks like this
    assert not hugepages.advise(resident)
    assert not hugepages.advise(torch.empty(BIG // 2)), "below MIN_BYTES (it may be glibc's heap)"
    assert not hugepages.advise(torch.empty(BIG, device="meta"))
    with K.use(cpu_hugepages=False):
        assert not hugepages.advise(torch.empty(BIG))
    if honoured:
        assert "hg" not in _vm_flags(_inside_huge_page(resident))


@pytest.mark.parametrize(("mode", "takes_hints"), [("always [madvise] never", True), ("[always] madvise never", False)])
def test_only_the_madvise_mode_needs_hints(mode, takes_hints, tmp_path, monkeypatch):
    """[always] gives huge pages unasked and [never] none at all; a missing file means no THP."""
    (tmp_path / "enabled").write_text(mode + "\n")
    monkeypatch.setattr(hugepages, "_THP", tmp_path)
    monkeypatch.setattr(sys, "platform", "linux")
    hugepages._advisor.cache_clear()
    try:
        assert (hugepages._advisor() is not None) is takes_hints
        monkeypatch.setattr(hugepages, "_THP", tmp_path / "absent")
        hugepages._advisor.cache_clear()
        assert hugepages._advisor() is None
    finally:
        hugepages._advisor.cache_clear()


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
def test_module_outputs_and_gradients_on_the_compiled_path_are_offered_for_huge_pages(
    name, kwargs, sums_parameters, monkeypatch
):
    """End to end: a large forward and backward through a module write their output and the input's
    gradient into buffers offered to :func:`hugepages.advise` (which takes them where they are
    fresh, as tested above), and give the plain math's values. An elementwise backward that also
    sums a parameter's gradient (SReLU's trainable alpha and beta) keeps Inductor's own buffer for
    x's gradient, so that its one loop is not split in two."""
    offered: list[int] = []
    real = hugepages.advise

    def spy(t: torch.Tensor) -> bool:
        offered.append(t.data_ptr())
        return real(t)

    monkeypatch.setattr(hugepages, "advise", spy)
    x = torch.randn(BIG // 4096, 4096) * 3
    x.requires_grad_(True)
    module = actplug.create(name, **kwargs)
    grad = torch.randn_like(x)
    torch.manual_seed(1)  # LPFLU draws its slope: the same draw on both paths
    with K.use(**COMPILED):
        y = module(x)
        y.backward(grad)
    assert y.data_ptr() in offered, "the output"
    assert (x.grad.data_ptr() in offered) is not sums_parameters, "the input's gradient"
    plain_x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(1)
    with K.use(cpu="eager"):
        want = module(plain_x)
        want.backward(grad)
    torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x.grad, plain_x.grad, rtol=1e-4, atol=1e-5)
