"""The recording upstream's file as the tests read it while requests may still be arriving."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.raw_upstream import Recorder, read_records


def test_a_record_still_being_appended_is_left_for_the_next_read(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    recorder = Recorder(record)
    recorder.write(1, 1, b"GET /a HTTP/1.1\r\n\r\n", b"", b"")
    recorder.write(1, 2, b"POST /b HTTP/1.1\r\n\r\n", b"3\r\nabc\r\n0\r\n\r\n", b"abc")
    whole = record.read_bytes()
    # a reader can see an append half done: a line cut anywhere, without its newline
    record.write_bytes(whole + whole[: len(whole) // 3])
    records = read_records(record)
    assert [(r["seq"], r["decoded"]) for r in records] == [(1, b""), (2, b"abc")]
    record.write_bytes(whole * 2)  # the append completed
    assert len(read_records(record)) == 4
