"""``actplug compare`` end to end: small real runs, every output file, resuming, and bad input."""

from __future__ import annotations

import csv
import json
import re

import pytest

import actplug
from actplug.cli import main


@pytest.fixture(autouse=True)
def _eager_kernels():
    """Short runs: the plain math, without the fused kernels' one-time compilation."""
    with actplug.kernels.use(cpu="eager"):
        yield


def _compare(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["compare", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_wdbc_two_activations_two_seeds_writes_every_output(tmp_path, capsys):
    out = tmp_path / "wdbc"
    code, stdout, err = _compare(
        capsys, "--task", "wdbc", "--acts", "relu,srelu", "--seeds", "2", "--epochs", "2", "--output", str(out)
    )
    assert code == 0, err
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted((r["act"], int(r["seed"])) for r in rows) == [("relu", 0), ("relu", 1), ("srelu", 0), ("srelu", 1)]
    for row in rows:
        for metric in ("accuracy", "precision", "recall", "f1"):
            assert 0.0 <= float(row[metric]) <= 1.0
    summary_md = (out / "summary.md").read_text()
    assert "relu" in summary_md and "srelu" in summary_md and "±" in summary_md
    command = "actplug compare --task wdbc --acts relu,srelu --seeds 2 --epochs 2 --output " + str(out)
    assert command in summary_md, "summary.md quotes the command that regenerates it"
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 4 and results["meta"]["seeds"] == 2
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    for record in results["runs"]:
        assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert "4 runs" in stdout or "running 4" in stdout

    # The same command again: nothing re-runs, the outputs are rebuilt from the stored runs.
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    code, stdout, err = _compare(
        capsys, "--task", "wdbc", "--acts", "relu,srelu", "--seeds", "2", "--epochs", "2", "--output", str(out)
    )
    assert code == 0, err
    assert "4 of 4 runs already finished" in stdout
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}

    # One more activation: only its runs are new.
    code, stdout, err = _compare(
        capsys, "--task", "wdbc", "--acts", "relu,srelu,smu", "--seeds", "2", "--epochs", "2", "--output", str(out)
    )
    assert code == 0, err
    assert "4 of 6 runs already finished" in stdout
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 6


def test_same_seed_same_result(tmp_path, capsys):
    """A run is a function of (task, activation, seed, epochs): two folders give identical metrics."""
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        code, _, err = _compare(
            capsys, "--task", "digits", "--acts", "smu", "--seeds", "1", "--epochs", "1", "--output", str(out)
        )
        assert code == 0, err
    a, b = (json.loads((o / "runs" / "smu__seed0.json").read_text()) for o in outs)
    assert a["metrics"] == b["metrics"] and a["history"] == b["history"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "wdcb", "--acts", "relu"], r"wdcb.*wdbc"),
        (["--task", "wdbc", "--acts", "relu,smuu"], r"smuu.*Did you mean 'smu'"),
        (["--task", "wdbc", "--acts", "relu,relu"], r"'relu' twice"),
        (["--task", "wdbc", "--acts", ""], r"--acts is empty"),
        (["--task", "folder:{missing}", "--acts", "relu"], r"{missing}"),
        (["--task", "wdbc", "--acts", "relu", "--seeds", "0"], r"--seeds must be >= 1"),
        (["--task", "wdbc", "--acts", "relu", "--epochs", "0"], r"--epochs must be >= 1"),
        (["--task", "wdbc", "--acts", "relu", "--device", "tpu"], r"--device 'tpu'"),
    ],
)
def test_bad_input_fails_before_any_run(tmp_path, capsys, argv, message):
    missing = tmp_path / "no-such-folder"
    out = tmp_path / "out"
    argv = [a.replace("{missing}", str(missing)) for a in argv]
    code, _, err = _compare(capsys, *argv, "--output", str(out))
    assert code == 2, err
    assert err.startswith("actplug compare: error: ")
    assert re.search(message.replace("{missing}", re.escape(str(missing))), err), err
    assert not (out / "runs").exists(), "no run started"


def test_output_with_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = _compare(
        capsys, "--task", "wdbc", "--acts", "relu", "--seeds", "1", "--epochs", "1", "--output", str(out)
    )
    assert code == 0, err
    code, _, err = _compare(
        capsys, "--task", "wdbc", "--acts", "relu", "--seeds", "1", "--epochs", "3", "--output", str(out)
    )
    assert code == 2 and "epochs: 1 before, 3 now" in err, err
