"""bench/memory.py: a worker's RSS by mapping, and what each import group adds. The script runs
whole (three real workers, the test IdP, a fresh interpreter); nothing is asserted about sizes
beyond their consistency."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import memory  # noqa: E402


def test_mapped_files_are_named_for_a_reader() -> None:
    site = "/x/.venv/lib/python3.11/site-packages"
    assert memory.mapping_name("") == memory.mapping_name("[heap]")
    assert memory.mapping_name("/x/lib/libpython3.11.so.1.0").startswith("libpython")
    assert memory.mapping_name(f"{site}/cryptography/hazmat/_rust.abi3.so") == (
        "cryptography (extension)"
    )
    assert memory.mapping_name("/usr/lib/x86_64-linux-gnu/libcrypto.so.3") == "libcrypto"
    assert memory.mapping_name("/w/src/bastion/gateway/_hot.so") == "Bastion's compiled modules"
    assert memory.mapping_name("[stack]").startswith("other")


def test_a_process_maps_add_up_to_its_rss() -> None:
    sizes = memory.worker_maps(os.getpid())
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    assert sizes["anonymous: Python objects, malloc"] > 0
    assert abs(sum(sizes.values()) - rss) < rss * 0.1  # read a moment apart


def test_the_script_measures_three_workers_and_the_imports() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "memory.py")], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "| mapped | proxy only (MiB) | oauth (MiB) | upstream-oauth (MiB) |" in out
    totals = re.search(
        r"\| \*\*RSS\*\* \| \*\*([\d.]+)\*\* \| \*\*([\d.]+)\*\* \| \*\*([\d.]+)", out
    )
    assert totals is not None
    proxy, oauth, upstream = (float(v) for v in totals.groups())
    assert 0 < proxy < oauth and proxy < upstream  # each plugin adds its libraries
    rows = re.findall(r"^\| ([^|]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert [r[0] for r in rows] == ["the interpreter", *(g[0] for g in memory.GROUPS)]
    added = sum(float(r[1]) for r in rows)
    assert abs(added - float(rows[-1][2])) < 0.1 * len(rows)  # rounding of each row
