"""Instructions per proxied request, counted by valgrind: a figure the machine's noise cannot move.

Runs `python_path.py` under callgrind at two request counts; the difference, divided by the
difference in requests, is what one request costs, start-up and warm-up cancelled out. Timings
on these VMs move 30 % from one minute to the next; this count repeats to within 0.2 %, so a
change of 1 % can be seen (bench/PROFILE.md). With --top it also lists the C functions (Python's,
llhttp's, the compiled hot path's) that take the most instructions per request. Each run has one
hash seed, and with --oauth (--upstream-oauth) the revocation (purge) list is polled once an
hour, not once a second (python_path.py --poll-interval), so the count is of the cached-token
path. Usage:

    .venv/bin/python bench/instructions.py [--oauth | --upstream-oauth] [--access-log] [--top 30]

Needs valgrind (`apt-get install -y valgrind`); about a minute per run on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
FEW, MANY = 2000, 6000  # requests; python_path warms up with 2000 more first
_TOTAL = re.compile(r"^\s*([\d,]+) \(.*\)\s+PROGRAM TOTALS", re.M)
_FUNCTION = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+(\S.*?)(?: \[.*\])?$", re.M)


def callgrind(requests: int, extra: list[str], out: Path) -> None:
    command = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        sys.executable, str(HERE / "python_path.py"), "--requests", str(requests), *extra,
    ]  # fmt: skip
    # one hash seed: dict and set probes then repeat from run to run
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(command, check=True, capture_output=True, env=env)


def by_function(out: Path) -> tuple[int, dict[str, int]]:
    """Total instructions, and each function's own (exclusive) count."""
    text = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--threshold=100", str(out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    total = _TOTAL.search(text)
    assert total, text[:500]
    functions: dict[str, int] = {}
    for count, name in _FUNCTION.findall(text.split("file:function", 1)[-1]):
        name = re.sub(r"^.*?/Python-3[^/]*/", "", name)  # CPython's build folder
        functions[name] = functions.get(name, 0) + int(count.replace(",", ""))
    return int(total[1].replace(",", "")), functions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    plugin = parser.add_mutually_exclusive_group()
    plugin.add_argument("--oauth", action="store_true", help="a route protected by oauth")
    plugin.add_argument(
        "--upstream-oauth", action="store_true", help="a route with upstream-oauth, token cached"
    )
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument("--top", type=int, default=0, help="list the N costliest functions")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        print(
            "instructions: valgrind is not installed (apt-get install -y valgrind)", file=sys.stderr
        )
        return 2
    flags = (
        ("--oauth", args.oauth),
        ("--upstream-oauth", args.upstream_oauth),
        ("--access-log", args.access_log),
    )
    extra = [flag for flag, on in flags if on]
    if args.oauth or args.upstream_oauth:  # a store poll once a second: a few hundred requests
        extra += ["--poll-interval", "3600"]
    with tempfile.TemporaryDirectory(prefix="bastion-callgrind-") as temp:
        outs = {n: Path(temp) / f"callgrind.{n}" for n in (FEW, MANY)}
        with ThreadPoolExecutor(2) as pool:  # one valgrind per core
            list(pool.map(lambda n: callgrind(n, extra, outs[n]), outs))
        (few_total, few), (many_total, many) = by_function(outs[FEW]), by_function(outs[MANY])
    per_request = (many_total - few_total) / (MANY - FEW)
    shown = " ".join(flag for flag in extra if flag.startswith("--") and flag != "--poll-interval")
    print(f"{per_request:,.0f} instructions per request ({shown or 'proxy only'})")
    if args.top:
        costs = {name: (many.get(name, 0) - few.get(name, 0)) / (MANY - FEW) for name in many}
        for name, cost in sorted(costs.items(), key=lambda item: -item[1])[: args.top]:
            print(f"{cost:9,.0f}  {cost / per_request:6.1%}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
