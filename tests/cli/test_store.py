"""`bastion store check`: backend, version, round trip; exit 1 when unreachable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.e2e.procs import free_port


def store_check(tmp_path: Path, store: str, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "bastion.yaml"
    config.write_text(yaml.safe_dump({"store": store}))
    return subprocess.run(
        [sys.executable, "-m", "bastion", "store", "check", "-c", str(config), *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip


def test_sqlite_store_check_reports_backend_version_and_round_trip(tmp_path: Path) -> None:
    result = store_check(tmp_path, f"sqlite:///{tmp_path}/b.db", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == "sqlite"
    assert report["version"].count(".") >= 1
    assert report["round_trip_ms"] >= 0


def test_unreachable_redis_exits_1_without_traceback_or_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = store_check(tmp_path, f"redis://:s3cretpass@127.0.0.1:{port}/0")
    assert result.returncode == 1
    assert "unreachable" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "s3cretpass" not in result.stderr + result.stdout
