"""The parts of the upstream-oauth scenarios (issue 6 point 6) that need no server."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
from systems import (  # noqa: E402
    IDP_APP,
    IDP_CLIENT_ID,
    IDP_CLIENT_SECRET,
    bastion_config,
    upstream_oauth_plugin,
)

import bench  # noqa: E402
from tests.e2e.idp_app import DEFAULT_CLIENTS  # noqa: E402


def by_name(name: str) -> bench.Scenario:
    return next(s for s in bench.SCENARIOS if s.name == name)


def test_the_bench_client_is_one_the_test_idp_knows() -> None:
    assert IDP_APP.is_file()
    client = DEFAULT_CLIENTS[IDP_CLIENT_ID]
    assert client == {"secret": IDP_CLIENT_SECRET, "auth_method": "client_secret_post"}


def test_the_upstream_oauth_config_variant(tmp_path: Path) -> None:
    plugins = upstream_oauth_plugin(4321)
    config = bastion_config(1, 2, False, store=tmp_path / "bench.db", plugins=plugins)
    assert config["store"] == f"sqlite:///{tmp_path}/bench.db"
    section = config["plugins"]["upstream-oauth"]  # type: ignore[index]
    assert section == {
        "oauth": {
            "token_endpoint": "http://127.0.0.1:4321/token",
            "client_id": "post-client",
            "client_secret": "post-secret",
        }
    }
    short = upstream_oauth_plugin(4321, eagerly_expire=0)["upstream-oauth"]
    assert short["cache"] == {"eagerly_expire": 0}  # type: ignore[index]


def test_the_upstream_oauth_scenarios() -> None:
    cached, short = by_name("bastion-upstream-oauth"), by_name("bastion-upstream-oauth-ttl2")
    assert list(report.UPSTREAM_OAUTH) == [cached.name, short.name]
    for scenario in (cached, short):
        assert scenario.system == "bastion" and scenario.workers == 1
        assert scenario.path == bench.MEASURED_PATH and scenario.expect == 200
        assert not scenario.oauth and scenario.token is None
    assert cached.idp_expires_in == 3600 and cached.token_ttl == 3595  # default eagerly_expire 5
    assert (short.idp_expires_in, short.eagerly_expire, short.token_ttl) == (2, 0, 2)
    assert short.plugins(99) == upstream_oauth_plugin(99, 0)
    assert by_name("bastion-1w").plugins(99) is None
    assert all(not s.upstream_oauth for s in bench.QUICK_SCENARIOS)


def test_the_run_json_carries_the_idp_count() -> None:
    run = bench.Run("bastion-upstream-oauth-ttl2", 0, idp=bench.IdpCount(7, 2, 2))
    assert run.to_json()["idp"] == {"token_requests": 7, "expires_in": 2, "ttl_s": 2}
    assert bench.Run("bastion-1w", 0).to_json()["idp"] is None


def _run(name: str, round_index: int, rps: float, idp: int | None) -> dict[str, object]:
    load = {"requests_per_s": rps, "p50_ms": 1.0, "p99_ms": 2.0, "requests": int(rps * 10)}
    load |= {"non_2xx": 0, "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}}
    measurement = {
        "load": load,
        "sut": {"peak_rss_mb": [50.0], "cpu_s": 10.0},
        "sut_cores": 1.0,
        "duration_s": 10.0,
        "foreign_cores": 0.0,
        "steal_cores": 0.0,
    }
    ttl = 2 if name.endswith("ttl2") else 3595
    return {
        "scenario": name,
        "round": round_index,
        "measurement": measurement,
        "idp": None if idp is None else {"token_requests": idp, "expires_in": ttl, "ttl_s": ttl},
    }


def test_idp_requests_per_1000_client_requests_and_the_ideal() -> None:
    figures = report.idp_figures(_run("bastion-upstream-oauth-ttl2", 0, 20_000, 7))
    assert figures is not None
    assert figures["client_requests"] == 200_000 and figures["idp_requests"] == 7
    assert figures["per_1000"] == 7 * 1000 / 200_000
    assert figures["ideal"] == 5.0  # 10 s ÷ 2 s: one per expiry
    assert abs(figures["refresh_ahead"] - 10 / 1.5) < 1e-9  # renewed at 3/4 of the TTL
    assert report.idp_figures(_run("bastion-1w", 0, 20_000, None)) is None


def test_the_idp_table_has_each_round_and_the_total() -> None:
    runs = [
        _run("bastion-1w", 0, 20_000, None),
        _run("bastion-upstream-oauth", 0, 18_000, 0),
        _run("bastion-upstream-oauth-ttl2", 0, 10_000, 6),
        _run("bastion-upstream-oauth-ttl2", 1, 10_000, 7),
    ]
    rows = report.idp_rows(runs)
    assert [row[:2] for row in rows] == [
        ["bastion-upstream-oauth", "all rounds"],
        ["bastion-upstream-oauth-ttl2", "round 1"],
        ["bastion-upstream-oauth-ttl2", "round 2"],
        ["bastion-upstream-oauth-ttl2", "all rounds"],
    ]
    total = rows[-1]
    assert total[4:8] == ["200,000", "13", "0.0650", "10.0"]  # 13 for 200k; ideal 20 s ÷ 2 s
    assert "13 IdP requests for 200,000 client requests" in report.idp_headline(runs)
    (uo, ttl2) = report.plugin_rows(runs, ["bastion-1w"], report.UPSTREAM_OAUTH)
    assert uo[5] == "0.90" and ttl2[5] == "0.50"  # req/s ÷ bastion-1w, same round


def test_a_stampede_or_no_renewal_is_flagged() -> None:
    info = {"source_digest": {"start": "a", "end": "a"}}
    calm = [_run("bastion-upstream-oauth-ttl2", 0, 10_000, 7)]
    assert not any("IdP" in line for line in report.checks(calm, info))
    for count in (0, 60):
        (line,) = [x for x in report.checks([_run(calm[0]["scenario"], 0, 10_000, count)], info)]
        assert "renewal is broken or stampeding" in line
    cached = [_run("bastion-upstream-oauth", 0, 10_000, 0)]  # no expiry in 10 s: 0 is right
    assert not any("IdP" in line for line in report.checks(cached, info))
