"""gateway/hot_path.py: the compiled build runs only when complete and newer than its source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.gateway import hot_path
from tests.e2e.procs import free_port, gateway_config, run_gateway

SUFFIX = hot_path.SUFFIX


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for gateway/: the sources of every module, no build yet."""
    monkeypatch.setattr(hot_path, "PACKAGE_ROOT", tmp_path)
    monkeypatch.delenv("BASTION_PURE_PYTHON", raising=False)
    past = time.time() - 100
    for module in hot_path.MODULES:
        source = hot_path.source_path(module)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("")
        os.utime(source, (past, past))
    return tmp_path


def build(folder: Path, skip: str | None = None) -> None:
    for path in hot_path.extension_paths():
        if skip is None or not path.name.startswith(skip):
            path.write_bytes(b"")


def test_no_build_runs_the_source(folder: Path) -> None:
    assert hot_path.stale_reason() == "not built (scripts/build_hot_path.py)"


def test_a_complete_fresh_build_runs(folder: Path) -> None:
    build(folder)
    assert hot_path.stale_reason() is None
    group = hot_path.extension_paths()[-1]
    assert group == folder / "gateway" / f"_hot_path__mypyc{SUFFIX}"


def test_a_missing_part_runs_the_source(folder: Path) -> None:
    build(folder, skip="_hot_path__mypyc")
    assert hot_path.stale_reason() == "the build is incomplete"


def test_a_source_newer_than_its_build_runs_the_source(folder: Path) -> None:
    build(folder)
    future = time.time() + 10
    os.utime(folder / "gateway" / "exchange.py", (future, future))
    assert hot_path.stale_reason() == "gateway/exchange.py changed since the build"


def test_the_override_runs_the_source(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(folder)
    monkeypatch.setenv("BASTION_PURE_PYTHON", "1")
    assert hot_path.stale_reason() == "BASTION_PURE_PYTHON=1"


def module_files(env: dict[str, str]) -> dict[str, str]:
    code = (
        "import json, importlib\n"
        "from bastion.gateway import hot_path\n"
        "files = {n: importlib.import_module('bastion.' + n).__file__"
        " for n in hot_path.MODULES}\n"
        "print(json.dumps({'mode': hot_path.MODE, **files}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


def test_the_source_is_imported_when_asked_for() -> None:
    files = module_files({"BASTION_PURE_PYTHON": "1"})
    assert files.pop("mode") == "source"
    assert all(path.endswith(".py") for path in files.values()), files


def test_a_module_outside_the_gateway_imported_first_follows_the_choice() -> None:
    # ops.metrics is compiled with the group, and imported by code that never touches the
    # gateway: the choice is made when bastion itself is imported, before any of its modules
    code = (
        "import bastion.ops.metrics as m, bastion.gateway.hot_path as h; print(h.MODE, m.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "BASTION_PURE_PYTHON": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    mode, path = done.stdout.split()
    assert (mode, Path(path).name) == ("source", "metrics.py")


@pytest.mark.skipif(hot_path.stale_reason() is not None, reason="the hot path is not built")
def test_the_build_is_imported_when_current() -> None:
    files = module_files({"BASTION_PURE_PYTHON": "0"})
    assert files.pop("mode") == "compiled"
    assert all(path.endswith(SUFFIX) for path in files.values()), files


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="CI tests what ships")
def test_ci_tests_the_compiled_hot_path() -> None:
    # scripts/test builds it; a failed build must not leave CI testing only the source
    assert os.environ.get("BASTION_PURE_PYTHON") == "1" or hot_path.MODE == hot_path.COMPILED, (
        hot_path.WHY_SOURCE
    )


def test_the_gateway_says_which_build_runs(tmp_path: Path) -> None:
    config = gateway_config(free_port(), free_port())
    with run_gateway(tmp_path, config, env={"BASTION_PURE_PYTHON": "1"}) as gateway:
        deadline = time.monotonic() + 10
        while not any('"listening"' in line for line in gateway.log_lines()):
            assert time.monotonic() < deadline, gateway.log_lines()
            time.sleep(0.05)
        line = next(json.loads(x) for x in gateway.log_lines() if '"listening"' in x)
    assert line["hot_path"] == "source"
    assert line["why"] == "BASTION_PURE_PYTHON=1"
