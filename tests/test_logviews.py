"""Views of a log (issue 16): --tail found from the end reading little, --since/--until against
known frame times, old formats, damaged and hostile logs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from support.oldlogs import as_version, offset_of
from support.timeouts import HANG

from tjob import Engine, JobSpec
from tjob.api.output import _TRUNCATED, IN_FIELD_1, _nest, encode_chunk
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.jobdir import LOG_FILE
from tjob.logstore import (
    COMMITTED,
    END,
    HEADER,
    TRAILER,
    TRUNCATED,
    Chunk,
    LogReader,
    LogWriter,
    frame_crc,
)
from tjob.logtail import find_start
from tjob.protocol import LOG_MAGIC_SIZE
from tjob.status import Stream

OUT, ERR = Stream.STDOUT, Stream.STDERR


def view(
    path: Path,
    streams: Stream = Stream.BOTH,
    *,
    tail: int | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> tuple[list[Chunk], int]:
    """Every chunk of the view, and the bytes read from the file for it (as a Follower does)."""
    with LogReader(str(path), streams, since_ns=since_ns, until_ns=until_ns) as r:
        start, read = find_start(r.fd, streams, tail=tail, since_ns=since_ns, until_ns=until_ns)
        r.start_at(start.offset, start.damaged)
        r.skip += start.skip
        out: list[Chunk] = []
        while not r.ended:
            before = r.offset
            got = r.read()
            out += got
            if not got and r.offset == before:
                break
        return out, read + r.bytes_read


def text(chunks: list[Chunk]) -> bytes:
    return b"".join(c.data for c in chunks)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "output.log"


def write(path: Path, frames: list[tuple[int, bytes, int]], end: bool = True) -> LogWriter:
    w = LogWriter(str(path))
    for stream, data, t in frames:
        w.write(stream, data, t)
    if end:
        w.end(b"{}")
    return w


def test_tail_counts_lines_over_frames_and_streams(path: Path) -> None:
    write(path, [(1, b"a1\na2\na", 10), (2, b"e1\n", 20), (1, b"3\nb1\n", 30), (1, b"b2", 40)])
    assert text(view(path, tail=1)[0]) == b"b2"  # a last line without its newline counts
    assert text(view(path, tail=2)[0]) == b"b1\nb2"
    assert text(view(path, tail=4)[0]) == b"ae1\n3\nb1\nb2"  # as stored: one sequence
    assert text(view(path, tail=100)[0]) == b"a1\na2\nae1\n3\nb1\nb2"
    assert view(path, tail=0)[0] == []
    assert text(view(path, OUT, tail=3)[0]) == b"a3\nb1\nb2"
    assert text(view(path, ERR, tail=5)[0]) == b"e1\n"
    chunks, _ = view(path, tail=2)
    assert [(c.stream, c.time_ns) for c in chunks] == [(OUT, 30), (OUT, 40)]


def test_a_trailing_newline_ends_the_last_line(path: Path) -> None:
    write(path, [(1, b"x\ny\n", 1), (1, b"\n", 2), (1, b"z\n", 3)])
    assert text(view(path, tail=1)[0]) == b"z\n"
    assert text(view(path, tail=2)[0]) == b"\nz\n"  # an empty line is a line
    assert text(view(path, tail=3)[0]) == b"y\n\nz\n"


def test_tail_of_a_big_log_reads_a_few_kilobytes(path: Path) -> None:
    """64 MiB of lines in frames of 512 KiB, as the supervisor writes them: --tail 100 reads
    the last frames' trailers and headers and the one frame it begins in, not the file."""
    block = b"".join(b"line %07d of some output\n" % i for i in range(20_000))[: 512 << 10]
    block = block[: block.rindex(b"\n") + 1]
    w = write(path, [], end=False)
    for i in range(128):
        w.write(1, block, 1_000 + i)
    w.end(b"{}")
    assert path.stat().st_size > 64 << 20
    chunks, read = view(path, tail=100)
    assert text(chunks).count(b"\n") == 100 and text(chunks).endswith(block[-100:])
    # The walk: a few kB; the frame the view begins in is read whole, to check its checksum.
    assert read < (512 << 10) + (16 << 10), read
    chunks, read = view(path, since_ns=1_126)  # the last two frames
    assert text(chunks) == block * 2 and read < 3 << 20


def test_since_and_until_keep_the_frames_read_in_the_window(path: Path) -> None:
    frames = [(1, b"a\n", 1_000), (2, b"b\n", 2_000), (1, b"c\n", 3_000), (1, b"d\n", 4_000)]
    write(path, frames)
    assert text(view(path, since_ns=2_000)[0]) == b"b\nc\nd\n"
    assert text(view(path, since_ns=2_001)[0]) == b"c\nd\n"
    assert text(view(path, until_ns=3_000)[0]) == b"a\nb\nc\n"
    assert text(view(path, since_ns=1_500, until_ns=3_500)[0]) == b"b\nc\n"
    assert text(view(path, since_ns=9_000)[0]) == b""  # in the future: nothing yet
    assert text(view(path, until_ns=10)[0]) == b""
    assert text(view(path, tail=1, until_ns=3_000)[0]) == b"c\n"
    assert text(view(path, tail=5, since_ns=3_000)[0]) == b"c\nd\n"
    r = LogReader(str(path), until_ns=2_500)
    while not r.ended:
        r.read()
    assert r.end_payload is None  # the view ended at until, before the log's end


def test_frames_after_a_stale_committed_end_are_in_the_tail(path: Path) -> None:
    """A writer killed between a frame's header and the committed end's update: the walk
    goes forwards from the committed end to the last whole frame."""
    w = write(path, [(1, b"one\n", 1)], end=False)
    committed = w.size
    w.write(1, b"two\n", 2)
    w.write(2, b"three\n", 3)
    os.pwrite(w.fd, COMMITTED.pack(committed), LOG_MAGIC_SIZE)
    assert text(view(path, tail=2)[0]) == b"two\nthree\n"


def test_a_job_cannot_fake_frames_for_the_backward_walk(path: Path) -> None:
    """The frame being written (its header still zeros) is the job's bytes at the file's end,
    shaped as a trailer pointing at a fake end frame: the walk starts at the committed end and
    never reads them; once the frame is whole they are its payload, nothing more."""
    w = write(path, [(1, b"real\n", 1)], end=False)
    fake_header = HEADER.pack(END, 2, 5)
    fake = fake_header + b"{}" + TRAILER.pack(frame_crc(fake_header, b"{}"), 2)
    payload = b"x\n" + fake + TRAILER.pack(0, len(fake) - TRAILER.size - HEADER.size)
    header = HEADER.pack(1, len(payload), 9)
    trailer = TRAILER.pack(frame_crc(header, payload), len(payload))
    os.pwrite(w.fd, payload + trailer, w.size + HEADER.size)
    assert text(view(path, tail=1)[0]) == b"real\n"
    os.pwrite(w.fd, header, w.size)  # now whole (the committed end not moved yet)
    chunks, _ = view(path, tail=1)
    assert text(chunks) == payload[payload.index(b"\n") + 1 :]


def test_damage_before_the_tail_is_marked_and_the_tail_still_given(path: Path) -> None:
    write(path, [(1, b"one\n", 1), (1, b"two\n", 2), (1, b"x\nthree\n", 3)])
    data = bytearray(path.read_bytes())
    data[offset_of(data, 1) + 4] ^= 0x10  # the second frame's length: its trailer disagrees
    path.write_bytes(bytes(data))
    chunks, _ = view(path, tail=5)
    assert chunks[0].truncated and text(chunks) == b"x\nthree\n"
    chunks, _ = view(path, tail=1)  # the damage is not in the view: not walked to
    assert text(chunks) == b"three\n" and not any(c.truncated for c in chunks)


def test_a_cut_log_is_walked_forwards_and_marked(path: Path) -> None:
    """Cut inside its last frame (a power cut): the committed end is past the file's end."""
    write(path, [(1, b"one\n", 1), (1, b"two\n", 2), (1, b"three\n", 3)], end=False)
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    # Its payload is whole: given, as a long frame's is, with the mark after it.
    chunks, _ = view(path, tail=1)
    assert text(chunks) == b"three\n" and chunks[-1].truncated
    chunks, _ = view(path, tail=2)
    assert text(chunks) == b"two\nthree\n" and chunks[-1].truncated
    path.write_bytes(data[: offset_of(data, 2) + HEADER.size + 2])  # cut in its payload
    chunks, _ = view(path, tail=2)
    assert text(chunks) == b"two\nth" and chunks[-1].truncated


def test_a_truncation_mark_in_the_tail_is_kept(path: Path) -> None:
    write(path, [(1, b"one\n", 1), (1, b"two\n", 2), (TRUNCATED, b"", 3)])
    chunks, _ = view(path, tail=1)
    assert text(chunks) == b"two\n" and chunks[-1].truncated


@pytest.mark.parametrize("version", [1, 2])
def test_views_of_logs_of_earlier_formats(path: Path, version: int) -> None:
    """No trailers: --tail walks the headers forwards. No times: every window keeps all."""
    write(path, [(1, b"one\n", 1_000), (2, b"two\n", 2_000), (1, b"three\nfour", 3_000)])
    path.write_bytes(as_version(path.read_bytes(), version))
    assert text(view(path, tail=2)[0]) == b"three\nfour"
    assert text(view(path, tail=3)[0]) == b"two\nthree\nfour"
    assert text(view(path, ERR, tail=1)[0]) == b"two\n"
    chunks, _ = view(path, since_ns=2_500, until_ns=2_600)
    assert text(chunks) == b"one\ntwo\nthree\nfour" and {c.time_ns for c in chunks} == {0}


# --- through the engine: a real job's log ---------------------------------------------------


@pytest.mark.root
def test_a_jobs_views_through_the_library(engine: Engine) -> None:
    job = engine.start(JobSpec(["sh", "-c", "seq 1 1000; echo done >&2"]))
    assert job.wait(HANG).exit_code == 0
    whole = list(job.output())
    assert all(c.time_ns for c in whole) and text(whole).count(b"\n") == 1001
    assert text(list(job.output(streams=OUT, tail=2))) == b"999\n1000\n"
    cut = whole[-1].time_ns
    assert text(list(job.output(since_ns=cut))) == text([c for c in whole if c.time_ns >= cut])

    async def tail_async() -> bytes:
        return b"".join([c.data async for c in job.output_async(streams=ERR, tail=1)])

    assert asyncio.run(tail_async()) == b"done\n"


@pytest.mark.root
def test_a_finished_jobs_log_without_its_end_frame_ends_with_a_mark(engine: Engine) -> None:
    """The output log is not fsynced: a power cut can lose its end. The status says the job is
    over; the log that stops short says so with a truncation mark instead of ending quietly."""
    job = engine.start(JobSpec(["echo", "hello"]))
    assert job.wait(HANG).exit_code == 0
    log = job.dir / LOG_FILE
    data = log.read_bytes()
    end = offset_of(data, 1)  # the frame after "hello": the end frame
    assert HEADER.unpack_from(data, end)[0] == END
    os.truncate(log, end)
    chunks = list(engine.get(job.id).output())
    assert [c.data for c in chunks] == [b"hello\n", b""] and chunks[-1].truncated


@pytest.mark.parametrize("data", [b"", b"x", os.urandom(300), os.urandom(1 << 20)], ids=len)
@pytest.mark.parametrize("time_ns", [0, 1, 1_796_146_552_270_735_604])
def test_the_servers_hand_encoded_chunks_parse_as_log_chunks(data: bytes, time_ns: int) -> None:
    """The server encodes LogChunk itself (one copy of the output instead of three): what it
    sends is what the generated class parses, prefix included."""
    for stream in (pb.STREAM_STDOUT, pb.STREAM_STDERR):
        for timestamps in (False, True):
            message = encode_chunk(stream, data, time_ns, timestamps)
            assert message[0] == 0 and int.from_bytes(message[1:5], "big") == len(message) - 5
            got = pb.LogChunk.FromString(message[5:])
            want = time_ns if timestamps else 0
            assert (got.stream, got.data, got.time_unix_nanos, got.truncated) == (
                stream,
                data,
                want,
                False,
            )


def test_the_servers_truncation_mark_parses() -> None:
    message = _nest(b"", _TRUNCATED)
    assert int.from_bytes(message[1:5], "big") == len(message) - 5
    assert pb.LogChunk.FromString(message[5:]) == pb.LogChunk(truncated=True)


def test_chunks_inside_an_attach_reply_parse() -> None:
    for data in (b"", b"x", bytes(range(256)) * 600):
        message = encode_chunk(pb.STREAM_STDERR, data, 7, True, IN_FIELD_1)
        assert int.from_bytes(message[1:5], "big") == len(message) - 5
        got = pb.AttachReply.FromString(message[5:])
        assert got.output == pb.LogChunk(stream=pb.STREAM_STDERR, data=data, time_unix_nanos=7)
    mark = pb.AttachReply.FromString(_nest(IN_FIELD_1, _TRUNCATED)[5:])
    assert mark.output == pb.LogChunk(truncated=True)
    message = encode_chunk(pb.STREAM_STDOUT, b"out", 0, False, IN_FIELD_1)
    assert pb.ExecResponse.FromString(message[5:]).output == pb.LogChunk(
        stream=pb.STREAM_STDOUT, data=b"out"
    )


def test_a_view_beginning_inside_a_damaged_frame_is_marked(path: Path) -> None:
    """The part of a long frame left out before a view's beginning is still checked with the
    part given out: a damaged frame the view begins in ends with the mark."""
    lines = b"".join(b"line %06d\n" % i for i in range(20_000))  # 240 kB: a long frame
    write(path, [(1, lines, 1)])
    data = bytearray(path.read_bytes())
    data[offset_of(data, 0) + HEADER.size + 10] ^= 0x01  # in its first line, outside the view
    path.write_bytes(bytes(data))
    chunks, _ = view(path, tail=3)
    assert text(chunks) == b"line 019997\nline 019998\nline 019999\n" and chunks[-1].truncated
