"""RESULTS.md from a run's raw JSON; `python bench/report.py FILE.json` re-renders one."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from systems import find_nginx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REFERENCES = ("nginx-direct", "nginx-proxy", "nginx-proxy-2w")
AIM_RATIO = 0.60  # issue 3 point 9: one Bastion worker at >= 60% of nginx-proxy in the same run
AIM_RSS_MB = 40.0  # ... and under 40 MB per worker
NOT_SUT_BOUND = 0.8  # a 1-process SUT using less than this many cores was not the bottleneck
SLOW_STOP = 2.0  # seconds from SIGTERM to exit that we flag (the SIGKILL comes at 10 s)
FOREIGN_NOISE = 0.1  # cores used by processes outside the benchmark that we flag
PROXY_ONLY = "bastion-1w"  # the reference of the oauth scenarios: the same Bastion, no plugin
OAUTH = {  # issue 5 point 7: what each oauth scenario sends, and the status it expects
    "bastion-oauth-valid": "`GET /bench?x=1` with a valid token: 200, proxied",
    "bastion-oauth-invalid": "`GET /bench?x=1` with a wrongly signed token: 401, not proxied",
    "bastion-oauth-issue": "`GET /oauth2/token?grant_type=client_credentials&…`: 200, a new token",
}
UPSTREAM_OAUTH = {  # issue 6 point 6: the upstream-oauth plugin, its token from the test IdP
    "bastion-upstream-oauth": "token cached (IdP `expires_in` 3600): 200, proxied with it",
    "bastion-upstream-oauth-ttl2": "IdP `expires_in` 2, `eagerly_expire: 0`: renewed every ~1.5 s",
}
REFRESH_AT = 0.75  # the plugin renews a token in the background past 3/4 of its TTL
STAMPEDE_FACTOR = 2.0  # IdP requests above this many times the refresh-ahead count are flagged

Run = dict[str, Any]


# --- environment ---------------------------------------------------------------------------------


def _command_output(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    return (done.stdout + done.stderr).strip().splitlines()[0] if done.stdout + done.stderr else "?"


def _package(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "?"


def _memory_gib() -> str:
    text = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    match = re.search(r"^MemTotal:\s+(\d+) kB", text, re.MULTILINE)
    return f"{int(match.group(1)) / 2**20:.1f}" if match else "?"


def _nginx_version() -> str:
    nginx = find_nginx()
    return (
        _command_output([nginx, "-v"]).removeprefix("nginx version: nginx/")
        if nginx
        else "not installed"
    )


def source_digest() -> str:
    """A digest of Bastion's source, to notice code that changed while the benchmark ran."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _wrk_version() -> str:
    text = _command_output(["wrk", "-v"])  # "wrk debian/4.1.0-3+b2 [epoll] Copyright ..."
    match = re.match(r"wrk (\S+ \[\w+\])", text)
    return match.group(1) if match else text


def environment(
    options: dict[str, object],
    placement: dict[str, str],
    upstream: str,
    generator: str,
    started: float,
    busy_before: float,
    source_before: str,
) -> dict[str, object]:
    """Date, machine, versions and method of a run, stored with its raw results."""
    return {
        "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "finished": datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "kernel": platform.release(),
            "memory_gib": _memory_gib(),
            "os": platform.freedesktop_os_release().get("PRETTY_NAME", "?"),
        },
        "versions": {
            "bastion": f"{_package('bastion-gateway')} (git "
            f"{_command_output(['git', '-C', str(ROOT), 'describe', '--always', '--dirty'])})",
            "nginx": _nginx_version(),
            "wrk": _wrk_version(),
            "python": platform.python_version(),
            "uvloop": _package("uvloop"),
            "httptools": _package("httptools"),
            "psutil": _package("psutil"),
        },
        "options": options,
        "placement": placement,
        "upstream": upstream,
        "generator": generator,
        "busy_cores_before": round(busy_before, 2),
        "source_digest": {"start": source_before, "end": source_digest()},
    }


# --- statistics ----------------------------------------------------------------------------------


def measured(runs: Iterable[Run], scenario: str) -> list[Run]:
    return [r for r in runs if r["scenario"] == scenario and r["measurement"]]


def load_field(run: Run, name: str) -> float:
    return float(run["measurement"]["load"][name])


def rps(run: Run) -> float:
    return load_field(run, "requests_per_s")


def per_cpu(run: Run) -> float:
    """Requests per CPU-second of the SUT: less sensitive than req/s to CPU taken by others."""
    cores = float(run["measurement"]["sut_cores"])
    return rps(run) / cores if cores > 0 else 0.0


def same_round_ratios(
    runs: list[Run], scenario: str, reference: str, value: Callable[[Run], float] = rps
) -> list[float]:
    """scenario value ÷ reference value (req/s by default), in each round where both ran."""
    ref = {r["round"]: value(r) for r in measured(runs, reference)}
    return [value(r) / ref[r["round"]] for r in measured(runs, scenario) if ref.get(r["round"])]


def median_of(runs: list[Run], value: Callable[[Run], float]) -> float:
    return statistics.median(value(r) for r in runs)


def peak_rss(runs: list[Run]) -> list[float]:
    """Per-process peak RSS (MB) over all rounds, element by element, from the largest tree."""
    lists = [r["measurement"]["sut"]["peak_rss_mb"] for r in runs]
    width = max(len(x) for x in lists)
    return [max(x[i] for x in lists if len(x) == width) for i in range(width)]


def wrong_status(load: dict[str, Any]) -> int:
    """Non-2xx answers, or answers other than the expected status when the run counted those."""
    unexpected = load.get("unexpected_status")
    return int(load["non_2xx"] if unexpected is None else unexpected)


def errors_of(run: Run) -> int:
    load = run["measurement"]["load"]
    return wrong_status(load) + sum(int(v) for v in load["socket_errors"].values())


# --- formatting ----------------------------------------------------------------------------------


def rss_text(values: list[float]) -> str:
    return f"{sum(values):.0f} ({', '.join(f'{v:.1f}' for v in values)})"


def ratio_text(ratios: list[float]) -> str:
    if not ratios:
        return "-"
    text = f"{statistics.median(ratios):.2f}"
    return text if min(ratios) == max(ratios) else f"{text} ({min(ratios):.2f}-{max(ratios):.2f})"


def table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """A markdown table; `align` has one letter per column: l or r."""
    marks = ["---:" if a == "r" else "---" for a in align]
    return [
        f"| {' | '.join(header)} |",
        f"|{'|'.join(marks)}|",
        *(f"| {' | '.join(r)} |" for r in rows),
    ]


def scenarios_in(runs: list[Run]) -> list[str]:
    names: list[str] = []
    for run in sorted(runs, key=lambda r: r["round"]):
        if run["scenario"] not in names:
            names.append(run["scenario"])
    order = {
        name: i
        for i, name in enumerate(
            [
                "nginx-direct",
                "nginx-proxy",
                "bastion-1w",
                "bastion-1w-log",
                "nginx-proxy-2w",
                "bastion-2w",
                *OAUTH,
                *UPSTREAM_OAUTH,
            ]
        )
    }
    return sorted(names, key=lambda n: order.get(n, len(order)))


def summary_rows(runs: list[Run], references: list[str]) -> list[list[str]]:
    rows = []
    for name in scenarios_in(runs):
        done = measured(runs, name)
        failed = sum(1 for r in runs if r["scenario"] == name and not r["measurement"])
        if not done:
            rows.append([name, "failed", *[""] * (7 + len(references)), f"{failed} failed"])
            continue
        rps = [load_field(r, "requests_per_s") for r in done]
        errors = sum(errors_of(r) for r in done)
        note = ", ".join(
            x
            for x in (
                f"{errors} errors" if errors else "",
                f"{failed} runs failed" if failed else "",
            )
            if x
        )
        rows.append(
            [
                name,
                f"{statistics.median(rps):,.0f}",
                f"{min(rps):,.0f}-{max(rps):,.0f}",
                f"{median_of(done, lambda r: load_field(r, 'p50_ms')):.2f}",
                f"{median_of(done, lambda r: load_field(r, 'p99_ms')):.2f}",
                *[ratio_text(same_round_ratios(runs, name, ref)) for ref in references],
                f"{median_of(done, lambda r: r['measurement']['sut_cores']):.2f}",
                f"{median_of(done, per_cpu):,.0f}",
                ratio_text(same_round_ratios(runs, name, "nginx-proxy", per_cpu)),
                rss_text(peak_rss(done)),
                note or "0",
            ]
        )
    return rows


def raw_rows(runs: list[Run]) -> list[list[str]]:
    rows = []
    for run in sorted(runs, key=lambda r: r["round"]):
        m = run["measurement"]
        if not m:
            error = (run["error"] or "").splitlines()[0][:160].replace("|", "/")
            rows.append([str(run["round"] + 1), run["scenario"], "FAILED", *[""] * 10, error])
            continue
        load = m["load"]
        sock = load["socket_errors"]
        non_2xx = f"{load['non_2xx']:,}"
        if load.get("unexpected_status") is not None:
            non_2xx += f" ({load['unexpected_status']} unexpected)"
        rows.append(
            [
                str(run["round"] + 1),
                run["scenario"],
                f"{load['requests_per_s']:,.0f}",
                f"{load['p50_ms']:.2f}",
                f"{load['p99_ms']:.2f}",
                f"{load['requests']:,}",
                non_2xx,
                "/".join(str(sock[k]) for k in ("connect", "read", "write", "timeout")),
                f"{m['sut_cores']:.2f}",
                f"{m['upstream_cores']:.2f} / {m['loadgen_cores']:.2f}",
                f"{m['foreign_cores']:.2f} / {m['steal_cores']:.2f}",
                ", ".join(f"{v:.1f}" for v in m["sut"]["peak_rss_mb"]),
                f"{run.get('stop_s') or 0:.1f}",
                "",
            ]
        )
    return rows


# --- sections ------------------------------------------------------------------------------------


def headline(runs: list[Run]) -> list[str]:
    lines = []
    one = measured(runs, "bastion-1w")
    if one:
        rps = [load_field(r, "requests_per_s") for r in one]
        ratios = same_round_ratios(runs, "bastion-1w", "nginx-proxy")
        rss = peak_rss(one)
        ratio = statistics.median(ratios) if ratios else None
        lines.append(
            f"- **Bastion, 1 worker: {statistics.median(rps):,.0f} req/s** (median of {len(one)}; "
            f"{min(rps):,.0f}-{max(rps):,.0f}), "
            + (f"**{ratio:.2f}x nginx-proxy** (same-round ratio, median), " if ratio else "")
            + f"p99 {median_of(one, lambda r: load_field(r, 'p99_ms')):.2f} ms, "
            f"peak RSS per process {', '.join(f'{v:.1f}' for v in rss)} MB."
        )
        if ratio is not None:
            verdict = "met" if ratio >= AIM_RATIO and max(rss) < AIM_RSS_MB else "NOT met"
            lines.append(
                f"- Aim of issue 3 (≥ {AIM_RATIO:.2f}x nginx-proxy and < {AIM_RSS_MB:.0f} MB "
                f"per worker): **{verdict}** in this run."
            )
    cost = same_round_ratios(runs, "bastion-1w", "nginx-proxy", per_cpu)
    if cost:
        lines.append(
            f"- Requests per CPU-second of the SUT (less noise-sensitive): Bastion 1 worker "
            f"{median_of(one, per_cpu):,.0f}, {ratio_text(cost)}x nginx-proxy's (same round)."
        )
    logged = same_round_ratios(runs, "bastion-1w-log", "bastion-1w")
    if logged:
        lines.append(
            f"- Access log on (`bastion-1w-log`): {ratio_text(logged)}x the throughput "
            "with it off, same round."
        )
    oauth = [(name, same_round_ratios(runs, name, PROXY_ONLY)) for name in OAUTH]
    if any(ratios for _, ratios in oauth):
        lines.append(
            "- oauth plugin (issue 5), req/s ÷ `bastion-1w` same round: "
            + ", ".join(f"`{name}` {ratio_text(ratios)}x" for name, ratios in oauth if ratios)
            + " (see its section)."
        )
    upstream = [(name, same_round_ratios(runs, name, PROXY_ONLY)) for name in UPSTREAM_OAUTH]
    if any(ratios for _, ratios in upstream):
        lines.append(
            "- upstream-oauth plugin (issue 6), req/s ÷ `bastion-1w` same round: "
            + ", ".join(f"`{name}` {ratio_text(ratios)}x" for name, ratios in upstream if ratios)
            + (f"; {idp_headline(runs)}" if idp_headline(runs) else "")
            + " (see its section)."
        )
    two = same_round_ratios(runs, "bastion-2w", "bastion-1w")
    two_ref = same_round_ratios(runs, "bastion-2w", "nginx-proxy-2w")
    if two:
        lines.append(
            f"- Bastion, 2 workers: {ratio_text(two)}x Bastion 1 worker, "
            f"{ratio_text(two_ref)}x nginx-proxy-2w (same round; see the note on cores)."
        )
    return lines


def checks(runs: list[Run], info: dict[str, Any]) -> list[str]:
    """Automatic flags on runs whose numbers deserve less trust."""
    lines = []
    digest = info.get("source_digest", {})
    if digest.get("start") != digest.get("end"):
        lines.append(
            "- **Bastion's source (src/) changed while the benchmark ran**: rounds may "
            "have measured different code; rerun."
        )
    for run in sorted(runs, key=lambda r: (r["round"], r["scenario"])):
        m, where = run["measurement"], f"round {run['round'] + 1} {run['scenario']}"
        if not m:
            lines.append(f"- {where}: FAILED: {(run['error'] or '').splitlines()[0][:300]}")
            continue
        if errors_of(run):
            kind = "non-2xx" if m["load"].get("unexpected_status") is None else "unexpected status"
            lines.append(
                f"- {where}: {errors_of(run)} errors ({kind} {wrong_status(m['load'])}, "
                f"socket {m['load']['socket_errors']})."
            )
        if run.get("killed") or (run.get("stop_s") or 0) > SLOW_STOP:
            lines.append(
                f"- {where}: stopping took {run.get('stop_s')} s after SIGTERM; "
                f"SIGKILLed pids: {run.get('killed') or 'none'}."
            )
        if not run["scenario"].endswith("-2w") and m["sut_cores"] < NOT_SUT_BOUND:
            lines.append(
                f"- {where}: the SUT used only {m['sut_cores']:.2f} of its core: it was "
                "not the bottleneck (load side saturated, or noise)."
            )
        idp = idp_figures(run)
        if (
            idp
            and idp["ttl_s"] < idp["duration_s"]
            and (
                idp["idp_requests"] == 0
                or idp["idp_requests"] > STAMPEDE_FACTOR * idp["refresh_ahead"] + 1
            )
        ):
            lines.append(
                f"- {where}: {idp['idp_requests']} IdP token requests in "
                f"{idp['duration_s']:.1f} s with a {idp['ttl_s']} s token (refresh ahead "
                f"expects {idp['refresh_ahead']:.1f}): renewal is broken or stampeding."
            )
        if m["foreign_cores"] > FOREIGN_NOISE or m["steal_cores"] > FOREIGN_NOISE:
            lines.append(
                f"- {where}: processes outside the benchmark used {m['foreign_cores']:.2f} "
                f"cores, steal {m['steal_cores']:.2f}."
            )
    return lines or [
        "- none: every run answered its expected status only (2xx; 401 for "
        "`bastion-oauth-invalid`), 1-process SUTs were CPU-bound, no noise."
    ]


def oauth_rows(runs: list[Run], references: list[str]) -> list[list[str]]:
    return plugin_rows(runs, references, OAUTH)


def plugin_rows(
    runs: list[Run], references: list[str], scenarios: dict[str, str]
) -> list[list[str]]:
    """One row per plugin scenario that ran: req/s, latency, same-round ratios, CPU, RSS."""
    rows = []
    for name, what in scenarios.items():
        done = measured(runs, name)
        if not done:
            continue
        rps = [load_field(r, "requests_per_s") for r in done]
        rows.append(
            [
                name,
                what,
                f"{statistics.median(rps):,.0f} ({min(rps):,.0f}-{max(rps):,.0f})",
                f"{median_of(done, lambda r: load_field(r, 'p50_ms')):.2f}",
                f"{median_of(done, lambda r: load_field(r, 'p99_ms')):.2f}",
                *[ratio_text(same_round_ratios(runs, name, ref)) for ref in references],
                f"{median_of(done, lambda r: r['measurement']['sut_cores']):.2f}",
                ratio_text(same_round_ratios(runs, name, PROXY_ONLY, per_cpu)),
                rss_text(peak_rss(done)),
                str(sum(errors_of(r) for r in done)),
            ]
        )
    return rows


def oauth_section(runs: list[Run]) -> list[str]:
    """Issue 5 point 7: the oauth scenarios as ratios to the proxy-only figure of the same round."""
    references = [ref for ref in (PROXY_ONLY, "nginx-proxy") if measured(runs, ref)]
    rows = oauth_rows(runs, references)
    if not rows:
        return []
    return [
        "## oauth plugin (issue 5)",
        "",
        "Bastion, 1 worker, pinned like `bastion-1w`, same upstream and wrk settings, with the "
        "oauth plugin on every route (`global_auth: true`, one consumer, store a SQLite file). "
        "Before the load, one token comes from the token endpoint; wrk sends it (or the same "
        "token re-signed with another key) as `Authorization: Bearer` on every request. Errors: "
        "answers other than the expected status, plus socket errors. Ratios: req/s ÷ the "
        "reference's req/s in the same round, median (min-max); `x bastion-1w per CPU-s` does "
        "the same with req per SUT CPU-second, the CPU cost of a request relative to proxying "
        "alone, which is the figure to trust when other processes took CPU (see Automatic checks).",
        "",
        *plugin_table("request: expected answer", references, rows),
        "",
    ]


def idp_figures(run: Run) -> dict[str, Any] | None:
    """IdP token requests during one measured upstream-oauth run, against the client requests,
    the ideal (one per token lifetime) and what refresh ahead gives (one per 3/4 lifetime)."""
    idp, m = run.get("idp"), run["measurement"]
    if not idp or not m:
        return None
    requests = int(m["load"]["requests"])
    duration = float(m["duration_s"])
    ttl = int(idp["ttl_s"])
    per_1000 = idp["token_requests"] * 1000 / requests if requests else 0.0
    return {
        "client_requests": requests,
        "idp_requests": int(idp["token_requests"]),
        "per_1000": per_1000,
        "duration_s": duration,
        "expires_in": int(idp["expires_in"]),
        "ttl_s": ttl,
        "ideal": duration / ttl,
        "ideal_per_1000": duration / ttl * 1000 / requests if requests else 0.0,
        "refresh_ahead": duration / (REFRESH_AT * ttl),
    }


def _per_1000(value: float) -> str:
    return f"{value:.4f}" if value < 0.1 else f"{value:.2f}"


def idp_rows(runs: list[Run]) -> list[list[str]]:
    """Per run, then the total over rounds, of each upstream-oauth scenario with a short TTL (one
    that expires during the run); cached-token runs get one total row."""
    rows = []
    for name in UPSTREAM_OAUTH:
        figures = [(r, f) for r in measured(runs, name) if (f := idp_figures(r))]
        if not figures:
            continue
        parts = [(f"round {r['round'] + 1}", [f]) for r, f in figures] if len(figures) > 1 else []
        for label, group in [*parts, ("all rounds", [f for _, f in figures])]:
            client = sum(f["client_requests"] for f in group)
            idp = sum(f["idp_requests"] for f in group)
            duration = sum(f["duration_s"] for f in group)
            ttl = group[0]["ttl_s"]
            rows.append(
                [
                    name,
                    label,
                    f"{group[0]['expires_in']} / {ttl}",
                    f"{duration:.1f}",
                    f"{client:,}",
                    str(idp),
                    _per_1000(idp * 1000 / client if client else 0.0),
                    f"{duration / ttl:.1f}",
                    _per_1000(duration / ttl * 1000 / client if client else 0.0),
                    f"{duration / (REFRESH_AT * ttl):.1f}",
                ]
            )
    return rows


def idp_headline(runs: list[Run]) -> str:
    """`N IdP requests per 1,000 client requests (ideal M)` for the short-TTL scenario."""
    name = "bastion-upstream-oauth-ttl2"
    figures = [f for r in measured(runs, name) if (f := idp_figures(r))]
    client = sum(f["client_requests"] for f in figures)
    if not client:
        return ""
    idp = sum(f["idp_requests"] for f in figures)
    ideal = sum(f["ideal"] for f in figures)
    return (
        f"`{name}`: {idp} IdP requests for {client:,} client requests "
        f"({_per_1000(idp * 1000 / client)} per 1,000; one per expiry would be {ideal:.1f})"
    )


def upstream_oauth_section(runs: list[Run]) -> list[str]:
    """Issue 6 point 6: a route with a cached upstream token as a ratio to proxying alone in the
    same round, and the IdP's token requests per 1,000 client requests with a 2 s token."""
    references = [ref for ref in (PROXY_ONLY, "nginx-proxy") if measured(runs, ref)]
    rows = plugin_rows(runs, references, UPSTREAM_OAUTH)
    if not rows:
        return []
    return [
        "## upstream-oauth plugin (issue 6)",
        "",
        "Bastion, 1 worker, pinned like `bastion-1w`, same upstream and wrk settings, with the "
        "upstream-oauth plugin on every route (its instance config: `token_endpoint` the test "
        "IdP `tests/e2e/idp_app.py`, client_secret_post as `post-client`; store a SQLite file). "
        "The IdP is one process for the whole run, on the load core beside the upstream; before "
        "each run its `expires_in` is set for the scenario, and the sanity GET must make its first "
        "token request. Clients send no credentials; every answer must be a 200 proxied with the "
        "IdP's token. Ratios: req/s ÷ the reference's req/s in the same round, median (min-max); "
        "`x bastion-1w per CPU-s` does the same with req per SUT CPU-second.",
        "",
        *plugin_table("token: expected answer", references, rows),
        "",
        "**IdP token requests during the measured runs** (read from the IdP's `/stats` before and "
        "after each one; warm-up and sanity GET excluded). TTL: how long the plugin keeps a token, "
        "`expires_in - eagerly_expire`. Ideal: one request per token lifetime (run seconds ÷ "
        "TTL). Refresh ahead: the plugin renews in the background once 3/4 of the TTL has passed, "
        "so a healthy count is run seconds ÷ (0.75 * TTL); a stampede (every connection that "
        "finds the token expired asking the IdP) would be up to 64 per expiry.",
        "",
        *table(
            [
                "config",
                "run",
                "expires_in / TTL s",
                "seconds",
                "client requests",
                "IdP requests",
                "IdP per 1,000 client req",
                "ideal (1 per TTL)",
                "ideal per 1,000",
                "refresh ahead (1 per 0.75 TTL)",
            ],
            idp_rows(runs),
            "llrrrrrrrr",
        ),
        "",
    ]


def render(data: dict[str, Any]) -> str:
    info, runs = data["info"], data["runs"]
    opts, machine, versions = info["options"], info["machine"], info["versions"]
    references = [ref for ref in REFERENCES if measured(runs, ref)]
    plugins = any(measured(runs, name) for name in (*OAUTH, *UPSTREAM_OAUTH))
    started = info["started"].replace("T", " ").replace("+00:00", " UTC")
    out = [
        "# Bastion benchmark results",
        "",
        f"Generated by `bench/run` on {started} (finished {info['finished'][11:19]} UTC). "
        "Overwritten by every full run; method and how to read this page: [README.md](README.md).",
        "Only ratios measured in the same round compare; absolute req/s move 30-40 % between runs "
        "on these machines.",
        "",
        "## Headline",
        "",
        *(headline(runs) or ["- no Bastion run completed."]),
        "",
        "## Machine, versions, placement",
        "",
        f"- Machine: {machine['nproc']} CPUs, {machine['cpu']}, {machine['memory_gib']} GiB, "
        f"kernel {machine['kernel']}, {machine['os']}.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        *[f"- {k}: {v}." for k, v in info["placement"].items()],
        f"- Cores busy on the machine in the second before the run: {info['busy_cores_before']}.",
        "- **The load generator and the upstream share the 2 cores with the SUT** (core 1; the "
        "2-worker configs also run there), so absolute numbers are lower than on a machine with "
        "separate load-generator cores, and 2-worker configs cannot show real scaling.",
        "- Each run: start the SUT, one sanity GET (must return the exact 100-byte upstream "
        f"body), {opts['warmup_s']:g} s warm-up, then `{info['generator']} -t{opts['threads']} "
        f"-c{opts['connections']} -d{opts['duration_s']:g}s --latency "
        f"http://127.0.0.1:PORT{opts['path']}`, then stop the SUT by pid. {opts['rounds']} "
        "interleaved rounds (each round starts one config later)."
        + (" The oauth and upstream-oauth configs differ: see their sections." if plugins else ""),
        "",
        f"## Results (median over {opts['rounds']} round(s))",
        "",
        "Ratios: config req/s ÷ reference req/s in the same round, median (min-max) over rounds. "
        "SUT cores: CPU seconds of the SUT's process tree ÷ run time. req per SUT CPU-s: req/s ÷ "
        "SUT cores, the CPU cost per request, which CPU taken by other processes disturbs less "
        "than req/s (its ratio to nginx-proxy favours the SUT when nginx was not CPU-bound). "
        "RSS: peak per process (sampled every 0.5 s; master/supervisor first), max over rounds; "
        "the first number is the sum.",
        "",
        *table(
            [
                "config",
                "req/s median",
                "min-max",
                "p50 ms",
                "p99 ms",
                *[f"x {ref}" for ref in references],
                "SUT cores",
                "req per SUT CPU-s",
                "x nginx-proxy per CPU-s",
                "peak RSS MB: total (per process)",
                "errors",
            ],
            summary_rows(runs, references),
            "lrrrr" + "r" * len(references) + "rrrll",
        ),
        "",
        *oauth_section(runs),
        *upstream_oauth_section(runs),
        "## Per round (raw)",
        "",
        'non-2xx: as wrk counts them ("unexpected": answers other than the expected status, '
        "counted when it is not 2xx). Socket errors: connect/read/write/timeout. "
        "upstream / loadgen: cores used by the "
        "upstream and by the load generator. foreign / steal: cores used by processes outside "
        "the benchmark, and hypervisor steal. stop s: seconds from SIGTERM to exit.",
        "",
        *table(
            [
                "round",
                "config",
                "req/s",
                "p50 ms",
                "p99 ms",
                "requests",
                "non-2xx",
                "socket errors",
                "SUT cores",
                "upstream / loadgen cores",
                "foreign / steal",
                "peak RSS MB per process",
                "stop s",
                "error",
            ],
            raw_rows(runs),
            "llrrrrrlrlllrl",
        ),
        "",
        "## Automatic checks",
        "",
        *checks(runs, info),
        "",
    ]
    return "\n".join(out)


def main() -> None:
    import json

    if len(sys.argv) != 2:
        raise SystemExit("usage: python bench/report.py bench/out/bench-….json  (prints markdown)")
    print(render(json.loads(Path(sys.argv[1]).read_text())))


if __name__ == "__main__":
    main()


def plugin_table(second: str, references: list[str], rows: list[list[str]]) -> list[str]:
    """The table of a plugin section: one row per plugin config, ratios to each reference."""
    return table(
        [
            "config", second, "req/s median (min-max)", "p50 ms", "p99 ms",
            *[f"x {ref}" for ref in references],
            "SUT cores", "x bastion-1w per CPU-s", "peak RSS MB", "errors",
        ],
        rows,
        "llrrr" + "r" * len(references) + "rrlr",
    )  # fmt: skip
