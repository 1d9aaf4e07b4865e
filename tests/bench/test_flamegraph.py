"""bench/flamegraph.py: user and kernel CPU per request, and a py-spy flame graph of a Bastion
worker under wrk. The script runs whole (nginx as the upstream and as a proxy, Bastion, wrk,
py-spy); nothing is asserted about speed beyond the figures being measured."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import flamegraph  # noqa: E402


def test_own_process_times_and_machine_segments_are_read() -> None:
    user, kernel = flamegraph.cpu_times(os.getpid())
    assert user > 0 and kernel >= 0  # this interpreter has run Python
    assert flamegraph.segments_sent() >= 0


def test_a_row_says_every_figure() -> None:
    split = flamegraph.Split("bastion-1w", 18000.4, 24.06, 28.04, 4.021, 0.031, Path("/x/f.svg"))
    assert split.row() == "| bastion-1w | 18,000 | 24.1 | 28.0 | 52.1 | 4.02 | 0.03 | f.svg |"


def test_the_script_splits_cpu_and_draws_bastion(tmp_path: Path) -> None:
    command = [
        sys.executable, str(BENCH / "flamegraph.py"), "--configs", "nginx-proxy,bastion-1w",
        "--seconds", "1", "--out-dir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = dict(re.findall(r"^\| (nginx-proxy|bastion-1w) \| ([\d,]+) \|", done.stdout, re.M))
    assert set(rows) == {"nginx-proxy", "bastion-1w"}
    assert all(int(rate.replace(",", "")) > 0 for rate in rows.values())
    graph = tmp_path / "flamegraph-bastion-1w.svg"
    assert "flamegraph-bastion-1w.svg" in done.stdout and graph.exists()
    assert not (tmp_path / "flamegraph-nginx-proxy.svg").exists()  # nginx is not Python
    svg = graph.read_text()
    # native frames: the compiled hot path and llhttp by their C names, under the worker's main
    assert "worker_main" in svg and "CPyDef_" in svg and "llhttp" in svg


def test_unknown_and_unprofiled_configs_are_refused() -> None:
    for configs, says in (("bastion-9w", "unknown config"), ("eg-proxy", "only the nginx")):
        done = subprocess.run(
            [sys.executable, str(BENCH / "flamegraph.py"), "--configs", configs],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and says in done.stderr, done.stderr
