"""``actplug bench``: what it measures, writes and rejects (correctness only, never wall-clock speed).

Tiny shapes and two repeats keep every run short. Two tests compile (the naive formula of one
activation; actplug's fused CPU kernels of one) and one builds two ResNets
(ResNet-18 in place of ResNet-50, to save time) at batch 2, 32x32.
"""

from __future__ import annotations

import ctypes
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import actplug
import actplug.kernels
from actplug import cli
from actplug.bench import memory, naive, timing
from actplug.bench import model as bench_model
from actplug.cli.cmd_bench import parse_acts

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--shape", "2,4,8,8", "--repeats", "2"]
ELEMENTWISE = ["fpflu", "gish", "lpflu", "pflu", "smu", "smu1", "srelu"]


def bench(capsys, tmp_path: Path, *argv: str) -> tuple[dict, str]:
    """Run ``actplug bench`` in-process; return the JSON it wrote and what it printed."""
    code = cli.main(["bench", *TINY, "--output", str(tmp_path), *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert (tmp_path / "bench.png").read_bytes()[:8] == PNG_MAGIC
    return json.loads((tmp_path / "bench.json").read_text()), out


def test_bench_writes_table_json_and_png(capsys, tmp_path):
    result, out = bench(capsys, tmp_path, "--acts", "smu,pflu,ash", "--no-compile", "--no-model")
    assert set(result) == {"machine", "config", "activations", "model"}
    assert result["machine"]["torch"] == torch.__version__
    assert {"device_name", "cpu_count", "torch_threads", "date", "python"} <= set(result["machine"])
    config = result["config"]
    assert config["shape"] == [2, 4, 8, 8]
    assert (config["dtype"], config["device"], config["repeats"], config["compile"]) == ("float32", "cpu", 2, False)
    assert config["calls_per_sample"] == 1
    assert config["memory"] == "fresh"
    assert config["kernels"]["compile"] == actplug.kernels.current().compile
    assert config["kernels"]["compile"] in ("background", "sync")
    assert "fresh pages per call" in " ".join(out.split())
    assert "output pool" not in out and "ACTPLUG_CPU_POOL_MB" not in out  # the pool is gone
    assert list(result["activations"]) == ["smu", "pflu", "ash"]
    assert result["model"] is None
    for name, record in result["activations"].items():
        assert record["name"] == name
        assert record["path"] == "eager"  # 512 elements: below cpu_min_numel
        for mode in ("forward", "forward_backward"):
            m = record[mode]
            assert set(m["median_ms"]) == {"relu", "naive", "ours"}
            assert all(v > 0 for v in m["median_ms"].values())
            assert all(len(s) == 2 for s in m["samples_ms"].values())
            assert m["vs_relu"]["ours"] == pytest.approx(m["median_ms"]["ours"] / m["median_ms"]["relu"])
            assert m["ours_vs_naive"] == pytest.approx(m["median_ms"]["ours"] / m["median_ms"]["naive"])
            assert m["ours_vs_compiled"] is None
        assert record["saved"]["input_bytes"] == 2 * 4 * 8 * 8 * 4
        labels = {t["label"]: t for t in record["targets"]}
        assert labels["forward ours/relu <= 1.5"]["met"] in (True, False)
        assert labels["forward+backward ours/compiled naive <= 1"]["met"] is None  # --no-compile
    saved = {name: r["saved"]["ratio"] for name, r in result["activations"].items()}
    assert saved["smu"]["ours"] == 1.0
    assert saved["pflu"]["ours"] == 1.0
    assert saved["smu"]["naive"] > saved["smu"]["ours"]
    assert saved["pflu"]["naive"] > saved["pflu"]["ours"]
    assert 1.0 < saved["ash"]["ours"] < 1.1 < saved["ash"]["naive"]  # x plus a mean and a std per sample
    for text in ("smu", "pflu", "ash", "/relu", "/naive", "saved / x", "bench.json", "bench.png", "target:"):
        assert text in out


@pytest.mark.parametrize("settings", [{"cpu": "eager"}, {"cpu_min_numel": 0}], ids=["eager", "fused"])
def test_ours_saves_only_the_input(capsys, tmp_path, settings):
    acts = "srelu" if settings.get("cpu") == "eager" else "pflu"  # the fused path compiles: one activation
    fused = settings.get("cpu") != "eager"
    served = actplug.kernels.compiler.calls
    before = dict(served)
    # kernels compile in the background (the default): the bench waits for ours before timing it
    with actplug.kernels.use(compile="background", **settings):
        result, _ = bench(capsys, tmp_path, "--acts", acts, "--no-compile", "--no-model")
    record = result["activations"][acts]
    assert record["path"] == ("compiled" if fused else "eager")
    assert record["saved"]["ratio"]["ours"] == 1.0
    assert record["saved"]["bytes"]["naive"] > record["saved"]["bytes"]["ours"]
    assert result["config"]["kernels"]["cpu_min_numel"] == settings.get("cpu_min_numel", 262144)
    assert result["config"]["kernels"]["compile"] == "background"
    new_calls = {label: n - before.get(label, 0) for label, n in served.items() if n > before.get(label, 0)}
    if not fused:
        assert not new_calls
        return
    # every timed call of ours (2 warm-up and 2 timed calls each way) ran its compiled kernels, not the eager math
    states = {s["label"]: s["state"] for s in actplug.kernels.status()}
    for label in (f"{acts}_forward_float32", f"{acts}_backward_float32"):
        assert states.get(label) == "ready", states
        assert new_calls.get(label, 0) >= 4, new_calls


def test_saved_ratio_of_every_elementwise_activation_is_one_under_eager_kernels():
    x = torch.randn(2, 4, 8, 8)
    with actplug.kernels.use(cpu="eager"):
        for name in ELEMENTWISE:
            pair = naive.make_pair(name)
            ours = memory.saved_bytes(pair.module, x, pair.state())
            # LPFLU also keeps the slope it drew for this call: one float.
            assert ours == x.numel() * 4 + (4 if name == "lpflu" else 0), name
            assert memory.saved_bytes(pair.naive, x, pair.state()) > x.numel() * 4, name


def test_compiled_column(capsys, tmp_path):
    result, out = bench(capsys, tmp_path, "--acts", "srelu", "--no-model")
    assert result["config"]["compile"] is True
    record = result["activations"]["srelu"]
    for mode in ("forward", "forward_backward"):
        assert set(record[mode]["median_ms"]) == {"relu", "naive", "compiled", "ours"}
        assert record[mode]["ours_vs_compiled"] == pytest.approx(
            record[mode]["median_ms"]["ours"] / record[mode]["median_ms"]["compiled"]
        )
    target = next(t for t in record["targets"] if t["metric"] == "ours_vs_compiled")
    assert target["met"] == (target["value"] <= 1.0)
    assert record["saved"]["ratio"]["compiled"] is None or record["saved"]["ratio"]["compiled"] > 0
    assert "/compiled" in out


def test_model_row(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(bench_model, "ARCH", "resnet18")  # the same code path as ResNet-50, 2x cheaper
    argv = ["--acts", "smu", "--no-compile", "--repeats", "1", "--model-batch", "2", "--model-image-size", "32"]
    result, out = bench(capsys, tmp_path, *argv)
    model = result["model"]
    assert (model["arch"], model["batch"], model["image_size"]) == ("resnet18", 2, 32)
    assert model["peak_memory_kind"] == "saved_for_backward"
    assert list(model["rows"]) == ["relu", "smu"]
    relu, smu = model["rows"]["relu"], model["rows"]["smu"]
    assert relu["step_vs_relu"] == 1.0
    assert relu["memory_vs_relu"] == 1.0
    assert smu["step_ms"] > 0
    assert smu["memory_bytes"] > 0
    assert smu["memory_vs_relu"] == pytest.approx(smu["memory_bytes"] / relu["memory_bytes"])
    assert "resnet18 training step" in out
    assert "saved for" in out


def test_default_acts_are_every_builtin():
    assert parse_acts(None) == actplug.names()
    assert parse_acts("SMU-1, smu,smu1") == ["smu1", "smu"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--shape", "2,a,8"], "--shape '2,a,8'"),
        (["--shape", "2,0,8"], "positive integers"),
        (["--shape", ""], "--shape"),
        (["--dtype", "float8"], "--dtype 'float8' is not supported; use float32, bfloat16 or float16"),
        (["--device", "tpu"], "--device 'tpu' is not supported; use cpu or cuda"),
        (["--device", "cuda"], "--device cuda: CUDA is not available"),
        (["--acts", "smuu"], "unknown activation 'smuu'. Did you mean 'smu'"),
        (["--acts", ","], "--acts ',' names no activation"),
        (["--repeats", "0"], "--repeats 0 must be >= 1"),
        (["--model-image-size", "8"], "--model-image-size 8 must be >= 32"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, monkeypatch, argv, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = cli.main(["bench", "--output", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("actplug bench: error: ")
    assert expected in lines[0]
    assert "cpu" in lines[0] or argv[0] != "--device"
    assert not (tmp_path / "out").exists()


def test_output_that_is_a_file_is_refused(capsys, tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me")
    code = cli.main(["bench", *TINY, "--acts", "pflu", "--no-compile", "--no-model", "--output", str(target)])
    assert code == 2
    assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_help_lists_bench(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["--help"])
    assert excinfo.value.code == 0
    assert "bench" in capsys.readouterr().out


def test_benchmarks_script_is_the_command(capsys, tmp_path, monkeypatch):
    argv = ["bench_activations.py", *TINY, "--acts", "fpflu", "--no-compile", "--no-model", "--output", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as excinfo:
        runpy.run_path(str(ROOT / "benchmarks" / "bench_activations.py"), run_name="__main__")
    assert excinfo.value.code == 0
    assert "fpflu" in json.loads((tmp_path / "bench.json").read_text())["activations"]
    capsys.readouterr()


# ------------------------------------------------------------------------ building blocks
@pytest.mark.parametrize("name", ["ash", *ELEMENTWISE])
def test_naive_formula_matches_the_module(name):
    pair = naive.make_pair(name)
    pair.module.double().eval()  # eval: LPFLU uses its running slope, initialised to the naive midpoint
    pair = naive.Pair(pair.name, pair.fn, naive._formula_args(name, pair.module, 4), pair.module)
    x = (torch.randn(2, 3, 5, 5, dtype=torch.float64) * 3).requires_grad_(True)
    ours, theirs = pair.module(x), pair.naive(x)
    torch.testing.assert_close(theirs, ours, rtol=1e-6, atol=1e-9)
    grad = torch.randn_like(x)
    trainable = [p for p in pair.module.parameters() if p.requires_grad]
    g_ours = torch.autograd.grad(ours, [x, *trainable], grad)
    g_theirs = torch.autograd.grad(theirs, [x, *trainable], grad)
    for a, b in zip(g_theirs, g_ours, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_alternate_rotates_warms_up_and_resets():
    calls: list[str] = []
    resets: list[str] = []
    candidates = [
        timing.Candidate(n, lambda n=n: calls.append(n), lambda n=n: resets.append(n)) for n in ("a", "b", "c")
    ]
    timings = timing.alternate(candidates, torch.device("cpu"), repeats=3, warmup=1)
    assert calls == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert resets == calls
    assert all(len(timings.samples[n]) == 3 for n in "abc")
    assert timings.median_ms("a") >= 0
    with pytest.raises(ValueError, match="repeats"):
        timing.alternate(candidates, torch.device("cpu"), repeats=0)


def test_a_sample_of_several_calls_resets_and_releases_before_each_and_averages(monkeypatch):
    events = []
    clock = iter(range(0, 100, 1))
    monkeypatch.setattr(timing, "release_free_memory", lambda: events.append("release"))
    # perf_counter is read twice per call; each call then takes one tick, i.e. 1 s
    monkeypatch.setattr(timing.time, "perf_counter", lambda: float(next(clock)))
    candidate = timing.Candidate("a", lambda: events.append("a"), lambda: events.append("reset"))
    assert timing.time_call(candidate, torch.device("cpu"), "fresh", calls=3) == 1.0
    assert events == ["reset", "release", "a"] * 3
    timings = timing.alternate([candidate], torch.device("cpu"), repeats=2, warmup=1, memory="reused", calls=4)
    assert timings.samples["a"] == [1.0, 1.0]
    assert events[9:] == ["reset", "a"] * 12
    with pytest.raises(ValueError, match="calls=0 must be >= 1"):
        timing.time_call(candidate, torch.device("cpu"), calls=0)


def test_every_timed_cpu_call_starts_from_released_heap_memory(monkeypatch):
    """The allocator state is the same for every candidate: free heap pages go back before each call."""
    events = []
    monkeypatch.setattr(timing, "release_free_memory", lambda: events.append("release"))
    candidates = [timing.Candidate(n, lambda n=n: events.append(n)) for n in ("a", "b")]
    timing.alternate(candidates, torch.device("cpu"), repeats=2, warmup=1)
    # warm-up a, b; round 0 a, b; round 1 starts at b
    assert events == ["release", "a", "release", "b"] * 2 + ["release", "b", "release", "a"]


def test_reused_memory_mode_skips_the_release_and_bad_modes_are_refused(monkeypatch):
    events = []
    monkeypatch.setattr(timing, "release_free_memory", lambda: events.append("release"))
    timing.alternate([timing.Candidate("a", lambda: events.append("a"))], torch.device("cpu"), 2, 1, "reused")
    assert events == ["a"] * 3
    with pytest.raises(ValueError, match="memory='kept' is not one of"):
        timing.alternate([timing.Candidate("a", lambda: None)], torch.device("cpu"), 1, memory="kept")


# Run in a child process: keep_freed_memory changes the C heap for the rest of the process.
_KEEP_FREED = """
import sys
from pathlib import Path
import os
import torch
from actplug.bench import timing

def resident():
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

if sys.argv[1] == "keep":
    assert timing.keep_freed_memory() is True
t = torch.ones(16 * 2**20)  # 64 MB, above glibc's mmap threshold
before = resident()
del t
print(before - resident())
"""


def test_keep_freed_memory_keeps_a_freed_tensors_pages():
    def released(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", _KEEP_FREED, mode], capture_output=True, text=True, check=True)
        return int(done.stdout.strip())

    assert released("default") > 50 * 2**20  # glibc unmaps a freed 64 MB block at once
    assert released("keep") < 8 * 2**20  # kept in the heap for the next allocation


def test_cli_memory_reused_is_recorded_and_printed(tmp_path):
    argv = ["bench", "--acts", "pflu", "--shape", "2,4,8,8", "--repeats", "1", "--no-compile", "--no-model"]
    done = subprocess.run(
        [sys.executable, "-m", "actplug", *argv, "--memory", "reused", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads((tmp_path / "bench.json").read_text())["config"]["memory"] == "reused"
    assert "freed memory reused" in done.stdout


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_release_free_memory_gives_freed_heap_pages_back():
    """50 MB freed in the middle of the heap stay resident (reused untouched by the next call)
    until release_free_memory hands them back."""
    libc = ctypes.CDLL(None)  # glibc on Linux, as in CI: malloc_trim and /proc/self/statm
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size = 100_000  # below glibc's mmap threshold: from the heap
    blocks = [libc.malloc(size) for _ in range(500)]
    pin = libc.malloc(size)  # keeps the freed blocks from being the heap's top, which free() trims itself
    try:
        for block in blocks:
            ctypes.memset(block, 1, size)
        for block in blocks:
            libc.free(block)
        before = _resident_bytes()
        assert timing.release_free_memory() is True
        assert before - _resident_bytes() > 40e6
    finally:
        libc.free(pin)


def test_saved_bytes_counts_each_storage_once_and_leaves_out_state():
    x = torch.randn(3, 5)
    assert memory.saved_bytes(lambda t: t * t, x) == x.numel() * 4  # t saved twice, counted once
    w = torch.randn(3, 5, requires_grad=True)
    assert memory.saved_bytes(lambda t: t * w, x, exclude=[w]) == x.numel() * 4
    assert memory.saved_bytes(lambda t: t * w, x) == 2 * x.numel() * 4
