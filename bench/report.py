"""RESULTS.md from a run's raw JSON; `python bench/report.py FILE.json` re-renders one."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
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

from systems import BIG_SIZE, eg_package, find_nginx, node_version

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
EG_PAIRS = {  # issue 7: each Bastion scenario and its Express Gateway counterpart
    "bastion-1w": "eg-proxy",
    "bastion-oauth-valid": "eg-jwt",
    "bastion-oauth-invalid": "eg-invalid",
    "bastion-oauth-issue": "eg-issue",
}
EG = {  # what each Express Gateway scenario sends, and the status it expects
    "eg-proxy": "`GET /bench?x=1`, proxy policy only: 200, proxied",
    "eg-jwt": "`GET /bench?x=1` with a valid JWT (oauth2 policy, JWT mode): 200, proxied",
    "eg-invalid": "`GET /bench?x=1` with a wrongly signed JWT: 401, not proxied",
    "eg-issue": "`POST /oauth2/token` client_credentials (form body): 200, a new JWT",
}
TRANSFER = {  # issue 7: the 10 MB scenarios, what moves and through what
    "nginx-proxy-big": ("download", "nginx, `proxy_pass`, 256 KiB buffers, no temp file"),
    "bastion-1w-big": ("download", "Bastion, 1 worker"),
    "eg-proxy-big": ("download", "Express Gateway, proxy policy only"),
    "nginx-proxy-upload": ("upload", "nginx, `proxy_pass`, 256 KiB buffers, not spooled"),
    "bastion-1w-upload": ("upload", "Bastion, 1 worker, route `max_request_body` 20 MiB"),
    "eg-proxy-upload": ("upload", "Express Gateway, proxy policy only"),
}
TRANSFER_REFS = {  # per direction: the nginx-proxy and Express Gateway references of the round
    "download": ("nginx-proxy-big", "eg-proxy-big"),
    "upload": ("nginx-proxy-upload", "eg-proxy-upload"),
}
BIG_MIB = BIG_SIZE / 2**20  # MiB moved per request (10)
EG_TARGET_PROXY = 5.0  # issue 7 point 4: proxy only >= 5x Express Gateway
EG_TARGET_JWT = 10.0  # protected route >= 10x Express Gateway's JWT route
EG_TARGET_ISSUE = 100.0  # token issuance >= 100x Express Gateway
EG_TARGET_P99 = 0.2  # p99 at most a fifth of Express Gateway's, every scenario
OWN_PROXY_TARGET = 0.85  # protected route >= 0.85x Bastion's own proxy-only figure
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


def _eg_version() -> str:
    package = eg_package() / "package.json"
    if not package.exists():
        return "not installed"
    return str(json.loads(package.read_text()).get("version", "?"))


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
            "node": node_version() or "not installed",
            "express-gateway": _eg_version(),
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


def ratio_text(ratios: list[float], fmt: Callable[[float], str] = "{:.2f}".format) -> str:
    if not ratios:
        return "-"
    text = fmt(statistics.median(ratios))
    return text if min(ratios) == max(ratios) else f"{text} ({fmt(min(ratios))}-{fmt(max(ratios))})"


def small(value: float) -> str:
    """A ratio that may be far below 0.01 (Bastion's p99 ÷ Express Gateway's): 2 significant
    digits below 0.1."""
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def rate(value: float) -> str:
    """req/s: no decimals, except below 100 (Express Gateway's token issuance)."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


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
                *EG,
                *TRANSFER,
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
    compiled = same_round_ratios(runs, "bastion-1w", "bastion-1w-source")
    if compiled:
        lines.append(
            f"- The compiled hot path (mypyc, as it ships): {ratio_text(compiled)}x the "
            "throughput of the same code run from its Python source (`bastion-1w-source`), "
            "same round."
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
    eg = [(b, e, same_round_ratios(runs, b, e)) for b, e in EG_PAIRS.items()]
    if any(ratios for _, _, ratios in eg):
        lines.append(
            "- Against Express Gateway (issue 7), req/s ÷ its counterpart same round: "
            + ", ".join(f"`{b}` {ratio_text(r)}x `{e}`" for b, e, r in eg if r)
            + " (see its section for p99, RSS and the targets)."
        )
    for direction, (nginx, eg) in TRANSFER_REFS.items():
        ours = next(n for n, (d, _) in TRANSFER.items() if d == direction and "bastion" in n)
        done = measured(runs, ours)
        if done:
            lines.append(
                f"- 10 MiB {direction} (`{ours}`, 8 connections): "
                f"{median_of(done, mib_per_s):,.0f} MiB/s, "
                f"{ratio_text(same_round_ratios(runs, ours, nginx))}x `{nginx}`, "
                f"{ratio_text(same_round_ratios(runs, ours, eg))}x `{eg}` (same round; see its "
                "section)."
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
        "`bastion-oauth-invalid` and `eg-invalid`), 1-process SUTs were CPU-bound, no noise."
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


# --- Express Gateway (issue 7) ---------------------------------------------------------------


def p99(run: Run) -> float:
    return load_field(run, "p99_ms")


def median_text(runs: list[Run], value: Callable[[Run], float], fmt: Callable[[float], str]) -> str:
    return fmt(median_of(runs, value)) if runs else "-"


def worker_rss(runs: list[Run]) -> float | None:
    """The largest per-process peak RSS over all rounds (MB), or None without a run."""
    return max(peak_rss(runs)) if runs else None


def eg_rows(runs: list[Run]) -> list[list[str]]:
    """Each Bastion scenario beside its Express Gateway counterpart: req/s, p99 and RSS of both,
    and the same-round ratios Bastion ÷ EG (req/s: higher is better; p99: lower is better)."""
    rows = []
    for ours, theirs in EG_PAIRS.items():
        a, b = measured(runs, ours), measured(runs, theirs)
        if not (a or b):
            continue
        rows.append(
            [
                f"{ours} / {theirs}",
                median_text(a, rps, rate),
                median_text(b, rps, rate),
                ratio_text(same_round_ratios(runs, ours, theirs)),
                median_text(a, p99, "{:.2f}".format),
                median_text(b, p99, "{:.2f}".format),
                ratio_text(same_round_ratios(runs, ours, theirs, p99), small),
                rss_text(peak_rss(a)) if a else "-",
                rss_text(peak_rss(b)) if b else "-",
                str(sum(errors_of(r) for r in a)) + " / " + str(sum(errors_of(r) for r in b)),
            ]
        )
    return rows


def _target(
    what: str, ratios: list[float], aim: float, at_least: bool, unit: str = "x"
) -> list[str]:
    """One checklist row: the aim, the run's median ratio (min-max) and met / missed."""
    if not ratios:
        return [what, f"{'≥' if at_least else '≤'} {aim:g}{unit}", "not measured", "-"]
    median = statistics.median(ratios)
    met = median >= aim if at_least else median <= aim
    return [
        what,
        f"{'≥' if at_least else '≤'} {aim:g}{unit}",
        f"{ratio_text(ratios, small)}{unit}",
        "met" if met else f"**missed** ({small(median)}{unit})",
    ]


def target_rows(runs: list[Run]) -> list[list[str]]:
    """Issue 7 point 4: each target as a same-round ratio of this run, met or missed."""
    rows = [
        _target(
            "proxy only: `bastion-1w` ÷ `nginx-proxy` req/s",
            same_round_ratios(runs, PROXY_ONLY, "nginx-proxy"),
            AIM_RATIO,
            True,
        ),
        _target(
            "proxy only: `bastion-1w` ÷ `eg-proxy` req/s",
            same_round_ratios(runs, PROXY_ONLY, "eg-proxy"),
            EG_TARGET_PROXY,
            True,
        ),
        _target(
            "protected route: `bastion-oauth-valid` ÷ `bastion-1w` req/s",
            same_round_ratios(runs, "bastion-oauth-valid", PROXY_ONLY),
            OWN_PROXY_TARGET,
            True,
        ),
        _target(
            "protected route: `bastion-oauth-valid` ÷ `eg-jwt` req/s",
            same_round_ratios(runs, "bastion-oauth-valid", "eg-jwt"),
            EG_TARGET_JWT,
            True,
        ),
        _target(
            "token issuance: `bastion-oauth-issue` ÷ `eg-issue` req/s",
            same_round_ratios(runs, "bastion-oauth-issue", "eg-issue"),
            EG_TARGET_ISSUE,
            True,
        ),
    ]
    for ours, theirs in EG_PAIRS.items():
        rows.append(
            _target(
                f"p99 at 64 connections: `{ours}` ÷ `{theirs}`",
                same_round_ratios(runs, ours, theirs, p99),
                EG_TARGET_P99,
                False,
            )
        )
    for ours in EG_PAIRS:
        rss = worker_rss(measured(runs, ours))
        what = f"RSS per worker: `{ours}` peak"
        if rss is None:
            rows.append([what, f"< {AIM_RSS_MB:g} MB", "not measured", "-"])
            continue
        verdict = "met" if rss < AIM_RSS_MB else f"**missed** ({rss:.1f} MB)"
        rows.append([what, f"< {AIM_RSS_MB:g} MB", f"{rss:.1f} MB", verdict])
    return rows


def eg_section(runs: list[Run]) -> list[str]:
    """Issue 7: Bastion against Express Gateway in the same rounds, and the targets."""
    if not any(measured(runs, name) for name in EG):
        return []
    return [
        "## Against Express Gateway (issue 7)",
        "",
        "Express Gateway 1.16.11 on node 20, one process pinned on the SUT core like "
        "`bastion-1w`, the same upstream and wrk settings, its default in-memory emulated Redis; "
        "`eg-jwt`, `eg-invalid` and `eg-issue` run its oauth2 policy with JWT access tokens (see "
        "README.md for the set-up). What each Express Gateway config sends:",
        "",
        *[f"- `{name}`: {what}." for name, what in EG.items()],
        "",
        "Ratios: Bastion's figure ÷ Express Gateway's in the same round, median (min-max) over "
        "rounds: for req/s higher is better, for p99 lower is better. RSS: peak per process, max "
        "over rounds. errors: Bastion / Express Gateway (answers other than the expected status, "
        "plus socket errors).",
        "",
        *table(
            [
                "Bastion / Express Gateway",
                "Bastion req/s",
                "EG req/s",
                "x EG req/s",
                "Bastion p99 ms",
                "EG p99 ms",
                "x EG p99",
                "Bastion peak RSS MB",
                "EG peak RSS MB",
                "errors",
            ],
            eg_rows(runs),
            "lrrrrrrllr",
        ),
        "",
        "**Targets of issue 7 point 4** (same-round ratios of this run, median (min-max); met or "
        "missed on the median):",
        "",
        *table(["target", "aim", "this run", "verdict"], target_rows(runs), "lrrl"),
        "",
    ]


# --- 10 MB upload and download (issue 7) ---------------------------------------------------


def mib_per_s(run: Run) -> float:
    """Body throughput of a 10 MB run: req/s x 10 MiB, in MiB/s (headers not counted)."""
    return rps(run) * BIG_MIB


def transfer_rows(runs: list[Run]) -> list[list[str]]:
    """One row per 10 MB scenario that ran: req/s, MiB/s, latency, the same-round ratios to
    nginx-proxy and to Express Gateway of the same direction, SUT cores, peak RSS, errors."""
    rows = []
    for name, (direction, what) in TRANSFER.items():
        done = measured(runs, name)
        if not done:
            continue
        rates = [rps(r) for r in done]
        mib = [mib_per_s(r) for r in done]
        nginx, eg = TRANSFER_REFS[direction]
        rows.append(
            [
                name,
                direction,
                what,
                f"{statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f})",
                f"{statistics.median(mib):,.0f} ({min(mib):,.0f}-{max(mib):,.0f})",
                f"{median_of(done, lambda r: load_field(r, 'p50_ms')):.1f}",
                f"{median_of(done, p99):.1f}",
                ratio_text(same_round_ratios(runs, name, nginx)),
                ratio_text(same_round_ratios(runs, name, eg)),
                f"{median_of(done, lambda r: r['measurement']['sut_cores']):.2f}",
                rss_text(peak_rss(done)),
                str(sum(errors_of(r) for r in done)),
            ]
        )
    return rows


def transfer_connections(runs: list[Run]) -> str:
    """wrk -c of the 10 MB runs, as recorded with each run ("8", or "8, 64" if they differed)."""
    found = sorted(
        {int(r.get("connections") or 0) for n in TRANSFER for r in measured(runs, n)} - {0}
    )
    return ", ".join(map(str, found)) or "?"


def transfer_section(runs: list[Run]) -> list[str]:
    """Issue 7 point 2: a 10 MiB download and upload through nginx as a proxy, Bastion 1 worker
    and Express Gateway, in MiB/s and RSS, as same-round ratios to nginx-proxy and to EG."""
    rows = transfer_rows(runs)
    if not rows:
        return []
    conns = transfer_connections(runs)
    return [
        "## 10 MB upload and download (issue 7)",
        "",
        "Each system pinned on the SUT core as in the other configs, the same upstream nginx on "
        "the load core. Download: `GET /big`, which the upstream serves from a 10 MiB file "
        "(sendfile). Upload: `POST /upload` with a 10 MiB body (`wrk -s bench/upload.lua`, "
        "`Content-Type: application/octet-stream`); the upstream reads the whole body into "
        "memory, then answers 200 with the bytes it read. "
        f"**wrk runs with `-c{conns}`** (not 64: {conns} x 10 MiB in flight) and `--timeout 30s` "
        "on every system. The sanity request must move the whole 10 MiB (the exact file, or the "
        "upstream's count of the bytes read).",
        "",
        "MiB/s: req/s x 10 MiB (10,485,760 bytes) of body per request, in MiB/s (2^20 bytes; "
        "x 1.048576 for MB/s), headers not counted. Ratios: the config's req/s (so also MiB/s) "
        "÷ the reference's in the same round, median (min-max): `x nginx-proxy` against "
        "`nginx-proxy-big` or `nginx-proxy-upload`, `x EG` against `eg-proxy-big` or "
        "`eg-proxy-upload`. RSS: peak per process (sampled every 0.5 s; nginx master first), max "
        "over rounds; the first number is the sum.",
        "",
        *table(
            [
                "config",
                "direction",
                "system",
                "req/s median (min-max)",
                "MiB/s median (min-max)",
                "p50 ms",
                "p99 ms",
                "x nginx-proxy",
                "x EG",
                "SUT cores",
                "peak RSS MB",
                "errors",
            ],
            rows,
            "lllrrrrrrrlr",
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
        *eg_section(runs),
        *transfer_section(runs),
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


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python bench/report.py bench/out/bench-….json  (prints markdown)")
    print(render(json.loads(Path(sys.argv[1]).read_text())))


if __name__ == "__main__":
    main()
