"""The rules a request head must pass before anything else: framing (anti-smuggling), version,
Host, Expect, method (RFC 9112 §2.3, §3.2, §6.1, §6.3; RFC 9110 §10.1.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from bastion.gateway.responses import Response, json_error

if TYPE_CHECKING:
    from bastion.gateway.exchange import Exchange

_BAD: Final = "bad_request"

#: request headers check_head looks at (on_header sets them aside as they come)
FRAMING_HEADERS: Final = frozenset({b"content-length", b"transfer-encoding", b"host", b"expect"})


def check_head(ex: Exchange) -> Response | None:
    """Smuggling and sanity rules for a request head (RFC 9112 §6.1, §6.3, §3.2)."""
    content_lengths: list[bytes] = []
    transfer_encodings: list[bytes] = []
    hosts = 0
    for low, value in ex.framing:
        if low == b"content-length":
            content_lengths.append(value)
        elif low == b"transfer-encoding":
            transfer_encodings.append(value)
        elif low == b"host":
            hosts += 1
        elif low == b"expect":
            if value.strip().lower() != b"100-continue":
                return json_error(417, "expectation_failed", close=True)
            ex.expect_continue = True
    if ex.http_version not in ("1.1", "1.0"):
        return json_error(
            505, "http_version_not_supported", "HTTP/1.1 or HTTP/1.0 only", close=True
        )
    if transfer_encodings and ex.http_version == "1.0":
        # RFC 9112 §6.1: HTTP/1.0 framing with Transfer-Encoding is faulty
        return json_error(400, _BAD, "Transfer-Encoding in an HTTP/1.0 request", close=True)
    if content_lengths and transfer_encodings:
        return json_error(400, _BAD, "both Content-Length and Transfer-Encoding", close=True)
    if len(content_lengths) > 1:
        return json_error(400, _BAD, "more than one Content-Length", close=True)
    if transfer_encodings:
        if len(transfer_encodings) > 1 or transfer_encodings[0].strip().lower() != b"chunked":
            return json_error(501, "not_implemented", "only chunked Transfer-Encoding", close=True)
        ex.chunked_in = True
        ex.has_body = True
    elif content_lengths:
        text = content_lengths[0].strip()
        if not text.isdigit() or len(text) > 18:
            return json_error(400, _BAD, "invalid Content-Length", close=True)
        ex.content_length = int(text)
        ex.has_body = ex.content_length > 0
    if hosts > 1:
        return json_error(400, _BAD, "more than one Host", close=True)
    if hosts == 0 and ex.http_version == "1.1":
        return json_error(400, _BAD, "missing Host", close=True)
    if ex.method == "CONNECT":
        return json_error(405, "method_not_allowed", "CONNECT is not supported", close=True)
    return None
