"""The README shows only what works: its Python blocks run, and its demo lines are the Makefile's."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import torch

import actplug

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_the_quick_start_framework_and_plugin_examples():
    assert len(PYTHON_BLOCKS) == 3


def test_quick_start_runs():
    namespace: dict = {}
    exec(compile(PYTHON_BLOCKS[0], "README quick start", "exec"), namespace)
    assert isinstance(namespace["act"], actplug.nn.SMU)
    assert namespace["y"].shape == (8, 64, 32, 32)
    assert float(namespace["act"].mu.detach()) == pytest.approx(2.5)


def test_framework_example_runs():
    namespace: dict = {}
    exec(compile(PYTHON_BLOCKS[1], "README frameworks", "exec"), namespace)
    acts = actplug.nn
    assert sum(isinstance(m, acts.SMU) for m in namespace["model"].modules()) > 10
    assert sum(isinstance(m, acts.ASH) for m in namespace["bert"].modules()) == 12
    assert sum(isinstance(m, acts.LPFLU) for m in namespace["net"].modules()) > 10
    smus = [m for m in namespace["seg"].modules() if isinstance(m, acts.SMU)]
    assert smus and all(float(m.mu.detach()) == 2.5 and m.alpha == 0.01 for m in smus)
    assert sum(isinstance(m, acts.SMU1) for m in namespace["pretrained"].modules()) == 9
    names = [g["name"] for g in namespace["optimizer"].param_groups]
    assert names == ["decay", "no_decay", "activation"]
    assert namespace["optimizer"].param_groups[2]["lr"] == 1e-2


def test_plugin_example_registers_through_the_hook():
    plugin = types.ModuleType("readme_plugin")
    exec(compile(PYTHON_BLOCKS[2], "README plugin example", "exec"), plugin.__dict__)
    registry = actplug.Registry(entry_point_group=None)
    assert registry.add_plugin(plugin, name="readme")
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    torch.testing.assert_close(registry.create("serf").double()(x), x * torch.erf(torch.log1p(torch.exp(x))))
    module = registry.create("SWISH-BETA", beta=1.5)
    assert isinstance(module.beta, torch.nn.Parameter)
    torch.testing.assert_close(module(x.float()), x.float() * torch.sigmoid(1.5 * x.float()))
    assert registry.info("swish_beta").plugin == "readme" and registry.info("swish_beta").parameters == ("beta",)
    assert registry.info("serf").declaration is not None  # a formula: the generated module and kernels
    assert "serf" not in actplug.names()  # a private registry leaves the global one untouched


def test_plugin_section_is_the_example_package():
    """The README's plugin code is examples/plugin/actplug_serf.py's, less its docstrings and Serf's backward."""
    source = (ROOT / "examples" / "plugin" / "actplug_serf.py").read_text()
    for line in ("def serf(x):", "return x * torch.erf(F.softplus(x))", "def swish_beta(x, beta):"):
        assert line in PYTHON_BLOCKS[2] and line in source
    assert (
        'serf = "actplug_serf"' in README
        and 'serf = "actplug_serf"' in (ROOT / "examples/plugin/pyproject.toml").read_text()
    )


def test_demo_commands_are_the_makefile_demo():
    makefile = (ROOT / "Makefile").read_text()
    demo_recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    section = README.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    readme_lines = [line for line in section.splitlines() if line.startswith(".venv/bin/actplug ")]
    assert readme_lines, "README shows the demo's commands"
    for line in readme_lines:
        command = line.removeprefix(".venv/bin/")
        assert command.replace("actplug-activations.png", "$(PLOT)") in demo_recipe.replace("$(VENV)/bin/", "")


def test_ci_runs_the_readme_test_command():
    assert "make test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))] == ["make test"]


def _finetune_commands() -> list[list[str]]:
    """Every ``actplug finetune`` command the README shows, as argv after ``actplug``."""
    import shlex

    section = README.split("## Fine-tuning detection and segmentation", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in section.split("```bash\n")[1:]]
    joined = "\n".join(blocks).replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        if "actplug finetune" not in line or line.lstrip().startswith("#"):
            continue
        argv = shlex.split(line)
        start = argv.index("finetune")
        commands.append(argv[start:])
    return commands


def test_readme_finetune_commands_are_valid_options():
    """The documented commands parse and make valid configurations (their data folders are the user's)."""
    from actplug.cli import build_parser
    from actplug.finetune import FinetuneConfig

    commands = _finetune_commands()
    assert len(commands) >= 5
    tasks = set()
    for argv in commands:
        args = build_parser().parse_args(argv)
        config = FinetuneConfig(
            task=args.task, output=args.output, act=args.act, model=args.model, act_kwargs=args.act_kwargs
        )
        tasks.add((config.task, config.model))
    assert {t for t, _ in tasks} == {"segmentation", "detection"}


def test_readme_compare_commands_are_valid_plans(tmp_path, monkeypatch):
    """The commands quoted above the README's comparison tables parse into valid plans (no run starts)."""
    import shlex

    from actplug.cli import build_parser
    from actplug.cli.cmd_compare import build_plan, command_line

    section = README.split("## Comparing activations", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0].strip() for block in section.split("```bash\n")[1:]]
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        argv = shlex.split(block.removeprefix(".venv/bin/actplug "))
        plan = build_plan(build_parser().parse_args(argv))
        assert command_line(plan) == block.removeprefix(".venv/bin/"), "the quoted command is the canonical one"
        assert plan.task.name in ("wdbc", "digits") and len(plan.seeds) == 5
        assert not (tmp_path / "runs").exists()
