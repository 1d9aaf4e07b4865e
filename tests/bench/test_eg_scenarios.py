"""The parts of the Express Gateway scenarios (issue 7) that need no server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
import systems  # noqa: E402
from measure import POST_SCRIPT, LoadGenerator, Request, wait_idle  # noqa: E402
from systems import (  # noqa: E402
    EG_JWT_SECRET,
    EgCredential,
    eg_gateway_config,
    eg_system_config,
    write_eg_config,
)

import bench  # noqa: E402


def by_name(name: str) -> bench.Scenario:
    return next(s for s in bench.SCENARIOS if s.name == name)


def test_jwt_mode_has_a_subject_and_keeps_the_emulated_redis() -> None:
    tokens = eg_system_config(jwt=True)["accessTokens"]
    assert tokens["tokenType"] == "jwt"  # type: ignore[index]
    assert tokens["subject"]  # type: ignore[index]  # else /oauth2/token answers 500
    assert tokens["secretOrPrivateKey"] == EG_JWT_SECRET  # type: ignore[index]
    opaque = eg_system_config(jwt=False)
    assert "tokenType" not in opaque["accessTokens"]  # type: ignore[operator]
    for config in (opaque, eg_system_config(jwt=True)):
        assert config["db"] == {"redis": {"emulate": True, "namespace": "EG"}}


def test_the_gateway_binds_loopback_and_verifies_its_own_jwts() -> None:
    config = eg_gateway_config(8001, 8002, 8003, oauth2=True)
    assert config["http"] == {"port": 8001, "hostname": "127.0.0.1"}
    assert config["admin"] == {"port": 8002, "host": "127.0.0.1"}
    assert config["serviceEndpoints"] == {"backend": {"url": "http://127.0.0.1:8003"}}
    assert config["policies"] == ["proxy", "oauth2"]
    oauth2, proxy = config["pipelines"]["bench"]["policies"]  # type: ignore[index]
    jwt = oauth2["oauth2"][0]["action"]["jwt"]
    assert jwt["checkCredentialExistence"] is False
    assert jwt["secretOrPublicKey"] == EG_JWT_SECRET
    system = eg_system_config(jwt=True)["accessTokens"]
    assert (jwt["issuer"], jwt["audience"]) == (system["issuer"], system["audience"])  # type: ignore[index]
    assert proxy == {"proxy": [{"action": {"serviceEndpoint": "backend"}}]}


def test_proxy_only_has_no_oauth2_policy() -> None:
    config = eg_gateway_config(1, 2, 3, oauth2=False)
    assert config["policies"] == ["proxy"]
    assert [next(iter(p)) for p in config["pipelines"]["bench"]["policies"]] == ["proxy"]  # type: ignore[index]


def test_the_config_dir_has_both_files_and_the_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = tmp_path / "eg"
    models = prefix / "node_modules" / "express-gateway" / "lib" / "config" / "models"
    models.mkdir(parents=True)
    (models / "users.json").write_text("{}")
    monkeypatch.setenv(systems.EG_CACHE_ENV, str(prefix))
    run_dir = tmp_path / "run" / "eg-jwt"
    write_eg_config(run_dir, 8001, 8002, 8003, oauth2=True)
    gateway = yaml.safe_load((run_dir / "gateway.config.yml").read_text())
    system = yaml.safe_load((run_dir / "system.config.yml").read_text())
    assert gateway == eg_gateway_config(8001, 8002, 8003, oauth2=True)
    assert system == eg_system_config(jwt=True)
    assert (run_dir / "models" / "users.json").read_text() == "{}"


def test_eg_missing_says_what_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(systems.EG_CACHE_ENV, str(tmp_path))
    assert "not installed" in (systems.eg_missing() or "")
    package = tmp_path / "node_modules" / "express-gateway"
    package.mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"version": "1.16.10"}))
    assert "not 1.16.11" in (systems.eg_missing() or "")
    (package / "package.json").write_text(json.dumps({"version": "1.16.11"}))
    monkeypatch.setattr(systems, "node_version", lambda: "v22.1.0")
    assert "needs node 20" in (systems.eg_missing() or "")
    monkeypatch.setattr(systems, "node_version", lambda: "v20.20.2")
    assert systems.eg_missing() is None


def test_the_token_form_is_client_credentials_in_the_body() -> None:
    form = EgCredential("app-id", "s3cret").token_form()
    assert form == "grant_type=client_credentials&client_id=app-id&client_secret=s3cret"


def test_wrk_posts_the_body_with_its_content_type_and_a_long_timeout() -> None:
    wrk = LoadGenerator("wrk", threads=1, connections=64)
    request = Request("http://h/oauth2/token", body="a=1", content_type="x/y", timeout_s=30)
    command = wrk.command(request, 10, "1")
    assert command[command.index("-s") + 1] == str(POST_SCRIPT)
    assert command[-4:] == ["http://h/oauth2/token", "--", "a=1", "x/y"]
    assert command[command.index("--timeout") + 1] == "30s"
    plain = wrk.command(Request("http://h/p"), 10, "1")
    assert "--timeout" not in plain and "-s" not in plain
    with pytest.raises(ValueError):
        wrk.command(Request("http://h/p", expect=401, body="a=1"), 10, "1")
    with pytest.raises(ValueError):
        LoadGenerator("pyload", 1, 64).command(request, 10, None)


def test_the_post_script_sets_method_body_and_content_type_in_init() -> None:
    script = POST_SCRIPT.read_text()
    assert 'wrk.method = "POST"' in script and "wrk.body = args[1]" in script
    assert 'wrk.headers["Content-Type"] = args[2]' in script


def test_the_eg_scenarios() -> None:
    eg = [s for s in bench.SCENARIOS if s.system == "express-gateway" and not s.transfer]
    assert [s.name for s in eg] == list(report.EG) == list(report.EG_PAIRS.values())
    assert all(s.workers == 1 and not s.oauth and not s.upstream_oauth for s in eg)
    assert not by_name("eg-proxy").oauth2
    assert (by_name("eg-jwt").token, by_name("eg-jwt").expect) == ("valid", 200)
    assert (by_name("eg-invalid").token, by_name("eg-invalid").expect) == ("invalid", 401)
    issue = by_name("eg-issue")
    assert issue.issue and issue.oauth2 and issue.path == "/oauth2/token"
    assert not any(s.system == "express-gateway" for s in bench.QUICK_SCENARIOS)
    placement = bench.Placement("0", "0,1", "1")
    assert placement.for_sut(by_name("eg-jwt")) == placement.for_sut(by_name("bastion-1w")) == "0"


def test_wait_idle_returns_once_the_process_is_idle() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)  # past the interpreter's start
        assert wait_idle(proc.pid, interval=0.1, timeout=5) < 1.0
    finally:
        proc.kill()
        proc.wait()


def _run(name: str, round_index: int, rps: float, p99: float, rss: float) -> dict[str, object]:
    load: dict[str, object] = {
        "requests_per_s": rps,
        "p50_ms": 1.0,
        "p99_ms": p99,
        "requests": 10,
        "non_2xx": 0,
    }
    load["socket_errors"] = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    return {
        "scenario": name,
        "round": round_index,
        "measurement": {"load": load, "sut": {"peak_rss_mb": [rss], "cpu_s": 1.0}, "sut_cores": 1},
    }


RUNS = [
    _run("nginx-proxy", 0, 80_000, 1.5, 7),
    _run("bastion-1w", 0, 24_000, 6.0, 39),
    _run("eg-proxy", 0, 3_000, 60.0, 190),
    _run("bastion-oauth-valid", 0, 21_000, 7.0, 45),
    _run("eg-jwt", 0, 1_000, 140.0, 200),
    _run("bastion-oauth-issue", 0, 6_000, 25.0, 45),
    _run("eg-issue", 0, 12.0, 8_000.0, 120),
    _run("nginx-proxy", 1, 60_000, 1.5, 7),
    _run("bastion-1w", 1, 30_000, 6.0, 38),
    _run("eg-proxy", 1, 3_000, 20.0, 190),
]


def test_each_bastion_scenario_beside_its_eg_counterpart() -> None:
    rows = {row[0]: row for row in report.eg_rows(RUNS)}
    assert list(rows) == [
        "bastion-1w / eg-proxy",
        "bastion-oauth-valid / eg-jwt",
        "bastion-oauth-issue / eg-issue",
    ]  # no invalid-token pair ran
    proxy = rows["bastion-1w / eg-proxy"]
    assert proxy[1:4] == ["27,000", "3,000", "9.00 (8.00-10.00)"]  # same-round req/s ratio
    assert proxy[6] == "0.20 (0.10-0.30)"  # p99 6 ÷ 60 and 6 ÷ 20
    assert proxy[7:10] == ["39 (39.0)", "190 (190.0)", "0 / 0"]
    issue = rows["bastion-oauth-issue / eg-issue"]
    assert issue[2] == "12.0" and issue[3] == "500.00" and issue[6] == "0.0031"


def test_the_targets_checklist() -> None:
    rows = {row[0]: row[1:] for row in report.target_rows(RUNS)}
    assert rows["proxy only: `bastion-1w` ÷ `nginx-proxy` req/s"] == [
        "≥ 0.6x",
        "0.40 (0.30-0.50)x",
        "**missed** (0.40x)",
    ]
    assert rows["proxy only: `bastion-1w` ÷ `eg-proxy` req/s"][2] == "met"
    assert rows["protected route: `bastion-oauth-valid` ÷ `bastion-1w` req/s"][1:] == [
        "0.88x",
        "met",
    ]
    assert rows["protected route: `bastion-oauth-valid` ÷ `eg-jwt` req/s"][1:] == ["21.00x", "met"]
    assert rows["token issuance: `bastion-oauth-issue` ÷ `eg-issue` req/s"][2] == "met"
    assert rows["p99 at 64 connections: `bastion-1w` ÷ `eg-proxy`"][2] == "met"  # median 0.20
    assert rows["p99 at 64 connections: `bastion-oauth-invalid` ÷ `eg-invalid`"][1] == (
        "not measured"
    )
    assert rows["RSS per worker: `bastion-1w` peak"] == ["< 40 MB", "39.0 MB", "met"]
    assert rows["RSS per worker: `bastion-oauth-valid` peak"][2] == "**missed** (45.0 MB)"


def test_the_eg_section_only_when_eg_ran() -> None:
    assert report.eg_section([r for r in RUNS if not str(r["scenario"]).startswith("eg-")]) == []
    section = report.eg_section(RUNS)
    assert section[0] == "## Against Express Gateway (issue 7)"
    assert any(line.startswith("| target | aim |") for line in section)
    headline = "\n".join(report.headline(RUNS))
    assert "`bastion-1w` 9.00 (8.00-10.00)x `eg-proxy`" in headline
