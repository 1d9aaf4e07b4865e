"""The parts of the oauth scenarios (issue 5 point 7) that need no server."""

from __future__ import annotations

import sys
from pathlib import Path

import jwt
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
from measure import LoadGenerator, Request, parse_wrk  # noqa: E402
from systems import OAUTH_CLIENT_SECRET, bastion_config, forge, oauth_plugin  # noqa: E402

import bench  # noqa: E402

WRK_401 = """Running 2s test @ http://127.0.0.1:1/bench?x=1
  1 threads and 64 connections
  Latency Distribution
     50%    5.50ms
     99%   10.69ms
  23054 requests in 2.00s, 4.16MB read
  Non-2xx or 3xx responses: 23054
Requests/sec:  11527.00
Transfer/sec:      2.08MB
Unexpected status: 3
"""


def test_wrk_counts_the_expected_status_not_non_2xx() -> None:
    load = parse_wrk(WRK_401)
    assert (load.non_2xx, load.unexpected_status, load.errors) == (23054, 3, 3)
    assert parse_wrk(WRK_401.replace("Unexpected status: 3\n", "")).errors == 23054


def test_wrk_gets_the_header_and_the_status_script_only_for_a_non_2xx_status() -> None:
    wrk = LoadGenerator("wrk", threads=1, connections=64)
    invalid = wrk.command(Request("http://h/p", ("Authorization: Bearer x",), 401), 10, "1")
    assert invalid[-2:] == ["--", "401"] and "-s" in invalid
    assert invalid[invalid.index("-H") + 1] == "Authorization: Bearer x"
    valid = wrk.command(Request("http://h/p", ("Authorization: Bearer x",)), 10, "1")
    assert "-s" not in valid and valid[-1] == "http://h/p"


def test_the_forged_token_is_well_formed_and_wrongly_signed() -> None:
    claims = {"sub": "bench", "aud": "default", "client_id": "bench-client"}
    token = jwt.encode(claims, OAUTH_CLIENT_SECRET, algorithm="HS256")
    forged = forge(token)
    assert forged.rsplit(".", 1)[0] == token.rsplit(".", 1)[0] and forged != token
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, OAUTH_CLIENT_SECRET, algorithms=["HS256"], audience="default")


def test_the_oauth_config_variant(tmp_path: Path) -> None:
    config = bastion_config(1, 2, False, store=tmp_path / "bench.db", plugins=oauth_plugin())
    assert config["store"] == f"sqlite:///{tmp_path}/bench.db"
    oauth = config["plugins"]["oauth"]  # type: ignore[index]
    assert oauth["global_auth"] is True and len(oauth["consumers"][0]["client_secret"]) >= 32
    assert "plugins" not in bastion_config(1, 2, access_log=False)
    valid = next(s for s in bench.SCENARIOS if s.name == "bastion-oauth-valid")
    assert valid.plugins(None) == oauth_plugin()


def test_the_oauth_scenarios_are_one_worker_and_in_quick_mode_stays_small() -> None:
    oauth = [s for s in bench.SCENARIOS if s.oauth]
    assert [s.name for s in oauth] == list(report.OAUTH)
    assert all(s.workers == 1 for s in oauth)
    assert [s.name for s in bench.QUICK_SCENARIOS] == ["bastion-1w", "bastion-oauth-invalid"]


def _run(name: str, round_index: int, rps: float, cores: float) -> dict[str, object]:
    load = {"requests_per_s": rps, "p50_ms": 1.0, "p99_ms": 2.0, "requests": 10, "non_2xx": 0}
    load["socket_errors"] = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    sut = {"peak_rss_mb": [50.0], "cpu_s": cores}
    return {
        "scenario": name,
        "round": round_index,
        "measurement": {"load": load, "sut": sut, "sut_cores": cores},
    }


def test_the_report_gives_same_round_ratios_to_bastion_1w() -> None:
    runs = [
        _run("bastion-1w", 0, 10_000, 1.0),
        _run("bastion-oauth-issue", 0, 5_000, 1.0),
        _run("bastion-1w", 1, 20_000, 1.0),
        _run("bastion-oauth-issue", 1, 6_000, 0.5),
    ]
    (row,) = report.oauth_rows(runs, ["bastion-1w"])
    assert row[0] == "bastion-oauth-issue"
    assert row[5] == "0.40 (0.30-0.50)"  # req/s ÷ bastion-1w, each round
    assert row[7] == "0.55 (0.50-0.60)"  # per CPU-second
