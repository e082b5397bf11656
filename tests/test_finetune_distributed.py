"""Beyond one machine: a two-machine ``actplug finetune`` run on this host, the accelerate config files,
and FSDP2 with the activations' trainable scalars (SMU's mu, ASH's z and alpha) on two CPU processes.

The two "machines" are two ``accelerate launch`` commands started at once with ``--num_machines 2``
and their own ``--machine_rank``, meeting at 127.0.0.1 on a free port. A hung rendezvous cannot hang
the suite: both launchers and every worker they started are killed on a deadline or as soon as one
fails, and both logs are shown.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import torch
from test_finetune_run import ACCELERATE, TINY_SEG, _check_outputs, _env, _metrics

import actplug
from actplug.cli import main
from actplug.finetune import fsdp

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "accelerate"
LAUNCH_FLAGS = ["--mixed_precision", "no", "--dynamo_backend", "no"]


def _cpu_env() -> dict[str, str]:
    """The finetune tests' environment with no GPU visible: gloo on CPU processes, on any machine."""
    return {**_env(), "CUDA_VISIBLE_DEVICES": ""}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a launcher and every process it started (torchrun puts its workers in sessions of their own)."""
    try:
        launcher = psutil.Process(proc.pid)
        family = [launcher, *launcher.children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _run_machines(args: list[str], logs: Path, *, timeout: float = 300) -> tuple[list[int | None], str]:
    """Start one launcher per machine rank at once; wait for both, or kill both. Returns exit codes and logs."""
    port = _free_port()
    procs: list[subprocess.Popen] = []
    files = []
    late = False
    try:
        for rank in range(2):
            cmd = [ACCELERATE, "launch", "--config_file", str(CONFIGS / "multi_node.yaml"), "--machine_rank", str(rank)]
            cmd += ["--num_machines", "2", "--num_processes", "2", "--main_process_ip", "127.0.0.1"]
            cmd += ["--main_process_port", str(port), *LAUNCH_FLAGS, "-m", "actplug", "finetune", *args]
            files.append((logs / f"machine_rank_{rank}.log").open("w"))
            procs.append(subprocess.Popen(cmd, stdout=files[-1], stderr=subprocess.STDOUT, env=_cpu_env()))
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in procs) and not (late := time.monotonic() > deadline):
            if any(p.poll() not in (None, 0) for p in procs):
                break  # one machine failed: the other would wait for it until its own timeout
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                _kill_tree(p)
        for f in files:
            f.close()
    text = f"\n(killed after {timeout:.0f} s)" if late else ""
    for rank, p in enumerate(procs):
        log = (logs / f"machine_rank_{rank}.log").read_text()
        text += f"\n===== machine_rank {rank} (exit {p.returncode}) =====\n{log[-6000:]}"
    return [p.returncode for p in procs], text


def test_two_machines_train_one_ddp_model(tmp_path):
    """Two accelerate launchers, one process each, are one world of 2 with equal weights on both ranks."""
    out = tmp_path / "seg"
    codes, logs = _run_machines([*TINY_SEG, "--epochs", "1", "--output", str(out)], tmp_path)
    assert codes == [0, 0], f"both machine ranks must exit 0, got {codes}:{logs}"
    summary = _metrics(out)
    assert summary["world_size"] == 2, logs
    assert len(summary["rank_fingerprints"]) == 2 and summary["ranks_in_sync"], summary["rank_fingerprints"]
    assert summary["eval_samples"] == 5, "each of the 5 validation images counted once across 2 processes"
    assert set(summary["final"]) == {"miou", "pixel_acc", "val_loss"}
    assert 0.0 <= summary["final"]["miou"] <= 1.0 and 0.0 <= summary["final"]["pixel_acc"] <= 1.0
    assert (summary["task"], summary["model"], summary["encoder"], summary["act"]) == (
        "segmentation",
        "unet",
        "resnet18",
        "smu",
    )
    assert summary["act_kwargs"] == {"mu": 2.5}
    _check_outputs(out, summary, 1)
    assert logs.count("final: miou") == 1, "only the main process of the main machine reports"


def _launch_args(config: Path, *extra: str):
    """What ``accelerate launch --config_file config ...`` would start, worked out without starting it."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    argv = ["--config_file", str(config), "--main_process_port", "0", *extra, "-m", "actplug", "finetune"]
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    env = prepare_multi_gpu_env(args) if args.multi_gpu or args.use_fsdp else {}
    return args, env


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_config_files_are_accepted_by_accelerate(name):
    """Every config parses with no key accelerate does not know, and its usage line names the file."""
    from accelerate.commands.config.config_args import load_config_from_file

    path = CONFIGS / name
    config = load_config_from_file(str(path))
    assert config.compute_environment.value == "LOCAL_MACHINE" and not config.use_cpu
    assert f"--config_file examples/accelerate/{name}" in path.read_text(), "the usage comment names the file"
    args, _ = _launch_args(path)
    assert int(args.num_processes) == config.num_processes


def test_multi_node_config_splits_processes_over_machines():
    args, _ = _launch_args(CONFIGS / "multi_node.yaml")
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "4", 0), "8 processes in all, 4 per machine"
    assert args.rdzv_endpoint.startswith("10.0.0.1:")
    other, _ = _launch_args(CONFIGS / "multi_node.yaml", "--machine_rank", "1")
    assert other.node_rank == 1, "--machine_rank on the command line overrides the file, as its comment says"


def _scalar_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 4), actplug.create("smu"), torch.nn.ReLU(), actplug.create("ash"))


def test_fsdp_config_gives_fsdp2_leaving_the_scalars_unsharded(monkeypatch):
    """The env fsdp.yaml launches with makes an FSDP2 plugin that leaves the activations with 0-dim parameters out."""
    args, env = _launch_args(CONFIGS / "fsdp.yaml")
    assert args.use_fsdp and env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    fsdp.check_launch(cuda=True)
    model = _scalar_model()
    plugin = fsdp.make_plugin(model)
    assert plugin.fsdp_version == 2 and plugin.state_dict_type.name == "SHARDED_STATE_DICT"
    assert [type(m).__name__ for m in plugin.ignored_modules] == ["SMU", "ASH"]
    monkeypatch.setenv("FSDP_IGNORED_MODULES", "0")  # a user's own ignored modules are kept
    assert [type(m).__name__ for m in fsdp.make_plugin(model).ignored_modules] == ["Linear", "SMU", "ASH"]


@pytest.mark.parametrize(
    ("version", "cuda", "message"),
    [
        ("2", False, r"FSDP under accelerate needs CUDA GPUs.*--multi_gpu"),
        ("1", True, r"FSDP version 1 is not supported.*--fsdp_version 2"),
    ],
)
def test_fsdp_launch_that_would_not_shard_fails_before_training(tmp_path, capsys, monkeypatch, version, cuda, message):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", version)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    out = tmp_path / "out"
    code = main(["finetune", "segmentation", "--act", "smu", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("actplug finetune: error: "), err
    assert re.search(message, err), err
    assert not out.exists(), "nothing written"


def test_fsdp2_on_two_cpu_processes_trains_and_syncs_the_scalars(tmp_path):
    """fully_shard over gloo as the recipes shard on GPUs: mu, z, alpha get gradients, change, and agree."""
    result_file = tmp_path / "fsdp.json"
    cmd = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", *LAUNCH_FLAGS]
    cmd += ["--main_process_port", str(_free_port()), str(CONFIGS / "fsdp_cpu_trial.py"), "--output", str(result_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_cpu_env())
    try:
        log, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        pytest.fail(f"the FSDP trial ran past 240 s:\n{proc.communicate()[0][-8000:]}")
    finally:
        if proc.poll() is None:
            _kill_tree(proc)
    assert proc.returncode == 0, log[-8000:]
    r = json.loads(result_file.read_text())
    assert r["world_size"] == 2
    kinds = r["parameter_types"]
    assert {n for n, k in kinds.items() if k != "DTensor"} == {"1.act.mu", "2.act.z", "2.act.alpha"}, kinds
    for rank in r["scalars"]:
        assert all(rank["grads"].values()), rank["grads"]
        assert all(rank["after"][n] != rank["before"][n] for n in rank["before"]), rank
    assert r["scalars"][0]["after"] == r["scalars"][1]["after"], "the unsharded scalars are equal on both processes"
    assert r["ranks_in_sync"] and len(set(r["rank_fingerprints"])) == 1, r["rank_fingerprints"]
    assert r["eval_batches"] == [3, 2], "uneven evaluation ran without collectives"
    assert r["resharded_after_eval"] and r["checkpoint_restored"]
    # The control: without averaging their gradients the processes' scalars drift apart.
    assert r["unsynced_scalars"][0] != r["unsynced_scalars"][1]
    assert len(set(r["unsynced_fingerprints"])) == 2


def test_average_gradients_is_a_no_op_on_one_process():
    """Outside a process group (one process) the gradients stay as they are."""
    model = _scalar_model()
    model(torch.randn(3, 4)).sum().backward()
    before = [p.grad.clone() for p in model.parameters()]
    fsdp.average_gradients(list(model.parameters()))
    assert all(torch.equal(a, p.grad) for a, p in zip(before, model.parameters(), strict=True))
    assert fsdp.keep_replicated_in_sync(model, torch.optim.SGD(model.parameters(), lr=0.1)) is None, "not sharded"
