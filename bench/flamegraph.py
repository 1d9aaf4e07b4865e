"""Where a request's CPU goes: user and kernel time per request, and flame graphs of Bastion.

For each config (bench.py's scenarios; by default nginx as a proxy and Bastion proxying, on a
protected route with a valid token and with a forged one (the 401 path), and with
upstream-oauth), pinned as `bench/run` pins it (the SUT on core 0, the upstream, the load
generator and the IdP on core 1), with wrk at 64 connections:

1. a measured window: the SUT's user and kernel CPU time (every process of its tree) and
   the TCP segments the machine sent (/proc/net/snmp), each divided by the requests wrk counted.
   The kernel's share of a proxy is its two reads and two writes on loopback sockets; this shows
   whether a gap to nginx is in that share or in the gateway's own (user) code;
2. for Bastion, a second window under the same load: a py-spy flame graph with native frames
   (the compiled hot path, httptools/llhttp and uvloop show by their C names), written to
   bench/flamegraph-<config>.svg. py-spy stops the process to take each sample, which lands more
   often in a system call than the time spent there: read the kernel's share from the table, and
   the graph for how the user time divides.

Usage (needs wrk, nginx and py-spy: `pip install py-spy`; root or CAP_SYS_PTRACE):

    .venv/bin/python bench/flamegraph.py [--configs nginx-proxy,bastion-1w] [--seconds 10]

The table goes to stdout and to bench/out/flamegraph-<time>.md. About 30 s per config.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import psutil
from measure import HostCpu, LoadGenerator, Request, run_load, tree, wait_idle
from systems import Server, find_nginx, idp_set_expires_in, start_idp

from bench import SCENARIOS, Placement, Scenario, prepare, start_sut, start_upstream

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
DEFAULT_CONFIGS = (
    "nginx-proxy", "bastion-1w", "bastion-oauth-valid", "bastion-oauth-invalid",
    "bastion-upstream-oauth",
)  # fmt: skip
WARMUP_S = 2.0
SAMPLE_RATE = 250  # py-spy samples per second


@dataclass(frozen=True)
class Split:
    """One config's measured window, per request."""

    config: str
    requests_per_s: float
    user_us: float
    kernel_us: float
    segments: float  # TCP segments sent on the machine (both directions of both hops)
    steal_cores: float  # the hypervisor's steal over the window: above ~0.1, times are inflated
    flamegraph: Path | None = None

    def row(self) -> str:
        graph = self.flamegraph.name if self.flamegraph else ""
        return (
            f"| {self.config} | {self.requests_per_s:,.0f} | {self.user_us:.1f} | "
            f"{self.kernel_us:.1f} | {self.user_us + self.kernel_us:.1f} | {self.segments:.2f} "
            f"| {self.steal_cores:.2f} | {graph} |"
        )


def py_spy() -> str | None:
    """py-spy beside this interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def cpu_times(root_pid: int) -> tuple[float, float]:
    """User and kernel CPU seconds of the process tree of `root_pid` (psutil, as measure.py)."""
    user = kernel = 0.0
    for proc in tree(root_pid):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue  # gone since tree() listed it
        user, kernel = user + times.user, kernel + times.system
    return user, kernel


def segments_sent() -> int:
    """TCP segments the machine has sent (/proc/net/snmp Tcp: OutSegs)."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = (row for row in rows if row[0] == "Tcp:")
    return int(values[names.index("OutSegs")])


def measure_split(
    config: str, sut: Server, request: Request, seconds: float, generator: LoadGenerator, load: str
) -> Split:
    user, kernel = cpu_times(sut.pid)
    sent, host = segments_sent(), HostCpu.now()
    output = run_load(generator, request, seconds, load)
    user_after, kernel_after = cpu_times(sut.pid)
    steal = HostCpu.now().steal_s - host.steal_s
    load_result = generator.parse(output)  # ValueError on output that is not wrk's
    requests = load_result.requests
    if requests == 0:
        raise RuntimeError(f"{config}: wrk completed no request:\n{output}")
    per_request_us = 1e6 / requests
    return Split(
        config,
        load_result.requests_per_s,
        (user_after - user) * per_request_us,
        (kernel_after - kernel) * per_request_us,
        (segments_sent() - sent) / requests,
        steal / seconds,
    )


def record_flamegraph(
    spy: str, sut: Server, request: Request, seconds: float, generator: LoadGenerator, load: str,
    out: Path,
) -> None:  # fmt: skip
    """py-spy with native frames on the serving process while wrk sends `request`."""
    worker = sut.pid  # `bastion run --workers 1` execs into its one worker
    command = [
        spy, "record", "--pid", str(worker), "--native", "--rate", str(SAMPLE_RATE),
        "--duration", str(int(seconds)), "--format", "flamegraph", "--output", str(out),
    ]  # fmt: skip
    loader = threading.Thread(target=run_load, args=(generator, request, seconds + 2, load))
    loader.start()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        loader.join()
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def profile(
    scenarios: list[Scenario], seconds: float, out_dir: Path, spy: str | None
) -> list[Split]:
    placement = Placement.detect()
    generator = LoadGenerator("wrk", threads=1, connections=64)
    load = placement.load or ""
    tmp = Path(tempfile.mkdtemp(prefix="bastion-flamegraph-"))
    upstream = start_upstream(tmp, placement, use_nginx=True)
    idp: Server | None = None
    splits: list[Split] = []
    try:
        if any(s.upstream_oauth for s in scenarios):
            idp = start_idp(tmp, placement.load)
        for index, scenario in enumerate(scenarios):  # a config may repeat: each its own dir
            if idp is not None and scenario.upstream_oauth:
                idp_set_expires_in(idp, scenario.idp_expires_in)
            sut = start_sut(scenario, tmp / str(index), placement, upstream, idp)
            try:
                request = prepare(scenario, sut, idp)
                run_load(generator, request, WARMUP_S, load)
                wait_idle(sut.pid)
                split = measure_split(scenario.name, sut, request, seconds, generator, load)
                if scenario.system == "bastion" and scenario.workers == 1 and spy is not None:
                    graph = out_dir / f"flamegraph-{scenario.name}.svg"
                    record_flamegraph(spy, sut, request, seconds, generator, load, graph)
                    split = replace(split, flamegraph=graph)
                splits.append(split)
                print(split.row(), file=sys.stderr, flush=True)
            finally:
                sut.stop()
    finally:
        if idp is not None:
            idp.stop()
        upstream.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return splits


def table(splits: list[Split], seconds: float) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Per request, {seconds:g} s of wrk -c64 each ({stamp}); the SUT on core 0, the upstream",
        "and wrk on core 1. Kernel: the SUT's system time (its socket reads and writes, and the",
        "loopback delivery they run); segments: TCP segments the machine sent; steal: cores the",
        "hypervisor took (the times of a window with steal above ~0.1 are inflated).",
        "",
        "| config | req/s | user µs | kernel µs | CPU µs | segments | steal | flame graph |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *(split.row() for split in splits),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help="bench.py configs")
    parser.add_argument("--seconds", type=float, default=10.0, help="each window (10)")
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where the SVGs go (bench/)")
    parser.add_argument("--no-flamegraph", action="store_true", help="the table only")
    args = parser.parse_args(argv)
    by_name = {s.name: s for s in SCENARIOS}
    names = args.configs.split(",")
    unknown = [n for n in names if n not in by_name]
    if unknown:
        parser.error(f"unknown config(s) {unknown}; choose from {list(by_name)}")
    chosen = [by_name[n] for n in names]
    if bad := [s.name for s in chosen if s.system == "express-gateway" or s.transfer]:
        parser.error(f"{bad}: only the nginx and Bastion request configs are profiled here")
    if not 1 <= args.seconds <= 60:
        parser.error("--seconds must be 1..60")
    tools = (("wrk", shutil.which("wrk")), ("nginx", find_nginx()))
    missing = [name for name, found in tools if not found]
    if missing:
        print(f"flamegraph: {' and '.join(missing)} not installed", file=sys.stderr)
        return 2
    spy = None if args.no_flamegraph else py_spy()
    if spy is None and not args.no_flamegraph:
        print("flamegraph: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    splits = profile(chosen, args.seconds, args.out_dir, spy)
    text = table(splits, args.seconds)
    OUT.mkdir(exist_ok=True)
    report = OUT / f"flamegraph-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.md"
    report.write_text(text)
    print(text)
    print(f"flamegraph: table in {report}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
