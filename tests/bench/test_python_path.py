"""bench/python_path.py runs whole for each request kind it measures (nothing about its speed):
proxy only, a protected route, a route with upstream-oauth fetching from the test IdP process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "python_path.py"


def idps() -> set[int]:
    """The test IdP processes running now."""
    found = set()
    for process in psutil.process_iter(["cmdline"]):
        if "idp_app.py" in " ".join(process.info["cmdline"] or []):
            found.add(process.pid)
    return found


@pytest.mark.parametrize("kind", [[], ["--oauth"], ["--upstream-oauth"]])
def test_each_request_kind_runs(kind: list[str]) -> None:
    before = idps()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--requests", "300", *kind],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"[\d.]+ us of Python per proxied request \(300 requests\)\n", done.stdout)
    assert idps() <= before  # the IdP it started is stopped
