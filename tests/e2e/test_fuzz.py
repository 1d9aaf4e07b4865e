"""A hypothesis fuzzer on the request path of a real `bastion run` process.

Request bytes come from a grammar (method, target with random segments, escapes and
dot-segments, version, header lines with random names and values, invalid bytes included,
bodies framed by Content-Length or chunked, pipelines of up to three requests), then some are
truncated or mutated byte by byte. Each sample goes over a fresh socket; the strategy records
what the gateway owes it:

- every response has a well-formed status line, never 500, and never another 5xx except 501
  for a Transfer-Encoding it does not implement, 505 for an HTTP version other than 1.0 and
  1.1, and 502 for the route whose upstream is down (`dead.test`); the live upstream is
  healthy, so 502 and 504 appear nowhere else;
- a request built only from valid parts (`valid`) gets 200 (502 on the dead route), the
  connection keeps serving the pipeline unless a response said `Connection: close`, and the
  upstream receives it once, body intact, with the headers plugin's edits (on fuzz.test) and
  without identity headers;
- no request that came after a `Connection: close` answer ever reaches the upstream
  (RFC 9112 §9.6): each request carries an `X-Fuzz-Id` that the upstream's record shows;
- no read times out, unless the sample is incomplete by construction (a truncation, a mutation,
  a body shorter than its framing says) and not a byte of that response arrived;
- the process is alive after every sample; at the end it still answers a normal request and
  /healthz, and its log holds no Python traceback.

Bounded: `BASTION_FUZZ_EXAMPLES` examples (300 by default) and `BASTION_FUZZ_SECONDS` of
sending (45 by default; the examples left after it pass without being sent). The pipelines in
`AFTER_CLOSE` are also checked on their own, as plain tests.
"""

from __future__ import annotations

import os
import re
import socket
import string
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.e2e.procs import Gateway, free_port, gateway_config, run_gateway, run_python
from tests.e2e.raw_upstream import RawConn, parse_head, read_records

RAW_UPSTREAM = Path(__file__).with_name("raw_upstream.py")
EXAMPLES = int(os.environ.get("BASTION_FUZZ_EXAMPLES", "300"))
BUDGET = float(os.environ.get("BASTION_FUZZ_SECONDS", "45"))  # then the remaining examples pass
TIMEOUT = 2.0  # seconds a socket waits for the gateway
LIMITS = {
    "max_request_body": 4096,
    "max_header_size": 8192,
    "max_header_count": 50,
    "client_timeout": 1,
    "header_timeout": 1,
    "keepalive_timeout": 2,
}


# --- the gateway under test ------------------------------------------------------------------


@dataclass
class Target:
    gateway: Gateway
    record: Path  # what the live upstream received (raw_upstream.py's record)
    never: set[str] = field(default_factory=set)  # X-Fuzz-Ids that must never reach it


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("fuzz")
    upstream_port, dead_port = free_port(), free_port()  # nothing ever listens on dead_port
    record = tmp / "upstream.jsonl"
    with run_python(
        RAW_UPSTREAM, "--port", str(upstream_port), "--record", str(record), port=upstream_port
    ):
        config = gateway_config(
            upstream_port,
            free_port(),
            limits=LIMITS,
            services=[
                {"name": "live", "url": f"http://127.0.0.1:{upstream_port}", "timeout": 1},
                {"name": "dead", "url": f"http://127.0.0.1:{dead_port}", "connect_timeout": 1},
            ],
            routes=[
                {"name": "dead", "domains": ["dead.test"], "path": "/", "service": "dead"},
                {"name": "exact", "path": "/exact", "path_type": "exact", "service": "live"},
                {"name": "regex", "path": "/re/[a-z]+", "path_type": "regex", "service": "live"},
                {"name": "all", "path": "/", "service": "live"},
            ],
            # only on fuzz.test: plain.test requests take the path without request plugins
            plugins={
                "headers": {
                    "_rules_": [
                        {
                            "_match_domain_": ["fuzz.test"],
                            "request": {"set": {"X-Fuzz": "1"}, "remove": ["X-Drop"]},
                        }
                    ]
                }
            },
        )
        with run_gateway(tmp, config) as gateway:
            yield Target(gateway, record)


# --- the grammar -------------------------------------------------------------------------------


@dataclass
class Request:
    raw: bytes
    method: str
    complete: bool = True  # all the bytes its framing announces are there
    valid: bool = True  # built from valid parts only: must be served
    http1: bool = True  # the request line says HTTP/1.0 or HTTP/1.1
    dead: bool = False  # routed to the upstream that is down: 502
    upstream: bool = False  # valid, and must reach the live upstream (not health, not dead)
    plugin: bool = False  # the headers plugin runs on it (host fuzz.test)
    payload: bytes = b""  # the body as the upstream must receive it (de-chunked)


@dataclass
class Sample:
    raw: bytes
    requests: list[Request]
    complete: bool
    valid: bool
    half_close: bool
    kind: str
    dead_hosts: bool = field(init=False)
    te: bool = field(init=False)

    def __post_init__(self) -> None:
        lowered = self.raw.lower()
        self.dead_hosts = b"dead.test" in lowered
        self.te = b"transfer-encoding" in lowered


TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
UNRESERVED = string.ascii_letters + string.digits + "-._~"
MANAGED = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect", "te"}

valid_methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
wild_methods = st.one_of(
    st.sampled_from(
        ["CONNECT", "TRACE", "PRI", "get", "G ET", "", "GET\x00", "\xffGET", "M-SEARCH", "PURGE"]
    ),
    st.text(TCHAR, min_size=1, max_size=12),
)

segment = st.one_of(
    st.text(UNRESERVED + "!$&'()*+,;=:@", max_size=12),
    st.sampled_from([".", "..", "%2e", "%2E%2e", ".%2e", "", "%2F", "%2f..", "healthz"]),
    st.builds(lambda b, low: f"%{b:02X}".lower() if low else f"%{b:02X}", st.integers(0, 255),
              st.booleans()),
)  # fmt: skip
query = st.text(UNRESERVED + "=&%/?:@!$'()*+,;", max_size=30)
valid_paths = st.one_of(
    st.builds(lambda segs: "/" + "/".join(segs), st.lists(segment, max_size=6)),
    st.sampled_from(["/", "/healthz", "/readyz", "/exact", "/re/abc", "/a/../exact", "//x"]),
)


HEALTH = ("/healthz", "/readyz")  # answered before routing, whatever the host


@st.composite
def valid_targets(draw: st.DrawFn) -> tuple[str, str | None]:
    """(target, host named in an absolute-form target) of a well-formed target."""
    path = draw(valid_paths)
    target = path + ("?" + draw(query) if draw(st.booleans()) else "")
    if draw(st.integers(0, 9)) == 0:
        host = draw(st.sampled_from(["fuzz.test", "dead.test", "FUZZ.test:81"]))
        return f"http://{host}{target}", host
    return target, None


wild_targets = st.one_of(
    st.sampled_from(["*", "fuzz.test:80", "", "/%zz", "/%4", "/a%", "/a b", "/#frag", "/\x7f",
                     "https://fuzz.test", "http://", "http://[::1/x", "/" + "x" * 9000]),
    st.text(st.characters(min_codepoint=1, max_codepoint=0xFF), max_size=20).map(lambda t: "/" + t),
)  # fmt: skip
valid_versions = st.sampled_from(["HTTP/1.1", "HTTP/1.0"])
wild_versions = st.sampled_from(
    ["HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "HTTP/1", "HTTP/11", "http/1.1", "HTTP/1.1 ", "", "HTTP"]
)

header_names = st.text(TCHAR, min_size=1, max_size=16).filter(lambda n: n.lower() not in MANAGED)
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
).map(str.strip)
known_headers = st.sampled_from(
    [
        "Accept: */*",
        "User-Agent: fuzz/1",
        "X-Request-Id: fuzz-1234",
        "X-Request-Id: not valid!",
        "X-Forwarded-For: 10.0.0.1",
        "X-Mse-Consumer: admin",
        "X_Mse_Consumer: admin",
        "X-Drop: 1",
        "X-Fuzz: client",
        "Cookie: a=1; b=2",
        "Authorization: Bearer x.y.z",
        "Connection: keep-alive",
        "Expect: 100-continue",
        "Keep-Alive: timeout=5",
    ]
)
valid_headers = st.lists(
    st.one_of(known_headers, st.builds(lambda n, v: f"{n}: {v}", header_names, header_values)),
    max_size=6,
)
wild_header_lines = st.one_of(
    st.sampled_from(
        [
            "Host: fuzz.test",
            "Host: dead.test",
            "Host:",
            "Content-Length: 5",
            "Content-Length: abc",
            "Content-Length: -1",
            "Content-Length: 1, 2",
            "Content-Length: 99999999999999999999",
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: gzip",
            "Transfer-Encoding: chunked, gzip",
            "Transfer-Encoding : chunked",
            "Expect: 200-ok",
            "Upgrade: websocket",
            "Upgrade: h2c",
            "Connection: Upgrade",
            "Connection: close",
            "X-Bad : 1",
            " folded continuation",
            "\tfolded",
            "NoColon",
            ": empty name",
            "X-Nul: a\x00b",
            "X-Cr: a\rb",
            "X-Lf: a\nb",
            "X-Big: " + "b" * 9000,
        ]
    ),
    st.builds(
        lambda n, v: f"{n}: {v}",
        st.text(st.characters(min_codepoint=0, max_codepoint=0xFF), min_size=1, max_size=12),
        st.text(st.characters(min_codepoint=0, max_codepoint=0xFF), max_size=40),
    ),
)
bodies = st.binary(max_size=600)


def chunked(data: bytes, cuts: list[int], ext: bool) -> bytes:
    pieces, last = [], 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        if cut > last:
            pieces.append(data[last:cut])
            last = cut
    extension = b";a=b" if ext else b""
    framed = b"".join(b"%x%s\r\n%s\r\n" % (len(p), extension, p) for p in pieces)
    return framed + b"0\r\n\r\n"


Framing = tuple[list[str], bytes, bytes, bool, bool]


@st.composite
def framings(draw: st.DrawFn, valid: bool, chunked_ok: bool) -> Framing:
    """(framing header lines, body bytes, payload, complete, valid) for one request."""
    body = draw(bodies)
    choices = ["none", "length", "chunked"] if chunked_ok else ["none", "length"]
    if not valid:
        choices += ["longer", "shorter", "bad-length", "two-lengths", "cl-te", "te-other",
                    "bad-chunk", "no-last-chunk", "too-big"]  # fmt: skip
    kind = draw(st.sampled_from(choices))
    if kind == "none":
        return [], b"", b"", True, True
    if kind == "length":
        return [f"Content-Length: {len(body)}"], body, body, True, True
    if kind == "chunked":
        cuts = draw(st.lists(st.integers(0, 600), max_size=3))
        framed = chunked(body, cuts, draw(st.booleans()))
        if draw(st.booleans()):
            framed = framed[:-2] + b"X-Trailer: t\r\n\r\n"
        return ["Transfer-Encoding: chunked"], framed, body, True, True
    te = "Transfer-Encoding: chunked"
    if kind == "longer":
        return [f"Content-Length: {len(body) + draw(st.integers(1, 50))}"], body, b"", False, False
    if kind == "shorter":
        # the bytes past the length start a next request that never ends: may stall
        return [f"Content-Length: {max(len(body) - 3, 0)}"], body + b"tail", b"", False, False
    if kind == "bad-length":
        value = draw(st.sampled_from(["abc", "-1", "+3", "0x3", "3 3", "", "1.0", "٣"]))
        return [f"Content-Length: {value}"], body, b"", False, False
    if kind == "two-lengths":
        return [f"Content-Length: {len(body)}"] * 2, body, b"", False, False
    if kind == "cl-te":
        return [f"Content-Length: {len(body)}", te], body, b"", False, False
    if kind == "te-other":
        value = draw(st.sampled_from(["gzip", "identity", "chunked, gzip", "xchunked", "chunked,"]))
        return [f"Transfer-Encoding: {value}"], body, b"", False, False
    if kind == "bad-chunk":
        bad = draw(st.sampled_from([b"zz\r\n", b"-1\r\n", b"5\r\nab\r\n", b"3\nabc\n", b"0x3\r\n"]))
        return [te], bad + chunked(body, [], False), b"", False, False
    if kind == "no-last-chunk":
        return [te], chunked(body, [], False)[:-5], b"", False, False
    # too-big: over max_request_body, declared up front or found while streaming
    big = b"z" * 5000
    if draw(st.booleans()):
        return [f"Content-Length: {len(big)}"], big, b"", True, False
    return [te], chunked(big, [1000, 2000, 3000], False), b"", True, False


@st.composite
def requests(draw: st.DrawFn, valid: bool, last: bool) -> Request:
    """One request; `valid` ones are built from valid parts only."""
    parts_valid = valid or draw(st.integers(0, 3)) == 0  # wild requests keep some valid parts
    method = draw(valid_methods if parts_valid or draw(st.booleans()) else wild_methods)
    if parts_valid or draw(st.booleans()):
        target, authority = draw(valid_targets())
    else:
        target, authority = draw(wild_targets), None
    if valid:
        version = "HTTP/1.0" if last and draw(st.booleans()) else "HTTP/1.1"
    else:
        version = draw(valid_versions if draw(st.booleans()) else wild_versions)
    lines = draw(valid_headers)
    if valid:
        host = draw(st.sampled_from(["fuzz.test", "Fuzz.Test:8080", "plain.test", "dead.test"]))
        if version == "HTTP/1.1" or draw(st.booleans()):
            lines.insert(draw(st.integers(0, len(lines))), f"Host: {host}")
            authority = authority or host
        if not last:
            lines = [h for h in lines if h != "Expect: 100-continue"]
    else:
        if draw(st.booleans()):
            lines.insert(
                0, "Host: " + draw(st.sampled_from(["fuzz.test", "plain.test", "dead.test"]))
            )
        for _ in range(draw(st.integers(0, 3))):
            lines.insert(draw(st.integers(0, len(lines))), draw(wild_header_lines))
        if draw(st.integers(0, 19)) == 0:
            lines += [f"X-Many-{i}: {i}" for i in range(60)]  # over max_header_count
    # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing
    framing, body, payload, complete, framing_valid = draw(framings(valid, version != "HTTP/1.0"))
    lines += framing
    eol = "\r\n" if valid or draw(st.integers(0, 4)) else draw(st.sampled_from(["\n", "\r"]))
    head = f"{method} {target} {version}".rstrip(" ") if version else f"{method} {target}"
    raw = (eol.join([head, *lines]) + eol + eol).encode("latin-1", "replace") + body
    path = target.split("?", 1)[0]
    if path.startswith("http://"):
        path = "/" + "".join(path.split("/", 3)[3:])
    dead = valid and authority == "dead.test" and path not in HEALTH
    valid = valid and framing_valid
    upstream = valid and not dead and path not in HEALTH
    http1 = version in ("HTTP/1.1", "HTTP/1.0")
    plugin = (authority or "").lower().split(":")[0] == "fuzz.test"
    return Request(raw, method, complete, valid, http1, dead, upstream, plugin, payload)


@st.composite
def samples(draw: st.DrawFn) -> Sample:
    count = draw(st.integers(1, 3))
    valid = draw(st.booleans())
    # an invalid pipeline mixes in valid requests: none may be served after a refusal
    items = [draw(requests(valid or draw(st.booleans()), i == count - 1)) for i in range(count)]
    for index, item in enumerate(items):
        item.raw = with_id(item.raw, index)
    raw = b"".join(r.raw for r in items)
    complete = all(r.complete for r in items)
    valid = all(r.valid for r in items)
    kind = draw(st.sampled_from(["generated", "generated", "truncated", "mutated"]))
    if kind == "truncated" and len(raw) > 1:
        raw = raw[: draw(st.integers(1, len(raw) - 1))]
        complete = valid = False
    elif kind == "mutated":
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, max(len(data) - 1, 0)))
            op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate"]))
            if op == "flip" and data:
                data[pos] = draw(st.integers(0, 255))
            elif op == "insert":
                data[pos:pos] = draw(
                    st.sampled_from([b"\r", b"\n", b" ", b":", b"\x00", b"\t", b",", b"9", b"\xff"])
                )
            elif op == "delete":
                del data[pos : pos + draw(st.integers(1, 8))]
            else:
                data[pos:pos] = data[pos : pos + draw(st.integers(1, 40))]
        raw, complete, valid = bytes(data), False, False
    half_close = not complete and draw(st.integers(0, 9)) > 0
    return Sample(raw, items, complete, valid, half_close, kind)


GOOD = b"GET /good HTTP/1.1\r\nHost: plain.test\r\n\r\n"


def seed(*raws: bytes) -> Sample:
    """A hand-written sample of complete requests (not counted as valid ones)."""
    items = [Request(with_id(raw, i), raw.split(b" ", 1)[0].decode(), valid=False)
             for i, raw in enumerate(raws)]  # fmt: skip
    return Sample(b"".join(r.raw for r in items), items, True, False, False, "generated")


# --- the oracle --------------------------------------------------------------------------------


PLACEHOLDER = b"X-Fuzz-Id: @-"
FUZZ_ID = re.compile(r"X-Fuzz-Id: ([0-9a-f]{32}-\d+)")


def with_id(raw: bytes, index: int) -> bytes:
    """`X-Fuzz-Id: @-INDEX` after the request line (if it has one): which request reached the
    upstream. The `@` becomes a tag unique to the example when it is sent."""
    end = raw.find(b"\n")
    if end < 0:
        return raw
    eol = b"\r\n" if raw[end - 1 : end] == b"\r" else b"\n"
    return raw[: end + 1] + PLACEHOLDER + b"%d" % index + eol + raw[end + 1 :]


def first_id(record: dict[str, Any]) -> str | None:
    match = FUZZ_ID.search(record["head"])
    return match.group(1) if match else None


def check(
    target: Target, sample: Sample, seen: Counter[str], say: Callable[[str], None] = note
) -> str:
    """Send `sample`, check every answer; the tag of its X-Fuzz-Ids."""
    say(f"{sample.kind} complete={sample.complete} valid={sample.valid} raw={sample.raw[:600]!r}")
    tag = uuid.uuid4().hex
    served: list[int] = []  # valid requests answered 200
    warm(target.gateway)
    with RawConn(target.gateway.port, timeout=TIMEOUT) as conn:
        try:
            conn.send(sample.raw.replace(PLACEHOLDER, f"X-Fuzz-Id: {tag}-".encode()))
            if sample.half_close:
                conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the gateway may close before it has read everything (an early 4xx)
        methods = [r.method for r in sample.requests]
        if sample.kind == "mutated":
            methods = methods[:1]  # a mutation may merge, split or re-method the requests
        for index, method in enumerate(methods):
            try:
                resp = conn.final(method if method in ("HEAD", "GET") else "GET")
            except (EOFError, ConnectionResetError):
                assert not sample.valid, f"closed before answering request {index + 1}"
                seen["closed"] += 1
                break
            except TimeoutError:
                seen["timeout"] += 1
                assert not sample.complete and not conn.buf, (
                    f"no complete answer to request {index + 1} within {TIMEOUT}s "
                    f"(received {bytes(conn.buf[:200])!r})"
                )
                break
            status = resp.status
            seen[str(status)] += 1
            say(f"response {index + 1}: {status} {resp.body[:200]!r}")
            assert status != 500, f"500 from the gateway: {resp.body!r}"
            if status >= 500:
                allowed = {501} if sample.te else set()  # a coding it does not implement
                if sample.dead_hosts:
                    allowed.add(502)
                if sample.kind != "generated" or not all(r.http1 for r in sample.requests):
                    allowed.add(505)  # a version other than HTTP/1.0 and HTTP/1.1
                assert status in allowed, f"{status} from a healthy upstream: {resp.body!r}"
            if sample.valid:
                expected = 502 if sample.requests[index].dead else 200
                assert status == expected, f"valid request {index + 1}: {status} {resp.body!r}"
                served.append(index)
            if (resp.header("connection") or "").lower() == "close":
                # RFC 9112 §9.6: no further request on this connection may be processed
                later = {f"{tag}-{j}" for j in range(index + 1, len(sample.requests))}
                target.never |= later
                if later:
                    time.sleep(0.1)  # a request forwarded anyway takes a moment to be recorded
                break
            if status >= 400:
                break  # the rest of the pipeline is undefined
    assert target.gateway.proc.poll() is None, "the gateway process died"
    if served:
        check_upstream(target, sample, tag, served)
    check_never_forwarded(target, tag)
    return tag


def check_never_forwarded(target: Target, tag: str = "") -> None:
    """No request that came after a `Connection: close` response reached the upstream (of this
    example's requests; of all of them without a tag)."""
    forwarded = {i for r in read_records(target.record) if (i := first_id(r)) is not None}
    leaked = {i for i in forwarded & target.never if i.startswith(tag)}
    assert not leaked, f"requests after a 'Connection: close' answer were forwarded: {leaked}"


def check_upstream(target: Target, sample: Sample, tag: str, served: list[int]) -> None:
    """Each served valid request reached the upstream once, whole, with the headers edited."""
    records = [r for r in read_records(target.record) if tag in r["head"]]
    for index in served:
        request = sample.requests[index]
        marker = f"X-Fuzz-Id: {tag}-{index}\r\n"
        mine = [r for r in records if marker in r["head"]]
        if not request.upstream:
            assert mine == [], f"request {index + 1} should not reach the upstream"
            continue
        assert len(mine) == 1, f"request {index + 1} reached the upstream {len(mine)} times"
        _, headers = parse_head(mine[0]["head"].encode("latin-1")[:-4])
        method = mine[0]["head"].split(" ", 1)[0]
        names = [name.lower() for name, _ in headers]
        assert method == request.method
        assert mine[0]["decoded"] == request.payload, f"request {index + 1}: body changed"
        if request.plugin:
            assert ("X-Fuzz", "1") in headers, "the headers plugin did not set X-Fuzz"
            assert names.count("x-fuzz") == 1
            assert "x-drop" not in names, "the headers plugin did not remove X-Drop"
        assert "x-mse-consumer" not in names and "x_mse_consumer" not in names, headers


def warm(gateway: Gateway) -> None:
    """One request without request plugins: an idle pooled upstream connection is then ready,
    so the next request can take the gateway's fast path (forwarded without a task switch)."""
    with RawConn(gateway.port, timeout=TIMEOUT) as conn:
        conn.send(b"GET /warm HTTP/1.1\r\nHost: plain.test\r\n\r\n")
        assert conn.final().status == 200, "the gateway does not serve a plain request"


def serves_normally(gateway: Gateway) -> None:
    with RawConn(gateway.port, timeout=5) as conn:
        conn.send(b"GET /after-fuzz HTTP/1.1\r\nHost: fuzz.test\r\n\r\n")
        assert conn.final().status == 200
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: fuzz.test\r\n\r\n")
        health = conn.final()
        assert health.status == 200, health.body


def test_request_path_survives_fuzzing(fuzz_target: Target) -> None:
    gateway = fuzz_target.gateway
    started = time.monotonic()
    seen: Counter[str] = Counter()
    failing = False  # once an example fails, shrinking runs whatever the budget says

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(samples())
    def one(sample: Sample) -> None:
        nonlocal failing
        if time.monotonic() - started > BUDGET and not failing:
            return  # over the time budget: the remaining examples are not sent
        seen["samples"] += 1
        seen[sample.kind + ("-valid" if sample.valid else "")] += 1
        try:
            check(fuzz_target, sample, seen)
        except BaseException:
            failing = True
            raise

    one()
    print(f"fuzzed for {time.monotonic() - started:.1f}s: {dict(sorted(seen.items()))}")
    assert seen["samples"] > 0
    serves_normally(gateway)
    time.sleep(0.3)
    check_never_forwarded(fuzz_target)  # also the ones forwarded late
    log = gateway.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") :][:3000]
    assert '"internal error"' not in log


#: a request the gateway answers with `Connection: close`, then a good one in the same packet
AFTER_CLOSE = {
    "bad-target": b"GET * HTTP/1.1\r\nHost: fuzz.test\r\n\r\n",
    "bad-escape": b"GET /%zz HTTP/1.1\r\nHost: plain.test\r\n\r\n",
    "expect-417": b"GET /a HTTP/1.1\r\nHost: plain.test\r\nExpect: nope\r\n\r\n",
    "client-close": b"GET /a HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n",
    "http10": b"GET /a HTTP/1.0\r\n\r\n",
    "health-with-unread-body": (
        b"GET /healthz HTTP/1.1\r\nHost: plain.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("first", AFTER_CLOSE.values(), ids=AFTER_CLOSE.keys())
def test_nothing_is_served_after_connection_close(fuzz_target: Target, first: bytes) -> None:
    """Pipelines the fuzzer builds, checked on their own (RFC 9112 §9.6)."""
    tag = check(fuzz_target, seed(first, GOOD), Counter(), say=print)
    time.sleep(0.3)  # a request forwarded late is recorded late
    check_never_forwarded(fuzz_target, tag)
