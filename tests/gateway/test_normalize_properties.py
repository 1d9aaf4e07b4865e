"""Property tests of `normalize_path` (docs/routing.md §3), with hypothesis.

Paths are drawn as a list of tokens, each either a literal character or a well-formed percent
escape, so a test can re-spell one path in other ways (escape some unreserved characters, swap
`%2F` for another opaque byte) and know what must not change. Literal characters cover the
unreserved set, sub-delims, ':' and '@', dots and dot-segments, '/' runs, spaces and controls,
non-ASCII text, and the lone surrogates that `surrogateescape` decoding of raw request bytes
produces (the pipeline decodes the target that way).
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bastion.gateway.routing import BadPath, normalize_path

UNRESERVED = string.ascii_letters + string.digits + "-._~"
SUB_DELIMS = "!$&'()*+,;=:@"
HEX = "0123456789abcdefABCDEF"
MARKER = "\N{SNOWMAN}"  # never drawn: stands in for `%2F` in the opaque-slash property
SURROGATES = st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)  # raw bytes 0x80-0xFF

ESCAPE_RE = re.compile(r"%(..)")
BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")

PROPERTY = settings(max_examples=300, deadline=None)


def _escape(byte: int, lower: bool) -> str:
    text = f"%{byte:02X}"
    return text.lower() if lower else text


literal_chars = st.one_of(
    st.sampled_from(UNRESERVED),
    st.sampled_from(SUB_DELIMS),
    st.sampled_from("/."),  # often, to make '/' runs and dot-segments
    st.sampled_from(' \t\x00\x7f"<>\\^`{|}[]#?'),
    st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF, codec="utf-8").filter(
        lambda c: c != MARKER
    ),
    SURROGATES,
)
escapes = st.builds(_escape, st.integers(0, 255), st.booleans())
#: a token is ("lit", char) or ("esc", "%hh")
tokens = st.one_of(
    st.tuples(st.just("lit"), literal_chars),
    st.tuples(st.just("esc"), escapes),
    st.tuples(st.just("esc"), st.sampled_from(["%2e", "%2E", "%2f", "%2F", "%25"])),
    st.tuples(st.just("lit"), st.sampled_from(["..", "./", "../", "//", "/./", "/../"])),
)
token_lists = st.lists(tokens, max_size=40)


def join(items: list[tuple[str, str]]) -> str:
    return "/" + "".join(text for _, text in items)


paths = token_lists.map(join)


def is_unreserved_escape(text: str) -> bool:
    return chr(int(text[1:], 16)) in UNRESERVED


# --- shape of the output ---------------------------------------------------------------------


@PROPERTY
@given(paths)
@example("/")
@example("//")
@example("/..")
@example("/a/.")
@example("/%2e%2E/")
@example("/.%2e/admin")
@example("/a/..%2f..")
def test_normalizing_twice_changes_nothing(path: str) -> None:
    once = normalize_path(path)
    assert normalize_path(once) == once


@PROPERTY
@given(paths)
def test_output_is_a_canonical_absolute_path(path: str) -> None:
    out = normalize_path(path)
    assert out.startswith("/")
    assert "//" not in out
    segments = out.split("/")[1:]
    assert "." not in segments
    assert ".." not in segments


@PROPERTY
@given(paths)
def test_output_escapes_are_canonical(path: str) -> None:
    out = normalize_path(path)
    assert all(0x21 <= ord(c) <= 0x7E for c in out), f"not printable ASCII: {out!r}"
    assert BAD_ESCAPE_RE.search(out) is None, f"broken escape in {out!r}"
    for hex2 in ESCAPE_RE.findall(out):
        assert hex2 == hex2.upper(), f"lower-case hex %{hex2} in {out!r}"
        assert chr(int(hex2, 16)) not in UNRESERVED, f"unreserved %{hex2} left in {out!r}"


# --- equivalent spellings -------------------------------------------------------------------


@PROPERTY
@given(token_lists, st.data())
def test_escaping_unreserved_characters_changes_nothing(
    items: list[tuple[str, str]], data: st.DataObject
) -> None:
    """`/admin` and `/%61dmin` (and `/.%2e/`) are one path for routing and forwarding."""
    respelled = []
    for kind, text in items:
        if kind == "lit":
            text = "".join(
                _escape(ord(c), data.draw(st.booleans()))
                if c in UNRESERVED and data.draw(st.booleans())
                else c
                for c in text
            )
        respelled.append((kind, text))
    assert normalize_path(join(respelled)) == normalize_path(join(items))


@PROPERTY
@given(token_lists, st.data())
def test_decoding_unreserved_escapes_changes_nothing(
    items: list[tuple[str, str]], data: st.DataObject
) -> None:
    decoded = [
        ("lit", chr(int(text[1:], 16)))
        if kind == "esc" and is_unreserved_escape(text) and data.draw(st.booleans())
        else (kind, text)
        for kind, text in items
    ]
    assert normalize_path(join(decoded)) == normalize_path(join(items))


@PROPERTY
@given(token_lists)
@example([("lit", "a"), ("esc", "%2F"), ("lit", ".."), ("esc", "%2f"), ("lit", "admin")])
@example([("lit", "a"), ("esc", "%2f"), ("lit", "/..")])
def test_an_encoded_slash_is_never_a_segment_separator(items: list[tuple[str, str]]) -> None:
    """`%2F` behaves exactly like any other opaque character inside a segment."""
    slash = {"%2f", "%2F"}
    opaque = [
        ("lit", MARKER) if kind == "esc" and text in slash else (kind, text) for kind, text in items
    ]
    marker_escaped = "".join(f"%{b:02X}" for b in MARKER.encode())
    expected = normalize_path(join(opaque)).replace(marker_escaped, "%2F")
    assert normalize_path(join(items)) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a%2fb", "/a%2Fb"),
        ("/a%2F..%2Fadmin", "/a%2F..%2Fadmin"),
        ("/%2F/..", "/"),
        ("//%2f//", "/%2F/"),
        ("/%252F", "/%252F"),
    ],
)
def test_encoded_slash_examples(path: str, expected: str) -> None:
    assert normalize_path(path) == expected


# --- errors ------------------------------------------------------------------------------------

any_text = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), SURROGATES, st.sampled_from("%/.")),
    max_size=60,
)


@PROPERTY
@given(any_text)
@example("/%")
@example("/%4")
@example("/%zz")
@example("/%%41")
@example("/a%2")
@example("/%\udcff1")
def test_only_bad_escapes_raise_and_only_bad_path(text: str) -> None:
    path = "/" + text
    try:
        out = normalize_path(path)
    except BadPath:
        assert BAD_ESCAPE_RE.search(path), f"BadPath for a path without a broken escape: {path!r}"
        return
    assert BAD_ESCAPE_RE.search(path) is None, f"broken escape accepted: {path!r} → {out!r}"
    assert out.startswith("/")


@PROPERTY
@given(any_text.filter(lambda t: not t.startswith("/")))
def test_a_target_not_starting_with_slash_is_bad_path(text: str) -> None:
    with pytest.raises(BadPath):
        normalize_path(text)
