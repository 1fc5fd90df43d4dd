"""The framed output log on its own: frames, partial reads, frames still being written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.oldlogs import offset_of

from tjob.logstore import (
    HEADER,
    OLD_HEADER,
    TRAILER,
    TRUNCATED,
    LogReader,
    LogWriter,
    frame_crc,
    old_header,
)
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
    # The writer puts the payload and trailer first and the header after: mimic the moment
    # in between (the header still zeros).
    header = HEADER.pack(1, 6, 123)
    trailer = TRAILER.pack(frame_crc(header, b"second"), 6)
    os.pwrite(w.fd, b"\0" * HEADER.size + b"second" + trailer, w.size)
    r = LogReader(path)
    assert all_chunks(r) == [(Stream.STDOUT, b"first", False)]
    os.pwrite(w.fd, header, w.size)
    assert all_chunks(r) == [(Stream.STDOUT, b"second", False)]
    assert not r.ended


def test_a_damaged_frame_ends_the_log_with_a_mark(log: tuple[LogWriter, str]) -> None:
    w, path = log
    w.write(1, b"first")
    w.write(2, b"x" * 200_000)  # long: read at its offset, checked once all of it is read
    w.write(1, b"third")
    w.end(b"{}")
    data = Path(path).read_bytes()
    first, second = offset_of(data, 0), offset_of(data, 1)
    places: tuple[tuple[int, list[bytes]], ...] = (
        (first + HEADER.size + 2, []),  # a payload bit of a short frame
        (second + HEADER.size + 100, [b"first"]),  # of a long one
        (first + HEADER.size + 5, []),  # a checksum
        (first + 9, []),  # a time: the checksum covers the header too
        (second + 4, [b"first"]),  # a length: the trailer's disagrees
    )
    for at, expect in places:
        damaged_data = bytearray(data)
        damaged_data[at] ^= 0x40
        damaged = str(Path(path).with_name("damaged.log"))
        Path(damaged).write_bytes(bytes(damaged_data))
        r = LogReader(damaged)
        got = all_chunks(r)
        assert r.damaged and r.ended and got[-1] == (Stream.BOTH, b"", True), at
        assert [c for s, c, t in got if s is Stream.STDOUT][: len(expect)] == expect
        assert b"third" not in [c for _s, c, _t in got]


def test_a_cut_log_ends_with_a_mark(log: tuple[LogWriter, str]) -> None:
    """A file cut inside a frame whose header is written (a power cut: the log is not fsynced)
    reads as damaged, whether the frame is short or long."""
    w, path = log
    w.write(1, b"first")
    w.write(2, b"x" * 200_000)
    data = Path(path).read_bytes()
    for cut in (len(data) - 100, len(data) - 3, offset_of(data, 0) + HEADER.size + 2):
        Path(path).write_bytes(data[:cut])
        r = LogReader(path)
        got = all_chunks(r)
        assert r.damaged and got[-1] == (Stream.BOTH, b"", True), cut


@pytest.mark.parametrize("version", [1, 2])
def test_a_log_of_an_earlier_format_still_reads(tmp_path: Path, version: int) -> None:
    path = tmp_path / "output.log"
    # As the earlier releases wrote it: their magic, 8-byte headers with a 24-bit checksum
    # (TJOBLOG2) or padding (TJOBLOG1), no times, no trailers.
    frames = [old_header(1, b"one", version == 2) + b"one"]
    frames.append(old_header(2, b"two", version == 2) + b"two")
    path.write_bytes(f"TJOBLOG{version}".encode() + b"".join(frames))
    w = LogWriter(str(path))  # the end frame added to it keeps its format
    assert w.version == version and w.checked == (version == 2)
    w.end(b'{"state": "exited"}')
    w.close()
    r = LogReader(str(path))
    assert all_chunks(r) == [(Stream.STDOUT, b"one", False), (Stream.STDERR, b"two", False)]
    assert r.ended and not r.damaged and r.end_payload == b'{"state": "exited"}'
    data = bytearray(path.read_bytes())
    data[8 + OLD_HEADER.size] ^= 1  # "one" -> "nne"
    path.write_bytes(bytes(data))
    damaged = all_chunks(LogReader(str(path)))
    assert damaged[-1][2] if version == 2 else damaged[0][1] == b"nne"
