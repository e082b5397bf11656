"""Third-party framework adapters: plugins that implement actplug_framework_modules/_imported.

Each case runs in a fresh interpreter with a throwaway package (module + *.dist-info with an
``actplug`` entry point) on PYTHONPATH, so the process-wide registry and import system are real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ADAPTER = """
import actplug

seen = []

@actplug.hookimpl
def actplug_framework_modules():
    return ["fakefw", "timm"]

@actplug.hookimpl
def actplug_framework_imported(name, module, registry):
    seen.append(name)
    if name == "fakefw":
        for info in registry:
            module.TABLE.setdefault(info.name, info.cls)
"""

FAKE_FRAMEWORK = """
TABLE = {"relu": "fakefw's own relu", "smu": "fakefw's own smu"}
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "fw_adapter.py").write_text(ADAPTER)
    (tmp_path / "fakefw.py").write_text(FAKE_FRAMEWORK)
    dist = tmp_path / "fw_adapter-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fw-adapter\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[actplug]\nfw_adapter = fw_adapter\n")
    return tmp_path


def run(site: Path, code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=180
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("order", ["actplug_first", "framework_first"])
def test_third_party_adapter_reaches_its_framework_in_either_import_order(site, order):
    first, second = ("actplug", "fakefw") if order == "actplug_first" else ("fakefw", "actplug")
    result = run(
        site,
        f"""
        import json, importlib
        importlib.import_module({first!r}); importlib.import_module({second!r})
        import actplug, fakefw, fw_adapter
        actplug.names()  # loads entry points: the adapter plugin among them
        print(json.dumps({{"table": {{k: str(v) for k, v in fakefw.TABLE.items()}}, "seen": fw_adapter.seen}}))
        """,
    )
    assert result["seen"] == ["fakefw"]
    assert result["table"]["relu"] == "fakefw's own relu"  # the framework's own names stay
    assert result["table"]["smu"] == "fakefw's own smu"
    assert result["table"]["lpflu"] == "<class 'actplug.nn.lpflu.LPFLU'>"


def test_adapter_loaded_during_a_framework_import_is_still_called_for_it(site):
    # `import timm` runs actplug's timm adapter, which loads the entry points (subscribe), which adds
    # fw_adapter while timm is still flagged as initialising: fw_adapter must be called for timm too.
    result = run(
        site,
        """
        import json, sys
        import actplug
        assert "fw_adapter" not in sys.modules
        import timm
        import fw_adapter
        print(json.dumps({"seen": fw_adapter.seen}))
        """,
    )
    assert result["seen"] == ["timm"]
