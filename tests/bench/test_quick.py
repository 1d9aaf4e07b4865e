"""`bench/run --quick` works: a smoke test of the benchmark scripts, nothing asserted on speed."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_runs_and_every_request_succeeds() -> None:
    done = subprocess.run(
        [str(ROOT / "bench" / "run"), "--quick"], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
