"""Measuring one run: the load generator (wrk or the Python fallback), peak RSS and CPU sampling."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
SAMPLE_INTERVAL = 0.5  # seconds between RSS samples of the system under test
STATUS_SCRIPT = HERE / "status.lua"  # wrk counts the answers whose status is not the expected one
POST_SCRIPT = HERE / "post.lua"  # wrk sends a POST with a body (Express Gateway's token endpoint)
UPLOAD_SCRIPT = HERE / "upload.lua"  # wrk POSTs a body of N bytes (the 10 MB upload scenarios)

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class Request:
    """What the load generator sends on every request, and the status every answer must have."""

    url: str
    headers: tuple[str, ...] = ()  # "Name: value"
    expect: int = 200
    body: str | None = None  # a POST with this body (and `content_type`); None: a GET
    content_type: str = "application/x-www-form-urlencoded"
    timeout_s: int | None = None  # wrk --timeout (its default is 2 s: slower answers are lost)
    upload_bytes: int | None = None  # a POST with a body of this many bytes (upload.lua)
    connections: int | None = None  # wrk -c for this request (None: the generator's, 64)

    @property
    def counts_status(self) -> bool:
        """A status other than 2xx is expected: answers are counted against it, not as non-2xx."""
        return not 200 <= self.expect < 300


@dataclass
class LoadResult:
    """What the load generator reported for one measured run."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int]
    unexpected_status: int | None = None  # answers without the expected status, when counted

    @property
    def wrong_status(self) -> int:
        """Answers with a wrong status: non-2xx, or other than the expected one when counted."""
        return self.non_2xx if self.unexpected_status is None else self.unexpected_status

    @property
    def errors(self) -> int:
        return self.wrong_status + sum(self.socket_errors.values())


@dataclass
class ProcessUsage:
    """Peak RSS and CPU seconds of each process of a tree during a measured run."""

    peak_rss_mb: dict[int, float] = field(default_factory=dict)
    cpu_s: dict[int, float] = field(default_factory=dict)

    @property
    def total_peak_rss_mb(self) -> float:
        return sum(self.peak_rss_mb.values())

    @property
    def total_cpu_s(self) -> float:
        return sum(self.cpu_s.values())

    def rss_list(self) -> list[float]:
        """Peak RSS per process, in pid order (a master process comes first)."""
        return [round(self.peak_rss_mb[pid], 1) for pid in sorted(self.peak_rss_mb)]


def to_ms(text: str) -> float:
    """Convert a wrk duration such as `539.00us`, `2.15ms` or `1.02s` to milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> LoadResult:
    """Read requests/s, p50, p99 and errors from `wrk --latency` output."""

    def find(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, output, re.MULTILINE)

    rps, p50, p99 = (
        find(r"^Requests/sec:\s+([\d.]+)"),
        find(r"^\s+50%\s+(\S+)"),
        find(r"^\s+99%\s+(\S+)"),
    )
    total = find(r"^\s+(\d+) requests in ")
    if not (rps and p50 and p99 and total):
        raise ValueError(f"unexpected wrk output:\n{output}")
    non_2xx = find(r"Non-2xx or 3xx responses:\s+(\d+)")
    sock = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    unexpected = find(r"^Unexpected status: (\d+)")  # printed by status.lua
    names = ("connect", "read", "write", "timeout")
    return LoadResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=to_ms(p50.group(1)),
        p99_ms=to_ms(p99.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors={n: int(sock.group(i + 1)) if sock else 0 for i, n in enumerate(names)},
        unexpected_status=int(unexpected.group(1)) if unexpected else None,
    )


def parse_pyload(output: str) -> LoadResult:
    data = json.loads(output)
    return LoadResult(**{k: data[k] for k in LoadResult.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class LoadGenerator:
    """wrk when installed; otherwise the Python fallback (quick mode only)."""

    name: str
    threads: int
    connections: int

    def command(self, request: Request, duration: float, cpus: str | None) -> list[str]:
        pin = ["taskset", "-c", cpus] if cpus else []
        if self.name == "wrk":
            return [*pin, *self._wrk(request, duration)]
        return [*pin, *self._pyload(request, duration)]

    def _wrk(self, request: Request, duration: float) -> list[str]:
        headers = [arg for header in request.headers for arg in ("-H", header)]
        posts = request.body is not None or request.upload_bytes is not None
        if posts and request.counts_status:
            raise ValueError("wrk takes one script: a POST must expect a 2xx status")
        if request.upload_bytes is not None:
            status = ["-s", str(UPLOAD_SCRIPT)]
            script_args = ["--", str(request.upload_bytes), request.content_type]
        elif request.body is not None:
            status = ["-s", str(POST_SCRIPT)]
            script_args = ["--", request.body, request.content_type]
        else:
            status = ["-s", str(STATUS_SCRIPT)] if request.counts_status else []
            script_args = ["--", str(request.expect)] if request.counts_status else []
        seconds = f"{max(1, round(duration))}s"
        timeout = ["--timeout", f"{request.timeout_s}s"] if request.timeout_s else []
        return [
            "wrk",
            f"-t{self.threads}",
            f"-c{request.connections or self.connections}",
            f"-d{seconds}",
            "--latency",
            *timeout,
            *headers,
            *status,
            request.url,
            *script_args,
        ]

    def _pyload(self, request: Request, duration: float) -> list[str]:
        if request.body is not None or request.upload_bytes is not None:
            raise ValueError("pyload sends GETs only: a POST scenario needs wrk")
        headers = [arg for header in request.headers for arg in ("--header", header)]
        expect = ["--expect", str(request.expect)] if request.counts_status else []
        return [
            sys.executable,
            str(HERE / "pyload.py"),
            request.url,
            "--duration",
            str(duration),
            "--connections",
            str(request.connections or self.connections),
            *headers,
            *expect,
        ]

    def parse(self, output: str) -> LoadResult:
        return parse_wrk(output) if self.name == "wrk" else parse_pyload(output)


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (an empty list once it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process in `pids`, by pid."""
    result: dict[int, float] = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        result[pid] = times.user + times.system
    return result


class TreeSampler:
    """Samples the RSS of a process tree and accounts its CPU between start() and stop()."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.usage = ProcessUsage()
        self._cpu_start: dict[int, float] = {}

    def start(self) -> None:
        self._cpu_start = cpu_seconds([p.pid for p in tree(self.root_pid)])
        self.sample()

    def sample(self) -> None:
        for proc in tree(self.root_pid):
            try:
                rss = proc.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                continue
            self.usage.peak_rss_mb[proc.pid] = max(rss, self.usage.peak_rss_mb.get(proc.pid, 0.0))

    def stop(self) -> ProcessUsage:
        self.sample()
        end = cpu_seconds([p.pid for p in tree(self.root_pid)])
        for pid, seconds in end.items():
            self.usage.cpu_s[pid] = seconds - self._cpu_start.get(pid, 0.0)
        return self.usage


@dataclass
class HostCpu:
    """Whole-machine CPU counters, to tell how much CPU went to processes we did not start."""

    busy_s: float
    steal_s: float
    children_s: float  # CPU of our reaped children (the load generator) so far
    own_s: float  # CPU of this orchestrating process

    @classmethod
    def now(cls) -> HostCpu:
        times = psutil.cpu_times()
        busy = sum(getattr(times, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = resource.getrusage(resource.RUSAGE_SELF)
        return cls(
            busy,
            getattr(times, "steal", 0.0),
            children.ru_utime + children.ru_stime,
            own.ru_utime + own.ru_stime,
        )


@dataclass
class Measurement:
    """Everything recorded about one measured run of one system under test."""

    load: LoadResult
    sut: ProcessUsage
    duration_s: float
    sut_cores: float
    upstream_cores: float
    loadgen_cores: float
    foreign_cores: float  # CPU used by processes outside the benchmark, in cores
    steal_cores: float

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["sut"] = {"peak_rss_mb": self.sut.rss_list(), "cpu_s": round(self.sut.total_cpu_s, 3)}
        return data


def measure(
    generator: LoadGenerator,
    request: Request,
    duration: float,
    cpus: str | None,
    sut_pid: int,
    upstream_pid: int | None,
) -> Measurement:
    """Run the load generator once while sampling the SUT tree; account every CPU second."""
    sut, upstream = TreeSampler(sut_pid), TreeSampler(upstream_pid) if upstream_pid else None
    before = HostCpu.now()
    sut.start()
    if upstream:
        upstream.start()
    started = time.monotonic()
    output = run_load(generator, request, duration, cpus, on_tick=sut.sample)
    elapsed = time.monotonic() - started
    usage = sut.stop()
    upstream_s = upstream.stop().total_cpu_s if upstream else 0.0
    after = HostCpu.now()
    loadgen_s = after.children_s - before.children_s
    own_s = after.own_s - before.own_s
    foreign_s = (after.busy_s - before.busy_s) - usage.total_cpu_s - upstream_s - loadgen_s - own_s
    return Measurement(
        load=generator.parse(output),
        sut=usage,
        duration_s=elapsed,
        sut_cores=usage.total_cpu_s / elapsed,
        upstream_cores=upstream_s / elapsed,
        loadgen_cores=loadgen_s / elapsed,
        foreign_cores=max(0.0, foreign_s) / elapsed,
        steal_cores=(after.steal_s - before.steal_s) / elapsed,
    )


def wait_idle(pid: int, below: float = 0.1, interval: float = 0.2, timeout: float = 30.0) -> float:
    """Wait until the process tree of `pid` uses less than `below` cores over `interval` (work
    queued during the warm-up, such as Express Gateway's bcrypt checks, must not run into the
    measured run); at most `timeout` seconds. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = sum(cpu_seconds([p.pid for p in tree(pid)]).values())
        time.sleep(interval)
        if sum(cpu_seconds([p.pid for p in tree(pid)]).values()) - before < below * interval:
            break
    return time.monotonic() - started


def run_load(
    generator: LoadGenerator,
    request: Request,
    duration: float,
    cpus: str | None,
    on_tick: Callable[[], None] | None = None,
) -> str:
    """Run the load generator to completion (killed by pid past its time) and return its stdout."""
    command = generator.command(request, duration, cpus)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + duration + 30
    while True:
        try:
            proc.wait(SAMPLE_INTERVAL)
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                raise RuntimeError(
                    f"{generator.name} did not finish in {duration + 30:.0f}s"
                ) from None
            if on_tick:
                on_tick()
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {proc.returncode}: {err.decode()}")
    return out.decode()
