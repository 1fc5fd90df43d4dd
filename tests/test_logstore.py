"""The framed output log on its own: frames, partial reads, frames still being written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tjob.logstore import HEADER, TRUNCATED, LogReader, LogWriter, frame_header
from tjob.status import Stream


def all_chunks(reader: LogReader) -> list[tuple[Stream, bytes, bool]]:
    out = []
    while True:
        before = reader.offset
        got = reader.read()
        out += [(c.stream, bytes(c.data), c.truncated) for c in got]
        if reader.ended or (not got and reader.offset == before):
            return out


@pytest.fixture
def log(tmp_path: Path) -> tuple[LogWriter, str]:
    path = str(tmp_path / "output.log")
    return LogWriter(path), path


def test_frames_round_trip_with_stream_selection(log: tuple[LogWriter, str]) -> None:
    w, path = log
    w.write(1, b"out\x00\xff")
    w.write(2, b"err")
    w.write(TRUNCATED, b"")  # as the supervisor marks where capture stopped
    w.end(b'{"state": "exited"}')
    r = LogReader(path)
    assert all_chunks(r) == [
        (Stream.STDOUT, b"out\x00\xff", False),
        (Stream.STDERR, b"err", False),
        (Stream.BOTH, b"", True),
    ]
    assert r.ended and r.end_payload == b'{"state": "exited"}' and r.truncated
    assert [c[1] for c in all_chunks(LogReader(path, Stream.STDERR))] == [b"err", b""]


def test_small_reads_split_long_frames_and_skip_resumes(log: tuple[LogWriter, str]) -> None:
    w, path = log
    data = os.urandom(50_000)
    w.write(1, data[:30_000])
    w.write(2, b"E" * 10)
    w.write(1, data[30_000:])
    w.end(b"{}")
    r = LogReader(path, Stream.STDOUT, read_size=4096)
    pieces = []
    while not r.ended:
        got = r.read()
        assert sum(len(c.data) for c in got) <= 4096
        pieces += [c.data for c in got]
    assert b"".join(pieces) == data and len(pieces) > 10
    resumed = LogReader(path, Stream.STDOUT, skip=12_345, read_size=4096)
    assert b"".join(c[1] for c in all_chunks(resumed)) == data[12_345:]


def test_a_frame_being_written_is_not_read_until_its_header_is(
    tmp_path: Path, log: tuple[LogWriter, str]
) -> None:
    w, path = log
    w.write(1, b"first")
    # The writer splices the bytes first and writes their header after: mimic the moment
    # in between (the header still zeros).
    os.pwrite(w.fd, b"\0" * HEADER.size + b"second", w.size)
    r = LogReader(path)
    assert all_chunks(r) == [(Stream.STDOUT, b"first", False)]
    os.pwrite(w.fd, frame_header(1, b"second"), w.size)
    assert all_chunks(r) == [(Stream.STDOUT, b"second", False)]
    assert not r.ended


def test_a_damaged_frame_ends_the_log_with_a_mark(log: tuple[LogWriter, str]) -> None:
    w, path = log
    w.write(1, b"first")
    w.write(2, b"x" * 200_000)  # long: read at its offset, checked once all of it is read
    w.write(1, b"third")
    w.end(b"{}")
    for at, expect in ((8 + 8 + 2, []), (8 + 13 + 8 + 100, [b"first"]), (8 + 5, [])):
        data = bytearray(Path(path).read_bytes())
        data[at] ^= 0x40  # one bit of a payload (or of a checksum)
        damaged = str(Path(path).with_name("damaged.log"))
        Path(damaged).write_bytes(bytes(data))
        r = LogReader(damaged)
        got = all_chunks(r)
        assert r.damaged and r.ended and got[-1] == (Stream.BOTH, b"", True)
        assert [c for s, c, t in got if s is Stream.STDOUT][: len(expect)] == expect
        assert b"third" not in [c for _s, c, _t in got]


def test_a_log_of_the_previous_format_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    # As the earlier release wrote it: its magic, and padding where checksums are now.
    frames = [HEADER.pack(1, b"\0\0\0", 3) + b"one", HEADER.pack(2, b"\0\0\0", 3) + b"two"]
    path.write_bytes(b"TJOBLOG1" + b"".join(frames))
    w = LogWriter(str(path))  # the end frame added to it keeps its format
    assert not w.checked
    w.end(b'{"state": "exited"}')
    w.close()
    r = LogReader(str(path))
    assert all_chunks(r) == [(Stream.STDOUT, b"one", False), (Stream.STDERR, b"two", False)]
    assert r.ended and not r.damaged and r.end_payload == b'{"state": "exited"}'
