"""Bastion's benchmark: Bastion vs nginx as a reverse proxy, interleaved rounds on loopback.

Run through `bench/run` (see bench/README.md). Every round starts each system under test (SUT) on
core 0, sends one sanity GET through it, warms it up, measures it with wrk on core 1 and stops it
by pid. The upstream (nginx, core 1) runs for the whole benchmark. The oauth scenarios (issue 5)
run Bastion with the oauth plugin: a valid token, a wrongly signed one (401), token issuance. The
upstream-oauth scenarios (issue 6) run it with the upstream-oauth plugin fetching its token from
the test IdP (tests/e2e/idp_app.py, core 1, started once when a scenario needs it), and count the
IdP's token requests during each measured run. The Express Gateway scenarios (issue 7) run the
Node peer (1.16.11 on node 20, installed by bench/run into a cache folder) pinned like `bastion-1w`:
proxying only, its oauth2 policy with a valid JWT, an invalid one (401), and token issuance.
The 10 MB scenarios (issue 7) move a 10 MiB download (`GET /big`, a file the upstream serves)
or a 10 MiB upload (`POST /upload`, which the upstream reads whole) through nginx as a proxy,
Bastion 1 worker and Express Gateway (proxy policy only), at 8 connections.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import report
from measure import HostCpu, LoadGenerator, Measurement, Request, measure, run_load, wait_idle
from pyupstream import BODY
from systems import (
    BIG_MAX_BODY,
    BIG_PATH,
    BIG_SIZE,
    EG_FORM,
    EG_TOKEN_PATH,
    EG_UNAUTHORIZED_BODY,
    INVALID_TOKEN_BODY,
    TOKEN_PATH,
    UPLOAD_PATH,
    EgServer,
    Server,
    StopResult,
    eg_issue_token,
    eg_missing,
    eg_provision,
    find_nginx,
    forge,
    idp_set_expires_in,
    idp_token_requests,
    issue_token,
    oauth_plugin,
    start_bastion,
    start_eg,
    start_idp,
    start_nginx,
    start_pyupstream,
    upstream_oauth_plugin,
)

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS = HERE / "RESULTS.md"
MEASURED_PATH = "/bench?x=1"
EG_WRK_TIMEOUT = 30  # s: Express Gateway answers token requests seconds late at 64 connections
BUSY_WARNING = 0.3  # cores already busy before the benchmark that deserve a warning
EAGERLY_EXPIRE_DEFAULT = 5  # the upstream-oauth plugin's cache.eagerly_expire default (Kong's)
BIG_CONNECTIONS = 8  # wrk -c of the 10 MB scenarios: 8 x 10 MiB in flight, not 64
BIG_WRK_TIMEOUT = 30  # s: wrk --timeout of the 10 MB scenarios (a slow gateway takes > 2 s each)

System = Literal["nginx-direct", "nginx-proxy", "bastion", "express-gateway"]
Token = Literal["valid", "invalid"]
Transfer = Literal["download", "upload"]


@dataclass(frozen=True)
class Scenario:
    """One system under test: what runs, with how many worker processes, and what it is sent."""

    name: str
    system: System
    workers: int = 1
    access_log: bool = False
    oauth: bool = False  # Bastion with the oauth plugin on every route (systems.oauth_plugin)
    token: Token | None = None  # every request carries `Authorization: Bearer` with this token
    path: str = MEASURED_PATH
    expect: int = 200  # the status every answer must have
    upstream_oauth: bool = False  # the upstream-oauth plugin, its token from the test IdP
    idp_expires_in: int = 3600  # the IdP's `expires_in` for this scenario's tokens
    eagerly_expire: int | None = None  # upstream-oauth cache.eagerly_expire (None: default 5)
    oauth2: bool = False  # Express Gateway's oauth2 policy with JWT access tokens on the pipeline
    issue: bool = False  # the load POSTs client_credentials to Express Gateway's /oauth2/token
    transfer: Transfer | None = None  # a 10 MiB download (GET /big) or upload (POST /upload)
    source: bool = False  # Bastion's hot path from its Python source (BASTION_PURE_PYTHON=1)

    def plugins(self, idp_port: int | None) -> dict[str, object] | None:
        """The scenario's `plugins:` section (None: proxying only)."""
        if self.oauth:
            return oauth_plugin()
        if self.upstream_oauth:
            assert idp_port is not None, "the upstream-oauth scenarios need the IdP"
            return upstream_oauth_plugin(idp_port, self.eagerly_expire)
        return None

    @property
    def token_ttl(self) -> int:
        """Seconds the plugin keeps a token: expires_in - eagerly_expire, at least 1."""
        eager = EAGERLY_EXPIRE_DEFAULT if self.eagerly_expire is None else self.eagerly_expire
        return max(1, self.idp_expires_in - eager)


# The order is the order in a round (rotated: each round starts one unit later).
SCENARIOS = (
    Scenario("nginx-direct", "nginx-direct"),
    Scenario("nginx-proxy", "nginx-proxy"),
    Scenario("bastion-1w", "bastion"),
    Scenario("bastion-oauth-valid", "bastion", oauth=True, token="valid"),
    Scenario("bastion-1w-log", "bastion", access_log=True),
    Scenario("bastion-1w-source", "bastion", source=True),
    Scenario("nginx-proxy-2w", "nginx-proxy", workers=2),
    Scenario("bastion-2w", "bastion", workers=2),
    Scenario("bastion-oauth-invalid", "bastion", oauth=True, token="invalid", expect=401),
    Scenario("bastion-oauth-issue", "bastion", oauth=True, path=TOKEN_PATH),
    Scenario("bastion-upstream-oauth", "bastion", upstream_oauth=True),
    Scenario(
        "bastion-upstream-oauth-ttl2",
        "bastion",
        upstream_oauth=True,
        idp_expires_in=2,
        eagerly_expire=0,
    ),
    Scenario("eg-proxy", "express-gateway"),
    Scenario("eg-jwt", "express-gateway", oauth2=True, token="valid"),
    Scenario("eg-invalid", "express-gateway", oauth2=True, token="invalid", expect=401),
    Scenario("eg-issue", "express-gateway", oauth2=True, issue=True, path=EG_TOKEN_PATH),
    *(
        Scenario(f"{prefix}-{suffix}", system, path=path, transfer=transfer)
        for transfer, suffix, path in (
            ("download", "big", BIG_PATH),
            ("upload", "upload", UPLOAD_PATH),
        )
        for prefix, system in (
            ("nginx-proxy", "nginx-proxy"),
            ("bastion-1w", "bastion"),
            ("eg-proxy", "express-gateway"),
        )
    ),
)
#: the speed targets' configs (nginx-proxy and bastion-1w; bastion-1w and bastion-oauth-valid):
#: side by side in SCENARIOS and in every round, so that the machine's drift between two runs a
#: few minutes apart does not enter their ratios (README.md, Rounds)
SIDE_BY_SIDE = frozenset({"nginx-proxy", "bastion-1w", "bastion-oauth-valid"})
QUICK_SCENARIOS = tuple(s for s in SCENARIOS if s.name in ("bastion-1w", "bastion-oauth-invalid"))


@dataclass(frozen=True)
class Placement:
    """CPU lists for taskset: the SUT (1 process / several processes) and the load side."""

    sut: str | None
    sut_multi: str | None
    load: str | None  # the upstream and the load generator

    @classmethod
    def detect(cls) -> Placement:
        if {0, 1} <= os.sched_getaffinity(0):
            return cls(sut="0", sut_multi="0,1", load="1")
        return cls(None, None, None)  # fewer than 2 usable cores: no pinning

    def for_sut(self, scenario: Scenario) -> str | None:
        return self.sut if scenario.workers == 1 else self.sut_multi

    def describe(self, upstream: str, generator: str) -> dict[str, str]:
        if self.load is None:
            return {"note": "fewer than 2 usable cores: nothing pinned"}
        return {
            "upstream": f"{upstream} (1 process), core {self.load}",
            "load generator": f"{generator}, core {self.load}",
            "SUT, 1 process (nginx, Bastion 1 worker, Express Gateway's node process)": (
                f"core {self.sut}"
            ),
            "SUT, 2 workers": f"cores {self.sut_multi} (unpinned on both cores)",
        }


@dataclass
class Options:
    duration: float
    warmup: float
    rounds: int
    connections: int
    threads: int
    scenarios: tuple[Scenario, ...]
    quick: bool
    keep_temp: bool


@dataclass(frozen=True)
class IdpCount:
    """The IdP's token requests during one measured run of an upstream-oauth scenario."""

    token_requests: int
    expires_in: int  # what the IdP answered
    ttl_s: int  # how long the plugin kept each token (expires_in - eagerly_expire)

    def to_json(self) -> dict[str, int]:
        return {
            "token_requests": self.token_requests,
            "expires_in": self.expires_in,
            "ttl_s": self.ttl_s,
        }


@dataclass
class Run:
    """One measured run (or the error that prevented it)."""

    scenario: str
    round: int
    measurement: Measurement | None = None
    error: str | None = None
    stop: StopResult | None = None
    idp: IdpCount | None = None
    connections: int | None = None  # wrk -c of the run when not the benchmark's (10 MB: 8)

    def problem(self) -> str | None:
        """Why this run does not count as "every request got its expected status", or None."""
        if self.error:
            return self.error.splitlines()[0]
        assert self.measurement is not None
        load = self.measurement.load
        if load.requests == 0:
            return "no request completed"
        if load.errors:
            kind = "non-2xx" if load.unexpected_status is None else "unexpected status"
            return f"{load.wrong_status} {kind} responses, socket errors {load.socket_errors}"
        return None

    def to_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "round": self.round,
            "measurement": self.measurement.to_json() if self.measurement else None,
            "error": self.error,
            "stop_s": round(self.stop.seconds, 2) if self.stop else None,
            "killed": self.stop.killed if self.stop else [],
            "idp": self.idp.to_json() if self.idp else None,
            "connections": self.connections,
        }


@dataclass
class Environment:
    """What every run shares: temp dir, placement, the upstream and the load generator."""

    tmp: Path
    placement: Placement
    upstream: Server
    generator: LoadGenerator
    idp: Server | None = None  # the test IdP, when an upstream-oauth scenario runs


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rotated(scenarios: tuple[Scenario, ...], round_index: int) -> Iterator[Scenario]:
    """Each round starts one unit later, so no config always runs first or last. A unit is one
    config, or the SIDE_BY_SIDE configs present, which a round never splits (a target's ratio
    never compares a run at one end of a round with one at the other) and runs in reverse order
    every other round (bastion-1w stays beside both of the others)."""
    units: list[list[Scenario]] = []
    for scenario in scenarios:
        if scenario.name in SIDE_BY_SIDE and units and units[-1][0].name in SIDE_BY_SIDE:
            units[-1].append(scenario)
        else:
            units.append([scenario])
    shift = round_index % len(units)
    for unit in units[shift:] + units[:shift]:
        yield from unit if round_index % 2 == 0 else reversed(unit)


def start_upstream(
    workdir: Path, placement: Placement, use_nginx: bool, big: bool = False
) -> Server:
    """The upstream; with `big` (a 10 MB scenario runs), also its /big file and /upload sink."""
    if not use_nginx:
        if big:
            raise RuntimeError("the 10 MB scenarios need nginx as the upstream")
        return start_pyupstream(workdir, "upstream", cpus=placement.load)
    if big:
        # nginx's workers run as `nobody` under a root master: they must traverse the temp dir
        # (mkdtemp makes it 0700) to open the /big file
        workdir.chmod(0o711)
    return start_nginx(workdir, "upstream", workers=1, cpus=placement.load, big=big)


def start_sut(
    scenario: Scenario,
    workdir: Path,
    placement: Placement,
    upstream: Server,
    idp: Server | None = None,
) -> Server:
    cpus = placement.for_sut(scenario)
    if scenario.system == "nginx-direct":
        return start_nginx(workdir, scenario.name, scenario.workers, cpus)
    if scenario.system == "nginx-proxy":
        big = scenario.transfer is not None
        return start_nginx(workdir, scenario.name, scenario.workers, cpus, upstream.port, big)
    if scenario.system == "express-gateway":
        return start_eg(workdir, scenario.name, cpus, upstream.port, scenario.oauth2)
    return start_bastion(
        workdir,
        scenario.name,
        scenario.workers,
        cpus,
        upstream.port,
        access_log=scenario.access_log,
        plugins=scenario.plugins(idp.port if idp else None),
        max_request_body=BIG_MAX_BODY if scenario.transfer == "upload" else None,
        source=scenario.source,
    )


def prepare(scenario: Scenario, sut: Server, idp: Server | None = None) -> Request:
    """The scenario's sanity check, then what the load generator sends to the SUT.

    oauth: one token from the token endpoint; a sanity GET with it (or with it forged) must get the
    upstream's body (or the plugin's 401), and the load sends that same Authorization header.
    upstream-oauth: the sanity GET must get the upstream's body and make the IdP's first token
    request (the plugin fetched a token for it).
    """
    if scenario.transfer is not None:
        sut.check_transfer(scenario.transfer)
        return transfer_request(scenario, sut.url(scenario.path))
    if isinstance(sut, EgServer):
        return prepare_eg(scenario, sut)
    if scenario.upstream_oauth:
        assert idp is not None
        before = idp_token_requests(idp)
        sut.check_body()
        if idp_token_requests(idp) == before:
            raise sut.fail("the sanity GET was proxied without a token request to the IdP")
        return Request(sut.url(scenario.path), expect=scenario.expect)
    if not scenario.oauth:
        sut.check_body()
        return Request(sut.url(scenario.path), expect=scenario.expect)
    token = issue_token(sut)
    if scenario.token is None:
        return Request(sut.url(scenario.path), expect=scenario.expect)
    bearer = token if scenario.token == "valid" else forge(token)
    headers = (f"Authorization: Bearer {bearer}",)
    sut.check_body(headers, scenario.expect, INVALID_TOKEN_BODY if scenario.expect == 401 else BODY)
    return Request(sut.url(scenario.path), headers, scenario.expect)


def transfer_request(scenario: Scenario, url: str) -> Request:
    """What wrk sends in a 10 MB scenario: GETs of the 10 MiB file, or POSTs of a 10 MiB body
    (upload.lua), at BIG_CONNECTIONS connections, with a 30 s timeout on every system."""
    upload = scenario.transfer == "upload"
    return Request(
        url,
        expect=200,
        content_type="application/octet-stream",
        timeout_s=BIG_WRK_TIMEOUT,
        upload_bytes=BIG_SIZE if upload else None,
        connections=BIG_CONNECTIONS,
    )


def prepare_eg(scenario: Scenario, sut: EgServer) -> Request:
    """Express Gateway: proxy only, the sanity GET; oauth2, a user, an app and its oauth2
    credential made with the admin API, then one token from POST /oauth2/token (the sanity check
    of `eg-issue`), sent as is or re-signed with another key, or the load POSTs the same form."""
    if not scenario.oauth2:
        sut.check_body()
        return Request(sut.url(scenario.path), expect=scenario.expect, timeout_s=EG_WRK_TIMEOUT)
    credential = eg_provision(sut)
    token = eg_issue_token(sut, credential)
    if scenario.issue:
        form = credential.token_form()
        return Request(
            sut.url(scenario.path),
            expect=200,
            body=form,
            content_type=EG_FORM,
            timeout_s=EG_WRK_TIMEOUT,
        )
    bearer = token if scenario.token == "valid" else forge(token)
    headers = (f"Authorization: Bearer {bearer}",)
    expect_body = EG_UNAUTHORIZED_BODY if scenario.expect == 401 else BODY
    sut.check_body(headers, scenario.expect, expect_body)
    return Request(sut.url(scenario.path), headers, scenario.expect, timeout_s=EG_WRK_TIMEOUT)


def run_scenario(scenario: Scenario, round_index: int, opts: Options, env: Environment) -> Run:
    """Start the SUT, sanity GET, warm up, measure, stop it by pid."""
    run = Run(scenario.name, round_index)
    workdir = env.tmp / f"r{round_index}"
    idp = env.idp if scenario.upstream_oauth else None
    try:
        if idp is not None:
            idp_set_expires_in(idp, scenario.idp_expires_in)
        sut = start_sut(scenario, workdir, env.placement, env.upstream, idp)
    except (RuntimeError, OSError) as exc:
        run.error = f"could not start: {exc}"
        return run
    try:
        request = prepare(scenario, sut, idp)
        run.connections = request.connections
        if opts.warmup > 0:
            run_load(env.generator, request, opts.warmup, env.placement.load)
            wait_idle(sut.pid)
        idp_before = idp_token_requests(idp) if idp else 0
        run.measurement = measure(
            env.generator,
            request,
            opts.duration,
            env.placement.load,
            sut_pid=sut.pid,
            upstream_pid=env.upstream.pid,
        )
        if idp is not None:
            requests = idp_token_requests(idp) - idp_before
            run.idp = IdpCount(requests, scenario.idp_expires_in, scenario.token_ttl)
    except (RuntimeError, OSError, ValueError) as exc:
        run.error = str(exc)
    finally:
        run.stop = sut.stop()
        if not opts.keep_temp:
            shutil.rmtree(workdir / scenario.name, ignore_errors=True)
    return run


def describe_run(run: Run, rounds: int) -> str:
    prefix = f"[round {run.round + 1}/{rounds}] {run.scenario:<21}"
    if run.measurement is None:
        return f"{prefix} FAILED: {run.error}"
    m = run.measurement
    stop = f"  stop {run.stop.seconds:.1f} s" if run.stop else ""
    idp = f"  IdP requests {run.idp.token_requests}" if run.idp else ""
    big = f"  {m.load.requests_per_s * BIG_SIZE / 2**20:,.0f} MiB/s" if run.connections else ""
    return (
        f"{prefix} {m.load.requests_per_s:>9,.0f} req/s{big}  p50 {m.load.p50_ms:6.2f} ms  "
        f"p99 {m.load.p99_ms:6.2f} ms  SUT {m.sut_cores:.2f} cores  "
        f"RSS {m.sut.rss_list()} MB  errors {m.load.errors}{stop}{idp}"
    )


def run_rounds(opts: Options, tmp: Path, use_nginx: bool, generator: LoadGenerator) -> list[Run]:
    placement = Placement.detect()
    big = any(s.transfer for s in opts.scenarios)
    upstream = start_upstream(tmp, placement, use_nginx, big)
    idp: Server | None = None
    runs: list[Run] = []
    try:
        upstream.check_body()
        if any(s.upstream_oauth for s in opts.scenarios):
            idp = start_idp(tmp, placement.load)  # beside the upstream, on the load core
        env = Environment(tmp, placement, upstream, generator, idp)
        for round_index in range(opts.rounds):
            for scenario in rotated(opts.scenarios, round_index):
                run = run_scenario(scenario, round_index, opts, env)
                log(describe_run(run, opts.rounds))
                runs.append(run)
    finally:
        if idp is not None:
            idp.stop()
        upstream.stop()
    return runs


def choose_tools(opts: Options) -> tuple[bool, LoadGenerator]:
    """nginx and wrk are required for the full benchmark; quick mode falls back to Python ones."""
    has_nginx, has_wrk = find_nginx() is not None, shutil.which("wrk") is not None
    if not opts.quick and not (has_nginx and has_wrk):
        missing = [n for n, ok in (("nginx", has_nginx), ("wrk", has_wrk)) if not ok]
        raise SystemExit(
            f"bench: {' and '.join(missing)} not installed: apt-get install -y nginx wrk"
        )
    if any(s.system == "express-gateway" for s in opts.scenarios):
        if not has_wrk:
            raise SystemExit("bench: the express-gateway configs need wrk (POST bodies)")
        if problem := eg_missing():
            raise SystemExit(f"bench: {problem}; bench/run installs it (see bench/README.md)")
    name = "wrk" if has_wrk else "pyload"
    return has_nginx, LoadGenerator(name, threads=opts.threads, connections=opts.connections)


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="seconds per measured run (10; quick: 2)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (3; quick: 1)")
    parser.add_argument(
        "--warmup", type=float, help="seconds of warm-up before each run (2; quick: 1)"
    )
    parser.add_argument("--connections", type=int, default=64, help="wrk -c (64)")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (1)")
    parser.add_argument(
        "--configs", help="comma-separated subset of: " + ", ".join(s.name for s in SCENARIOS)
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: bastion-1w and bastion-oauth-invalid, 2 s, 1 round; no RESULTS.md",
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep configs and logs")
    args = parser.parse_args(argv)
    scenarios: tuple[Scenario, ...] = QUICK_SCENARIOS if args.quick else SCENARIOS
    if args.configs:
        by_name = {s.name: s for s in SCENARIOS}
        unknown = [n for n in args.configs.split(",") if n not in by_name]
        if unknown:
            parser.error(f"unknown config(s) {unknown}; choose from {list(by_name)}")
        scenarios = tuple(by_name[n] for n in args.configs.split(","))
    quick = args.quick
    options = Options(
        duration=args.duration or (2.0 if quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        rounds=args.rounds or (1 if quick else 3),
        connections=args.connections,
        threads=args.threads,
        scenarios=scenarios,
        quick=quick,
        keep_temp=args.keep_temp,
    )
    if options.duration < 1 or options.rounds < 1 or options.rounds > 20 or options.duration > 120:
        parser.error("--duration must be 1..120 s and --rounds 1..20")
    return options


def save(opts: Options, runs: list[Run], info: dict[str, object]) -> Path:
    """Raw JSON (and its markdown) into bench/out/; RESULTS.md only for a full default run."""
    OUT.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    stem = OUT / f"{'quick' if opts.quick else 'bench'}-{stamp}"
    data = {"info": info, "runs": [r.to_json() for r in runs]}
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1))
    markdown = report.render(data)
    stem.with_suffix(".md").write_text(markdown)
    if not opts.quick and opts.scenarios == SCENARIOS:
        RESULTS.write_text(markdown)
        log(f"bench: wrote {RESULTS}")
    return stem.with_suffix(".json")


def busy_cores(seconds: float = 1.0) -> float:
    """How many cores the machine keeps busy without us: a warning sign before measuring."""
    before = HostCpu.now()
    time.sleep(seconds)
    return (HostCpu.now().busy_s - before.busy_s) / seconds


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    use_nginx, generator = choose_tools(opts)
    source = report.source_digest()
    idle = busy_cores()
    if idle > BUSY_WARNING:
        log(f"bench: WARNING: the machine is already using {idle:.2f} cores; numbers will be noisy")
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    try:
        runs = run_rounds(opts, tmp, use_nginx, generator)
    except (RuntimeError, OSError) as exc:
        log(f"bench: FAILED before measuring: {exc}")
        return 2
    finally:
        if opts.keep_temp:
            log(f"bench: configs and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    upstream = "nginx" if use_nginx else "pyupstream"
    info = report.environment(
        options={
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "rounds": opts.rounds,
            "connections": opts.connections,
            "threads": opts.threads,
            "quick": opts.quick,
            "path": MEASURED_PATH,
        },
        placement=Placement.detect().describe(upstream, generator.name),
        upstream=upstream,
        generator=generator.name,
        started=started,
        busy_before=idle,
        source_before=source,
    )
    path = save(opts, runs, info)
    log(f"bench: raw results in {path}")
    problems = [f"{r.scenario} round {r.round + 1}: {p}" for r in runs if (p := r.problem())]
    if problems:
        log(
            "bench: FAILED, not every scenario answered only its expected status:\n  "
            + "\n  ".join(problems)
        )
        return 1
    log("bench: OK, every scenario answered its expected status only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
