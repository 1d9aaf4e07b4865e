"""`bastion validate -c FILE` (and `bastion run` on a bad file): every error with its field path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.procs import free_port, stop

PROBLEM_LINE = re.compile(r"^[A-Za-z_][\w.\[\]-]*: ")
VALID = {
    "listen": "127.0.0.1:8080",
    "services": [{"name": "backend", "url": "http://127.0.0.1:9000"}],
    "routes": [{"name": "all", "path": "/", "service": "backend"}],
}


def bastion(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def write(tmp_path: Path, config: object, name: str = "bastion.yaml") -> Path:
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    return path


def output_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


def test_valid_config(tmp_path: Path) -> None:
    result = bastion("validate", "-c", str(write(tmp_path, VALID)), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in (result.stdout + result.stderr).lower()
    assert "invalid" not in (result.stdout + result.stderr).lower()


def test_env_interpolation(tmp_path: Path) -> None:
    config = {**VALID, "admin": {"listen": "127.0.0.1:9080", "token": "${ADMIN_TOKEN_FOR_TEST}"}}
    path = write(tmp_path, config)
    env = {"ADMIN_TOKEN_FOR_TEST": "x" * 20}
    assert bastion("validate", "-c", str(path), cwd=tmp_path, env=env).returncode == 0
    short = bastion(
        "validate", "-c", str(path), cwd=tmp_path, env={"ADMIN_TOKEN_FOR_TEST": "short"}
    )
    assert short.returncode == 1
    assert any(line.startswith("admin.token: ") for line in output_lines(short)), short.stdout


INVALID = {
    "listen": "127.0.0.1:8080",
    "limitz": {"max_request_body": 10},
    "services": [
        {"name": "backend", "url": "http://127.0.0.1:9000"},
        {"name": "other"},
    ],
    "routes": [
        {"name": "a", "path": "/", "service": "bakend"},
        {"name": "b", "path": "/b", "path_type": "glob", "service": "backend", "servce": "x"},
    ],
}


def test_every_error_with_its_path(tmp_path: Path) -> None:
    result = bastion("validate", "-c", str(write(tmp_path, INVALID)), cwd=tmp_path)
    assert result.returncode == 1
    assert_no_traceback(result)
    lines = output_lines(result)
    assert "limitz: unknown key (did you mean 'limits'?)" in lines
    assert "services[1].url: required" in lines
    # "every error": the cross-field checks are reported beside the schema errors
    assert "routes[0].service: unknown service 'bakend' (did you mean 'backend'?)" in lines
    assert "routes[1].servce: unknown key (did you mean 'service'?)" in lines
    assert any(line.startswith("routes[1].path_type: ") for line in lines), lines


def test_cross_check_errors(tmp_path: Path) -> None:
    config = {
        **VALID,
        "routes": [
            {"name": "a", "path": "/", "service": "bakend"},
            {"name": "a", "path": "/x", "service": "backend"},
        ],
    }
    result = bastion("validate", "-c", str(write(tmp_path, config)), cwd=tmp_path)
    assert result.returncode == 1
    assert_no_traceback(result)
    lines = output_lines(result)
    assert "routes[0].service: unknown service 'bakend' (did you mean 'backend'?)" in lines
    assert any(line.startswith("routes[1].name: ") for line in lines), lines


@pytest.mark.parametrize(
    "text",
    ["listen: [unclosed\n", "- a list\n- at the top\n", "a: 1\na: 2\n", "\x00binary"],
    ids=["yaml-syntax", "not-a-mapping", "duplicate-key", "nul"],
)
def test_unparseable_file(tmp_path: Path, text: str) -> None:
    result = bastion("validate", "-c", str(write(tmp_path, text)), cwd=tmp_path)
    assert result.returncode == 1
    assert_no_traceback(result)
    assert output_lines(result)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = bastion("validate", "-c", str(missing), cwd=tmp_path)
    assert result.returncode == 1
    assert_no_traceback(result)
    lines = output_lines(result)
    assert len(lines) == 1, lines
    assert "nope.yaml" in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["validate"],
        ["validate", "-c"],
        ["validate", "--bogus", "-c", "x.yaml"],
        ["run"],
        ["run", "-c", "x.yaml", "--workers", "many"],
        ["no-such-command"],
    ],
    ids=[
        "missing-c",
        "c-without-value",
        "unknown-option",
        "run-missing-c",
        "bad-workers",
        "command",
    ],
)
def test_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    write(tmp_path, VALID, "x.yaml")
    result = bastion(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert_no_traceback(result)
    out = (result.stdout + result.stderr).lower()
    # SPEC §1: the first line says what is wrong; usage may follow (click omits it for an
    # option given without its value)
    assert "error" in out.strip().splitlines()[0] or "usage" in out


def test_console_script() -> None:
    script = Path(sys.executable).with_name("bastion")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("run", "validate", "demo"):
        assert command in result.stdout


def test_run_refuses_an_invalid_file(tmp_path: Path) -> None:
    port = free_port()
    config = {**INVALID, "listen": f"127.0.0.1:{port}"}
    path = write(tmp_path, config)
    expected = [
        line
        for line in output_lines(bastion("validate", "-c", str(path), cwd=tmp_path))
        if PROBLEM_LINE.match(line)
    ]
    assert len(expected) >= 4, expected
    proc = subprocess.Popen(
        [sys.executable, "-m", "bastion", "run", "-c", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 1
    assert "Traceback" not in out
    lines = [line.strip() for line in out.splitlines()]
    for line in expected:
        assert line in lines, (line, out)
