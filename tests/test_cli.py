"""The ``actplug`` command line: ``list``, ``info``, ``plot``, ``--version`` and its errors.

Most tests call :func:`actplug.cli.main` in-process; a few run ``python -m actplug`` and the
installed ``actplug`` console script to check the real entry points.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import actplug
from actplug import cli
from actplug.cli.cmd_plot import parse_spec

BUILTINS = ["ash", "fpflu", "gish", "lpflu", "pflu", "smu", "smu1", "srelu"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"actplug {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def read_png(path: Path):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3
    assert image.shape[0] > 0
    assert image.shape[1] > 0
    assert float(image.std()) > 0  # something was drawn
    return image


# ------------------------------------------------------------------------ list
def test_list_shows_every_name_alias_and_parameter(capsys):
    code, out, err = run_cli(capsys, "list")
    assert code == 0
    assert err == ""
    for name in [*BUILTINS, "smu-1", "smu_1"]:
        assert name in out
    assert "mu" in out
    assert "z, alpha" in out
    assert "builtin" in out
    assert "erf" in out


def test_list_prints_plugin_metadata_verbatim(capsys, monkeypatch):
    class Bracketed(nn.Module):
        """Clips x to [lo, hi]; see [smith2020] and [/x]."""

        def forward(self, x):
            return x

    private = actplug.Registry(entry_point_group=None)
    private.register("bracketed", Bracketed, formula="clip(x) in [lo, hi]", paper="Smith [smith2020] [/x]")
    monkeypatch.setattr(actplug, "registry", private)

    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    assert "clip(x) in [lo, hi]" in out
    assert "Smith [smith2020] [/x]" in out

    code, out, _ = run_cli(capsys, "info", "bracketed")
    assert code == 0
    assert "clip(x) in [lo, hi]" in out
    assert "Smith [smith2020] [/x]" in out
    assert "Clips x to [lo, hi]; see [smith2020] and [/x]." in out


# ------------------------------------------------------------------------ info
def test_info_smu(capsys):
    code, out, err = run_cli(capsys, "info", "smu")
    assert code == 0
    assert err == ""
    info = actplug.info("smu")
    assert info.formula in out
    assert "defaults" in out
    assert "alpha=0.25" in out
    assert f"mu={1e6!r}" in out
    assert "trainable=True" in out
    assert "inplace=False" in out
    assert "(actplug.nn.SMU)" in out  # the class users import
    assert "builtin" in out
    # the paper line is printed whole, not hard-wrapped at 80 columns
    assert info.paper in out


def test_info_by_alias_in_any_case(capsys):
    code, out, _ = run_cli(capsys, "info", "SMU_1")
    assert code == 0
    assert out.splitlines()[0].startswith("smu1")
    assert "smu-1, smu_1" in out
    assert "sqrt" in out


@pytest.mark.parametrize("name", BUILTINS)
def test_info_every_builtin(capsys, name):
    code, out, err = run_cli(capsys, "info", name)
    assert code == 0
    assert err == ""
    assert actplug.info(name).formula in out


def test_info_ash_lists_trainable_parameters(capsys):
    _, out, _ = run_cli(capsys, "info", "ash")
    line = next(line for line in out.splitlines() if "trainable parameters" in line)
    assert line.split(":", 1)[1].strip() == "z, alpha"


def test_info_unknown_name_exits_2_with_close_matches(capsys):
    code, out, err = run_cli(capsys, "info", "smuu")
    assert code == 2
    assert out == ""
    line = assert_one_line_error(err, "info")
    assert "'smuu'" in line
    assert "'smu'" in line
    assert "Did you mean" in line
    assert "actplug list" in line
    # str of the error, not KeyError's quoted repr of it
    assert "error: unknown activation" in line


# ------------------------------------------------------------------------ plot
def test_plot_writes_a_png(capsys, tmp_path):
    target = tmp_path / "x.png"
    code, out, err = run_cli(capsys, "plot", "smu", "lpflu", "smu:alpha=0.01,mu=2.5", "--derivative", "-o", str(target))
    assert code == 0, err
    assert err == ""
    assert str(target) in out
    image = read_png(target)
    assert image.shape[1] > image.shape[0]  # two panels side by side


def test_plot_derivative_adds_a_panel(capsys, tmp_path):
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    assert cli.main(["plot", "smu", "-o", str(one)]) == 0
    assert cli.main(["plot", "smu", "--derivative", "-o", str(two)]) == 0
    capsys.readouterr()
    a, b = read_png(one), read_png(two)
    assert a.shape[0] == b.shape[0]
    assert b.shape[1] == 2 * a.shape[1]


def test_plot_every_builtin_with_kwargs(capsys, tmp_path):
    target = tmp_path / "all.png"
    specs = [*BUILTINS, "ash:z=1.0,alpha=2.0", "srelu:alpha=1.5,beta=0.2", "ash:dim=(0,),eps=0.0", "SMU-1:mu=0.1"]
    code, _, err = run_cli(capsys, "plot", *specs, "--derivative", "--xlim", "-2", "3", "-o", str(target))
    assert code == 0, err
    read_png(target)


def test_plot_default_output_in_working_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "plot", "gish")
    assert code == 0, err
    read_png(tmp_path / "actplug-activations.png")


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["smu", "smuu"], ["'smuu'", "'smu'"]),
        (["lpfl"], ["'lpflu'"]),
        (["smu:mue=3"], ["'mue'", "did you mean 'mu'"]),
        (["smu:alpha=big"], ["alpha"]),
        (["smu:alpha"], ["'alpha'", "NAME:key=value"]),
        (["smu:alpha=1,alpha=2"], ["'alpha'", "twice"]),
        ([":alpha=1"], ["non-empty"]),
    ],
)
def test_plot_bad_spec_exits_2_before_writing(capsys, tmp_path, specs, expected):
    target = tmp_path / "never.png"
    code, out, err = run_cli(capsys, "plot", *specs, "-o", str(target))
    assert code == 2
    assert out == ""
    line = assert_one_line_error(err, "plot")
    for text in expected:
        assert text in line
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_plot_bad_spec_keeps_an_existing_file(capsys, tmp_path):
    target = tmp_path / "keep.png"
    target.write_bytes(b"precious")
    code, _, _ = run_cli(capsys, "plot", "smuu", "-o", str(target))
    assert code == 2
    assert target.read_bytes() == b"precious"


@pytest.mark.parametrize("output", ["x.jpg", "x", "x.png.txt"])
def test_plot_needs_png_output(capsys, tmp_path, output):
    target = tmp_path / output
    code, _, err = run_cli(capsys, "plot", "smu", "-o", str(target))
    assert code == 2
    line = assert_one_line_error(err, "plot")
    assert ".png" in line
    assert not target.exists()


def test_plot_missing_folder_exits_2(capsys, tmp_path):
    target = tmp_path / "missing" / "x.png"
    code, _, err = run_cli(capsys, "plot", "smu", "-o", str(target))
    assert code == 2
    line = assert_one_line_error(err, "plot")
    assert "does not exist" in line
    assert str(target.parent) in line
    assert not target.parent.exists()


def test_plot_accepts_uppercase_png_suffix(capsys, tmp_path):
    target = tmp_path / "X.PNG"
    code, _, err = run_cli(capsys, "plot", "pflu", "-o", str(target))
    assert code == 0, err
    read_png(target)


# ------------------------------------------------------------------------ parser
def test_version(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["--version"])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out.strip() == f"actplug {actplug.__version__}"


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main([])
    assert excinfo.value.code == 2
    assert "usage: actplug" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["frobnicate"])
    assert excinfo.value.code == 2
    assert "frobnicate" in capsys.readouterr().err


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    for command in ("list", "info", "plot"):
        assert command in out


# ------------------------------------------------------------------------ parse_spec
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("smu", ("smu", {})),
        ("smu:", ("smu", {})),
        (" SMU ", ("SMU", {})),
        ("smu:alpha=0.01,mu=2.5", ("smu", {"alpha": 0.01, "mu": 2.5})),
        ("smu: alpha = 0.01 , mu = 2.5 ", ("smu", {"alpha": 0.01, "mu": 2.5})),
        ("smu:alpha=0.01,", ("smu", {"alpha": 0.01})),
        ("smu:trainable=False", ("smu", {"trainable": False})),
        ("smu:mu=3", ("smu", {"mu": 3})),
        ("smu:mu=1e6", ("smu", {"mu": 1e6})),
        ("ash:dim=(1,2),eps=0.1", ("ash", {"dim": (1, 2), "eps": 0.1})),
        ("ash:dim=[1, 2]", ("ash", {"dim": [1, 2]})),
        ("ash:dim=None", ("ash", {"dim": None})),
        ("x:mode=fast", ("x", {"mode": "fast"})),
        ("x:s='a,b',t=2", ("x", {"s": "a,b", "t": 2})),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


def test_parse_spec_types():
    _, kwargs = parse_spec("smu:alpha=1,mu=2.0")
    assert type(kwargs["alpha"]) is int
    assert type(kwargs["mu"]) is float


@pytest.mark.parametrize("spec", ["smu:alpha", "smu:=1", "smu:alpha=1,mu", "smu:alpha=1,alpha=2"])
def test_parse_spec_rejects(spec):
    with pytest.raises(ValueError):
        parse_spec(spec)


# ------------------------------------------------------------------------ plotting helpers
def test_curve_values_and_derivatives():
    from actplug.plotting import curve

    x = torch.linspace(-3, 3, 61)
    y, dy = curve(actplug.create("smu", alpha=0.0, mu=1e4), x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, torch.relu(x.double()), atol=1e-4, rtol=0)
    away = x.abs() > 0.1
    torch.testing.assert_close(dy[away], (x[away] > 0).double(), atol=1e-4, rtol=0)


def test_curve_of_ash_uses_standard_normal_statistics():
    from actplug.plotting import curve

    x = torch.linspace(-3, 3, 7)
    y, _ = curve(actplug.create("ash"), x)
    # z = 0, alpha = 1 at mu_X = 0, sigma_X = 1: x sigmoid(2x)
    torch.testing.assert_close(y, x.double() * torch.sigmoid(2 * x.double()))


def test_plot_activations_returns_path(tmp_path):
    from actplug.plotting import plot_activations

    path = plot_activations([("smu1", {}), ("ash", {"z": 0.5})], tmp_path / "p.png", derivative=True)
    assert path == tmp_path / "p.png"
    read_png(path)


# ------------------------------------------------------------------------ real entry points
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["COLUMNS"] = "80"
    return env


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=300, check=False)


def test_python_dash_m_actplug_list():
    proc = _run([sys.executable, "-m", "actplug", "list"])
    assert proc.returncode == 0, proc.stderr
    for name in [*BUILTINS, "smu-1", "smu_1"]:
        assert name in proc.stdout


def test_console_script(tmp_path):
    script = Path(sys.executable).parent / "actplug"
    assert script.exists(), script
    proc = _run([str(script), "--version"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"actplug {actplug.__version__}"

    proc = _run([str(script), "info", "smuu"])
    assert proc.returncode == 2
    assert proc.stdout == ""
    line = assert_one_line_error(proc.stderr, "info")
    assert "'smu'" in line

    target = tmp_path / "script.png"
    proc = _run([str(script), "plot", "smu", "srelu", "--derivative", "-o", str(target)])
    assert proc.returncode == 0, proc.stderr
    read_png(target)
