"""The 10 MB upload and download scenarios (issue 7): configs, wrk command, report section."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
import systems  # noqa: E402
from measure import UPLOAD_SCRIPT, LoadGenerator, Request  # noqa: E402
from systems import (  # noqa: E402
    BIG_MAX_BODY,
    BIG_PATH,
    BIG_SIZE,
    UPLOAD_PATH,
    UPLOAD_SINK_PATH,
    bastion_config,
    big_payload,
    big_upstream_blocks,
    upload_payload,
    upload_read,
)

import bench  # noqa: E402

TRANSFER_NAMES = [
    "nginx-proxy-big",
    "bastion-1w-big",
    "eg-proxy-big",
    "nginx-proxy-upload",
    "bastion-1w-upload",
    "eg-proxy-upload",
]


def by_name(name: str) -> bench.Scenario:
    return next(s for s in bench.SCENARIOS if s.name == name)


def test_six_transfer_scenarios_in_the_full_run_not_in_quick() -> None:
    transfer = [s for s in bench.SCENARIOS if s.transfer]
    assert [s.name for s in transfer] == TRANSFER_NAMES
    assert {s.system for s in transfer} == {"nginx-proxy", "bastion", "express-gateway"}
    assert all(s.workers == 1 and not s.oauth and not s.oauth2 for s in transfer)
    assert {s.path for s in transfer if s.transfer == "download"} == {BIG_PATH}
    assert {s.path for s in transfer if s.transfer == "upload"} == {UPLOAD_PATH}
    assert [s.name for s in bench.QUICK_SCENARIOS] == ["bastion-1w", "bastion-oauth-invalid"]
    assert list(report.TRANSFER) == TRANSFER_NAMES


def test_payloads_are_10_mib() -> None:
    assert BIG_SIZE == 10_485_760
    assert len(big_payload()) == BIG_SIZE and len(upload_payload()) == BIG_SIZE
    assert BIG_MAX_BODY >= 20_000_000


def test_the_upstream_serves_the_file_and_reads_the_whole_upload() -> None:
    blocks = big_upstream_blocks(Path("/tmp/up"), 8080)
    assert f"location = {BIG_PATH} {{" in blocks
    assert "alias /tmp/up/big.bin;" in blocks and "sendfile on;" in blocks
    upload = blocks[blocks.index(f"location = {UPLOAD_PATH} ") :]
    upload = upload[: upload.index("}")]
    # proxy_pass reads the whole body (in memory) before it sends the body-less sink request
    assert "client_max_body_size 20m;" in upload and "client_body_buffer_size 16m;" in upload
    assert f"proxy_pass http://sink{UPLOAD_SINK_PATH};" in upload
    assert "proxy_pass_request_body off;" in upload
    assert 'proxy_set_header Content-Length "";' in upload
    assert "X-Request-Length $request_length" in upload
    assert 'return 200 "$http_x_request_length\\n";' in blocks
    assert "server 127.0.0.1:8080;" in systems.sink_upstream(8080)


def test_upload_read_parses_the_upstreams_count() -> None:
    assert upload_read(b"10485900\n") == 10_485_900
    assert upload_read(b"") == 0
    assert upload_read(b"<html>") == 0


def test_nginx_proxy_streams_only_in_the_big_configs() -> None:
    plain = systems._proxy_block()
    big = systems._proxy_block(big=True)
    assert "client_max_body_size" not in plain and "proxy_request_buffering" not in plain
    assert "client_max_body_size 20m;" in big
    assert "proxy_request_buffering off;" in big and "proxy_max_temp_file_size 0;" in big
    assert "proxy_buffers 4 256k;" in big and "proxy_buffer_size 256k;" in big
    assert "client_body_buffer_size 256k;" in big and "proxy_buffers" not in plain
    assert big.count("{") == big.count("}")


def test_bastion_route_body_limit_only_when_asked() -> None:
    route = bastion_config(1, 2, False)["routes"][0]  # type: ignore[index]
    assert "limits" not in route
    config = bastion_config(1, 2, False, max_request_body=BIG_MAX_BODY)
    assert config["routes"][0]["limits"] == {"max_request_body": BIG_MAX_BODY}  # type: ignore[index]


def test_transfer_requests_use_8_connections_and_the_upload_script() -> None:
    wrk = LoadGenerator("wrk", threads=1, connections=64)
    up = bench.transfer_request(by_name("bastion-1w-upload"), "http://127.0.0.1:9/upload")
    assert (up.upload_bytes, up.connections, up.timeout_s) == (BIG_SIZE, 8, 30)
    command = wrk.command(up, 10, "1")
    assert command[:3] == ["taskset", "-c", "1"]
    assert "-c8" in command and "-c64" not in command
    assert command[command.index("-s") + 1] == str(UPLOAD_SCRIPT)
    assert command[-3:] == ["--", str(BIG_SIZE), "application/octet-stream"]
    down = bench.transfer_request(by_name("eg-proxy-big"), "http://127.0.0.1:9/big")
    assert down.upload_bytes is None and down.body is None
    command = wrk.command(down, 10, None)
    assert "-c8" in command and "-s" not in command and "--timeout" in command
    # the other scenarios keep the generator's 64 connections
    assert "-c64" in wrk.command(Request("http://127.0.0.1:9/bench?x=1"), 10, None)


def test_upload_lua_posts_a_body_of_the_given_size() -> None:
    text = UPLOAD_SCRIPT.read_text()
    assert 'wrk.method = "POST"' in text
    assert "string.rep(" in text and "tonumber(args[1])" in text
    assert 'wrk.headers["Content-Type"] = args[2]' in text


def test_pyload_refuses_an_upload() -> None:
    pyload = LoadGenerator("pyload", threads=1, connections=8)
    with pytest.raises(ValueError, match="GETs only"):
        pyload.command(Request("http://x/upload", upload_bytes=10), 2, None)


def _run(name: str, round_index: int, rps: float, rss: list[float]) -> dict[str, object]:
    load: dict[str, object] = {
        "requests_per_s": rps,
        "p50_ms": 100.0,
        "p99_ms": 200.0,
        "requests": 10,
        "non_2xx": 0,
    }
    load["socket_errors"] = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    sut = {"peak_rss_mb": rss, "cpu_s": 1.0}
    return {
        "scenario": name,
        "round": round_index,
        "connections": 8,
        "measurement": {"load": load, "sut": sut, "sut_cores": 0.95},
    }


RUNS = [
    _run("nginx-proxy-big", 0, 80.0, [6.6, 6.2]),
    _run("bastion-1w-big", 0, 60.0, [41.0]),
    _run("eg-proxy-big", 0, 40.0, [150.0]),
    _run("nginx-proxy-big", 1, 100.0, [6.7, 6.2]),
    _run("bastion-1w-big", 1, 50.0, [42.0]),
    _run("eg-proxy-big", 1, 50.0, [140.0]),
    _run("bastion-1w-upload", 0, 120.0, [43.0]),
]


def test_mib_per_s_is_req_per_s_times_10_mib() -> None:
    assert report.BIG_MIB == 10
    assert report.mib_per_s(RUNS[1]) == 600.0


def test_transfer_rows_ratios_to_nginx_proxy_and_eg_of_the_same_direction() -> None:
    rows = {row[0]: row for row in report.transfer_rows(RUNS)}
    assert list(rows) == ["nginx-proxy-big", "bastion-1w-big", "eg-proxy-big", "bastion-1w-upload"]
    ours = rows["bastion-1w-big"]
    assert ours[1] == "download"
    assert ours[3] == "55.0 (50.0-60.0)"
    assert ours[4] == "550 (500-600)"
    assert ours[7] == "0.62 (0.50-0.75)"  # 60 ÷ 80 and 50 ÷ 100
    assert ours[8] == "1.25 (1.00-1.50)"  # 60 ÷ 40 and 50 ÷ 50
    assert ours[10:] == ["42 (42.0)", "0"]
    assert rows["nginx-proxy-big"][7] == "1.00" and rows["nginx-proxy-big"][10] == "13 (6.7, 6.2)"
    upload = rows["bastion-1w-upload"]
    assert upload[1] == "upload" and upload[7:9] == ["-", "-"]  # no upload reference ran


def test_the_transfer_section_only_when_a_transfer_ran() -> None:
    assert report.transfer_section([r for r in RUNS if r["scenario"] == "nginx-proxy"]) == []
    section = report.transfer_section(RUNS)
    assert section[0] == "## 10 MB upload and download (issue 7)"
    assert any("`-c8`" in line for line in section)
    assert report.transfer_connections(RUNS) == "8"
    headline = "\n".join(report.headline(RUNS))
    assert "10 MiB download (`bastion-1w-big`, 8 connections): 550 MiB/s" in headline
    assert report.scenarios_in(RUNS)[-1] == "bastion-1w-upload"


@pytest.mark.skipif(systems.find_nginx() is None, reason="nginx is not installed")
def test_10_mib_through_nginx_proxy_and_bastion_to_the_upstream() -> None:
    """The real thing, once each: the upstream serves the file and counts the upload; nginx-proxy
    (big config) and Bastion (route limit 20 MiB) pass both whole."""
    workdir = Path(tempfile.mkdtemp(prefix="bastion-bench-test-"))
    started: list[systems.Server] = []
    try:
        upstream = bench.start_upstream(workdir, bench.Placement(None, None, None), True, big=True)
        started.append(upstream)
        upstream.check_body()  # the small scenarios' answer is unchanged
        for direction in ("download", "upload"):
            upstream.check_transfer(direction)
        for name in ("nginx-proxy-upload", "bastion-1w-upload"):
            sut = bench.start_sut(
                by_name(name), workdir, bench.Placement(None, None, None), upstream
            )
            started.append(sut)
            for direction in ("download", "upload"):
                sut.check_transfer(direction)
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
