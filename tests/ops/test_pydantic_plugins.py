"""ops/pydantic_plugins.py: no pydantic plugin discovery (nor importlib.metadata) in Bastion's
processes unless PYDANTIC_DISABLE_PLUGINS is set; set, pydantic discovers and runs them as usual.
Each case is a fresh interpreter, with a real plugin installed by its entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = """
access_log: false
services: [{name: up, url: "http://127.0.0.1:2"}]
routes: [{name: all, path: /, service: up}]
"""
PROBE = """
import sys
import bastion
from bastion.config import load_config
from bastion.errors import ConfigError
load_config(sys.argv[1])
try:
    load_config(sys.argv[2])
except ConfigError as exc:
    print("REFUSED", exc.problems[0][0])
print("METADATA", "importlib.metadata" in sys.modules)
print("LOADER", type(sys.modules["pydantic.plugin._loader"]).__name__)
"""
PLUGIN = """
class Plugin:
    def new_schema_validator(self, schema, schema_type, path, kind, config, settings):
        print("PLUGIN", schema_type.__name__, flush=True)
        return None, None, None

plugin = Plugin()
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory holding a pydantic plugin, found through its `pydantic` entry point."""
    (tmp_path / "probe_plugin.py").write_text(PLUGIN)
    info = tmp_path / "probe_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[pydantic]\nprobe = probe_plugin:plugin\n")
    (tmp_path / "good.yaml").write_text(CONFIG)
    (tmp_path / "bad.yaml").write_text(CONFIG.replace("path: /", "path: 5"))
    return tmp_path


def probe(site: Path, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    environ["PYTHONPATH"] = os.pathsep.join([str(site), *sys.path])
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(site / "good.yaml"), str(site / "bad.yaml")],
        env={**environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_unset_no_plugin_is_discovered_and_configs_validate_as_ever(site: Path) -> None:
    out = probe(site)
    assert "PLUGIN" not in out
    assert "METADATA False" in out and "LOADER _NoPluginLoader" in out
    assert "REFUSED routes[0].path" in out


@pytest.mark.parametrize("value", ["", "other"])
def test_set_pydantic_discovers_and_runs_its_plugins(site: Path, value: str) -> None:
    out = probe(site, PYDANTIC_DISABLE_PLUGINS=value)
    assert "PLUGIN" in out and "LOADER module" in out
    assert "REFUSED routes[0].path" in out


@pytest.mark.parametrize("value", ["1", "__all__", "probe"])
def test_set_to_disable_pydantic_honours_it(site: Path, value: str) -> None:
    out = probe(site, PYDANTIC_DISABLE_PLUGINS=value)
    assert "PLUGIN" not in out and "LOADER module" in out
