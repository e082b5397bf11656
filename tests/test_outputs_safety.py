"""No run overwrites another: atomic result files, and the output-folder policy of finetune and compare.

The folder checks are called directly (no training); one real ``actplug finetune --overwrite`` run and
one tiny wdbc comparison cover the commands end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import actplug
from actplug import atomic
from actplug.cli import main
from actplug.finetune import FinetuneConfig, FinetuneError, checkpoints, run_folder

# --- the atomic helper -------------------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    """Temporary files of an atomic write still in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_creates_folders_and_leaves_no_temp_file(tmp_path):
    path = atomic.write_json(tmp_path / "a" / "b" / "x.json", {"x": [1, 2.5, None]})
    assert json.loads(path.read_text()) == {"x": [1, 2.5, None]} and path.read_text().endswith("\n")
    atomic.write_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert _leftovers(path.parent) == []


def test_a_value_json_cannot_hold_leaves_the_old_file_untouched(tmp_path):
    path = atomic.write_json(tmp_path / "metrics.json", {"ok": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError, match="not JSON serializable"):
        atomic.write_json(path, {"ok": object()})
    with pytest.raises(ValueError, match="Out of range float"):
        atomic.write_json(path, {"ok": float("nan")}, allow_nan=False)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_rename_keeps_the_old_file_and_removes_the_temp_file(tmp_path, monkeypatch, error):
    path = atomic.write_bytes(tmp_path / "history.csv", b"epoch\n1\n")

    def broken_replace(src, dst):
        assert Path(src).read_bytes() == b"half", "the new content was written in full before the rename"
        raise error

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(type(error)):
        atomic.write_bytes(path, b"half")
    assert path.read_bytes() == b"epoch\n1\n"
    assert _leftovers(tmp_path) == []


def test_a_failed_flush_to_disk_removes_the_temp_file(tmp_path, monkeypatch):
    def broken_fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="I/O error"):
        atomic.write_text(tmp_path / "summary.md", "x")
    assert list(tmp_path.iterdir()) == []


def test_new_files_get_the_umask_mode_and_rewrites_keep_the_old_mode(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    path = atomic.write_text(tmp_path / "new.txt", "x")
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask, "not mkstemp's 0o600"
    path.chmod(0o640)
    atomic.write_text(path, "y")
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_figure_is_rendered_before_the_file_is_replaced(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    try:
        assert atomic.write_figure(tmp_path / "c.png", fig, dpi=20).read_bytes()[:4] == b"\x89PNG"
        assert atomic.write_figure(tmp_path / "c.svg", fig).read_text().lstrip().startswith("<?xml")
    finally:
        plt.close(fig)
    assert _leftovers(tmp_path) == []


# --- finetune: the output folder ---------------------------------------------------------------------------

SEG = ["finetune", "segmentation", "--encoder", "resnet18", "--act", "smu"]


def _config(output: Path, **kwargs) -> FinetuneConfig:
    return FinetuneConfig(task="segmentation", output=output, act="smu", encoder="resnet18", **kwargs)


def _another_run(output: Path, act: str = "ash", run_id: str = "old") -> dict[str, bytes]:
    """A finished run's files with no checkpoints left, as the issue found them; returns their bytes."""
    output.mkdir(parents=True, exist_ok=True)
    saved = {**_config(output).to_json(), "act": act, "run_id": run_id}
    (output / "config.json").write_text(json.dumps(saved))
    (output / "metrics.json").write_text(json.dumps({"task": "segmentation", "final": {"miou": 0.5}}))
    (output / "history.csv").write_text("epoch,train_loss,miou\n1,0.9,0.5\n")
    (output / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return {p.name: p.read_bytes() for p in output.iterdir()}


def _checkpoint(output: Path, epoch: int, run_id: str | None) -> Path:
    folder = output / "checkpoints" / f"epoch_{epoch:04d}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    state = {"epochs_done": epoch, "history": []} | ({} if run_id is None else {"run_id": run_id})
    (folder / checkpoints.STATE_FILE).write_text(json.dumps(state))
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("act", ["ash", "smu"], ids=["other-options", "same-options"])
def test_the_issue_a_used_folder_without_checkpoints_is_refused_untouched(tmp_path, capsys, act):
    out = tmp_path / "out"
    before = _another_run(out, act=act)
    code = main([*SEG, "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(out) in err and "--overwrite" in err and "--resume" in err and "another --output folder" in err
    assert ("act: 'ash' before, 'smu' now" in err) == (act == "ash")
    assert "metrics.json, history.csv, curves.png" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "byte for byte"
    code = main([*SEG, "--output", str(out), "--resume"])
    assert code == 2 and "--overwrite" in capsys.readouterr().err, "no checkpoint to resume: still refused"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_empty_folders_and_unrelated_files_are_free(tmp_path):
    run_folder.check_output(_config(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    run_folder.check_output(_config(tmp_path / "empty"))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("my notes")
    (tmp_path / "notes" / "checkpoints").mkdir()  # a checkpoints folder without finished checkpoints
    run_folder.check_output(_config(tmp_path / "notes"))


def test_a_run_stopped_before_its_first_epoch_may_start_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({**_config(out).to_json(), "run_id": "abc"}))
    run_folder.check_output(_config(out))
    run_folder.check_output(_config(out, resume=True))
    assert run_folder.run_id(_config(out, resume=True)) == "abc"


def test_a_config_json_of_someone_else_is_not_replaced_unasked(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text('{"learning_rate": 3}')
    with pytest.raises(FinetuneError, match=r"config.json that actplug finetune did not write.*--overwrite"):
        run_folder.check_output(_config(out))
    (out / "config.json").write_text("lr: 3")
    with pytest.raises(FinetuneError, match=r"is not JSON"):
        run_folder.check_output(_config(out))
    run_folder.check_output(_config(out, overwrite=True))


def test_checkpoints_need_resume_and_resume_only_continues_the_folders_own_run(tmp_path):
    out = tmp_path / "out"
    _another_run(out, act="smu", run_id="mine")
    _checkpoint(out, 1, "mine")
    with pytest.raises(FinetuneError, match=r"checkpoints of a run \(1 checkpoint.*pass --resume.*--overwrite"):
        run_folder.check_output(_config(out))
    run_folder.check_output(_config(out, resume=True))
    assert run_folder.run_id(_config(out, resume=True)) == "mine"
    _checkpoint(out, 2, "theirs")
    with pytest.raises(FinetuneError, match=r"checkpoints of another run.*epoch_0002.*--overwrite"):
        run_folder.check_output(_config(out, resume=True))


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(FinetuneError, match="--resume continues the run in --output and --overwrite replaces it"):
        run_folder.check_output(_config(tmp_path, resume=True, overwrite=True))


def test_overwrite_deletes_only_what_runs_write(tmp_path):
    out = tmp_path / "out"
    _another_run(out)
    _checkpoint(out, 3, "old")
    (out / "checkpoints" / "epoch_0004").mkdir()  # an interrupted save
    (out / "checkpoints" / "README").write_text("mine")
    (out / "notes.txt").write_text("mine")
    run_folder.check_output(_config(out, overwrite=True))
    gone = run_folder.discard_previous_run(out)
    assert gone == ["metrics.json", "history.csv", "curves.png", "checkpoints/epoch_0003", "checkpoints/epoch_0004"]
    assert sorted(_snapshot(out)) == ["checkpoints/README", "config.json", "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine" and (out / "checkpoints" / "README").read_text() == "mine"


class _Accelerator:
    """What checkpoints.save and load_latest ask of accelerate, on one process."""

    is_main_process = True
    num_processes = 1

    def __init__(self) -> None:
        self.loaded: list[str] = []

    def save_state(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_bytes(b"weights")

    def load_state(self, folder: str) -> None:
        self.loaded.append(Path(folder).name)

    def wait_for_everyone(self) -> None:
        pass


def test_pruning_and_resuming_see_only_the_runs_own_checkpoints(tmp_path):
    theirs = [_checkpoint(tmp_path, epoch, "theirs") for epoch in (5, 7)]
    legacy = _checkpoint(tmp_path, 8, None)
    acc = _Accelerator()
    for epoch in (1, 2, 3):
        checkpoints.save(acc, tmp_path, epoch, [{"epoch": epoch}], keep=2, run_id="mine")
    mine = checkpoints.run_checkpoints(tmp_path, "mine")
    assert [p.name for p in mine] == ["epoch_0002", "epoch_0003"], "the newest two of this run"
    assert all(p.is_dir() for p in [*theirs, legacy]), "another run's checkpoints are never pruned"
    assert checkpoints.load_latest(acc, tmp_path, run_id="mine") == (3, [{"epoch": 3}])
    assert checkpoints.load_latest(acc, tmp_path, run_id="theirs") == (7, [])
    assert checkpoints.load_latest(acc, tmp_path, run_id=None) == (8, []), "checkpoints older than run ids"
    assert acc.loaded == ["epoch_0003", "epoch_0007", "epoch_0008"]
    assert checkpoints.load_latest(acc, tmp_path, run_id="nobody") == (0, [])
    assert _leftovers(mine[-1]) == []


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", ACTPLUG_CPU_KERNELS="eager", HF_HUB_OFFLINE="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def test_finetune_overwrite_end_to_end(tmp_path, capsys):
    """A real run with --overwrite into the issue's folder: the old run is gone, the user's file stays."""
    out = tmp_path / "out"
    _another_run(out)
    old = _checkpoint(out, 5, "old")
    (out / "notes.txt").write_text("my notes")
    tiny = [*SEG[1:], "--batch-size", "2", "--image-size", "64", "--train-samples", "4", "--val-samples", "2"]
    tiny += ["--epochs", "1", "--output", str(out)]
    cmd = [sys.executable, "-m", "actplug", "finetune", *tiny, "--overwrite"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert result.returncode == 0, result.stderr[-4000:]
    assert "--overwrite: deleted the previous run's metrics.json, history.csv, curves.png, checkpoints/epoch_0005" in (
        result.stdout
    )
    assert (out / "notes.txt").read_text() == "my notes"
    assert not old.exists()
    saved = json.loads((out / "config.json").read_text())
    assert saved["act"] == "smu" and saved["run_id"] not in (None, "old")
    assert json.loads((out / "metrics.json").read_text())["act"] == "smu"
    assert (out / "history.csv").read_text().count("\n") == 2
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    [mine] = checkpoints.complete_checkpoints(out)
    assert mine.name == "epoch_0001" and checkpoints.run_id_of(mine) == saved["run_id"]
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []

    # The same command again (without --overwrite) finds a finished run: --resume continues that one.
    code = main(["finetune", *tiny])
    assert code == 2 and "pass --resume to continue it" in capsys.readouterr().err
    again = _config(out, epochs=1, batch_size=2, image_size=64, train_samples=4, val_samples=2, resume=True)
    run_folder.check_output(again)
    assert run_folder.run_id(again) == saved["run_id"]


# --- compare: the output folder ----------------------------------------------------------------------------


@pytest.fixture
def _eager_kernels():
    with actplug.kernels.use(cpu="eager"):
        yield


def _compare(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["compare", "--task", "wdbc", "--seeds", "1", "--epochs", "1", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_compare_refuses_reports_without_compare_json_untouched(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("results.csv", "summary.md", "results.json", "curves.png"):
        (out / name).write_text(f"old {name}")
    before = _snapshot(out)
    code, _, err = _compare(capsys, "--acts", "relu", "--output", str(out))
    assert code == 2, err
    assert "results.csv, summary.md, results.json, curves.png" in err and "no compare.json" in err
    assert "--overwrite" in err and "another --output folder" in err
    assert _snapshot(out) == before and not (out / "runs").exists()


def test_compare_overwrite_replaces_its_own_runs_and_leaves_the_rest(tmp_path, capsys, _eager_kernels):
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    (out / "compare.json").write_text(json.dumps({"task": "wdbc", "model": None, "epochs": 3, "comparison_id": "old"}))
    old = {"comparison_id": "old", "task": "wdbc", "seed": 0, "epochs": 1, "metrics": {}, "history": []}
    (out / "runs" / "relu__seed0.json").write_text(json.dumps({**old, "act": "relu"}))
    (out / "runs" / "gelu__seed0.json").write_text(json.dumps({**old, "act": "gelu"}))
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)

    code, _, err = _compare(capsys, "--acts", "relu", "--output", str(out))
    assert code == 2 and "epochs: 3 before, 1 now" in err and "--overwrite" in err, err
    assert _snapshot(out) == before

    code, stdout, err = _compare(capsys, "--acts", "relu", "--output", str(out), "--overwrite")
    assert code == 0, err
    assert "0 of 1 runs already finished" in stdout, "a record of the replaced comparison is never reused"
    new_id = json.loads((out / "compare.json").read_text())["comparison_id"]
    assert new_id not in (None, "old")
    relu = json.loads((out / "runs" / "relu__seed0.json").read_text())
    assert relu["comparison_id"] == new_id and relu["metrics"]
    after = _snapshot(out)
    assert after["notes.txt"] == b"mine" and after["runs/gelu__seed0.json"] == before["runs/gelu__seed0.json"]
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []

    # The same command without --overwrite resumes the new comparison; the old gelu record is not its own.
    code, stdout, err = _compare(capsys, "--acts", "relu,gelu", "--output", str(out))
    assert code == 0 and "1 of 2 runs already finished" in stdout, err
