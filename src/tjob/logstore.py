"""Append-only framed output of one job, and readers that parse it from any frame boundary.

The format (``TJOBLOG3``; tjob.protocol has it byte by byte): the magic and the *committed end*,
then frames of a header ``<stream:u8> <0:3> <length:u32le> <time:u64le>``, the payload, and a
trailer ``<crc:u32le> <length:u32le>`` (zlib's CRC-32 of header then payload). ``time`` is when
the supervisor read the bytes (CLOCK_REALTIME, ns). The trailer's length lets a reader walk
back from the committed end a frame at a time (:mod:`tjob.logtail`, for ``--tail``). Logs of
the earlier formats still read: ``TJOBLOG2`` (8-byte headers ``<stream> <crc:3> <length>``,
24 bits of CRC-32 of the payload, no times) and ``TJOBLOG1`` (the same unchecked).

A frame that fails its check, or names no stream, ends the log with a truncation mark
(``LogReader.damaged``): damage is reported, never served. Stream 1 is stdout, 2 stderr;
stream 3 marks where capture stopped (cap or full disk); a frame of stream 4 ends the log (its
payload is the final status as JSON), so a reader knows the job is over from the log alone.
Bytes are never decoded.

The job's supervisor (shim/logwriter.c) reads output from the job's pipes and writes each
frame's payload and trailer first and its header after (pwrite at known offsets); a header
still all zeros is a frame being written, and readers stop there until it is complete. This
module is the reader, and the writer of a log's end frame.
"""

from __future__ import annotations

import errno
import os
import struct
import time
import zlib
from typing import NamedTuple

from .protocol import (
    LOG_FILE_HEADER_SIZE,
    LOG_HEADER_SIZE,
    LOG_MAGIC,
    LOG_MAGIC_SIZE,
    LOG_MAGIC_V1,
    LOG_MAGIC_V2,
    LOG_OLD_HEADER_SIZE,
    LOG_TRAILER_SIZE,
    STREAM_END,
    STREAM_TRUNCATED,
)
from .status import Stream

MAGIC = LOG_MAGIC
HEADER = struct.Struct("<B3xIQ")  # stream, length, time (ns)
TRAILER = struct.Struct("<II")  # crc, length
COMMITTED = struct.Struct("<Q")
OLD_HEADER = struct.Struct("<B3sI")  # TJOBLOG1/2: stream, crc (v2) or padding, length
CRC_MASK = 0xFFFFFF
assert HEADER.size == LOG_HEADER_SIZE and TRAILER.size == LOG_TRAILER_SIZE
assert OLD_HEADER.size == LOG_OLD_HEADER_SIZE == LOG_MAGIC_SIZE == len(MAGIC)
PENDING = 0
TRUNCATED = STREAM_TRUNCATED
END = STREAM_END
READ_SIZE = 1 << 20
_OUTPUT = (Stream.STDOUT, Stream.STDERR)
# Read at a frame header: enough for many short frames in one system call.
WINDOW = 64 << 10


class Chunk(NamedTuple):
    """A piece of output as the job wrote it: which stream, the bytes, and when the supervisor
    read them (ns since the epoch; 0 in logs of the formats before TJOBLOG3, which kept none).

    A chunk with ``truncated`` set (and no data) marks where capture stopped: at the output cap
    or because the disk was full, or where the log is damaged. Output after it was not kept.
    """

    stream: Stream
    data: bytes
    truncated: bool = False
    time_ns: int = 0


TRUNCATION_MARK = Chunk(Stream.BOTH, b"", True)


def log_version(magic: bytes) -> int:
    """3, 2 or 1 for a log's first bytes (an empty or unknown file reads as the current one)."""
    return {LOG_MAGIC_V1: 1, LOG_MAGIC_V2: 2}.get(magic[:LOG_MAGIC_SIZE], 3)


def first_frame(version: int) -> int:
    return LOG_FILE_HEADER_SIZE if version >= 3 else LOG_MAGIC_SIZE


class LogWriter:
    """Appends whole frames to a job's log (its end; in tests, any), each with one pwritev,
    in the log's own format. The supervisor (shim/logwriter.c) creates the log and writes the
    job's output into it."""

    def __init__(self, path: str) -> None:
        """Open a job's log to append to it, making it if the job never got as far as a
        supervisor (a failed start), so that its readers find the end frame too."""
        # Not O_APPEND: frames go at self.size, so an undone short write leaves no gap.
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.size = os.fstat(self.fd).st_size
        if self.size < LOG_MAGIC_SIZE:
            os.pwrite(self.fd, MAGIC + COMMITTED.pack(LOG_FILE_HEADER_SIZE), 0)
            self.size = LOG_FILE_HEADER_SIZE
        self.version = log_version(os.pread(self.fd, LOG_MAGIC_SIZE, 0))
        self.checked = self.version >= 2

    def write(self, stream: int, data: bytes | memoryview, time_ns: int | None = None) -> None:
        """Append one whole frame, or nothing: a short write (disk full) is undone."""
        if time_ns is None:
            time_ns = time.time_ns()
        try:
            if self.version >= 3:
                header = HEADER.pack(stream, len(data), time_ns)
                trailer = TRAILER.pack(zlib.crc32(data, zlib.crc32(header)), len(data))
                want = len(data) + TRAILER.size
                n = os.pwritev(self.fd, [data, trailer], self.size + HEADER.size)
                n += os.pwrite(self.fd, header, self.size) if n == want else 0
                want += HEADER.size
            else:
                want = OLD_HEADER.size + len(data)
                n = os.pwritev(self.fd, [old_header(stream, data, self.checked), data], self.size)
        except OSError:
            os.ftruncate(self.fd, self.size)
            raise
        if n != want:
            os.ftruncate(self.fd, self.size)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.size += n
        if self.version >= 3:
            os.pwrite(self.fd, COMMITTED.pack(self.size), LOG_MAGIC_SIZE)

    def end(self, payload: bytes) -> None:
        self.write(END, payload)

    def close(self) -> None:
        os.close(self.fd)


class LogReader:
    """Parses frames from a log file; never blocks and never waits (followers do that).

    Each :meth:`read` takes at most ``read_size`` bytes of output from the file, splitting a
    long frame across calls, so many readers at once hold little memory each.
    """

    def __init__(
        self,
        log: str | int,
        streams: Stream = Stream.BOTH,
        skip: int = 0,
        read_size: int = READ_SIZE,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> None:
        """``log``: the file's path, or a descriptor of it the caller keeps (readers may share
        one: every read is positional). ``skip``: leave out the first bytes of the selected
        output (to resume a reader). ``since_ns``/``until_ns``: only frames read by the
        supervisor at or after / at or before these times (frames without a time pass);
        the first frame past ``until_ns`` ends the log."""
        self._owned = isinstance(log, str)
        self.fd = os.open(log, os.O_RDONLY | os.O_CLOEXEC) if isinstance(log, str) else log
        self.version = log_version(os.pread(self.fd, LOG_MAGIC_SIZE, 0))
        self.checked = self.version >= 2
        self._hsize = HEADER.size if self.version >= 3 else OLD_HEADER.size
        self._tsize = TRAILER.size if self.version >= 3 else 0
        self.streams = streams
        self.skip = skip
        self.since_ns = since_ns
        self.until_ns = until_ns
        self.read_size = max(read_size, 4096)
        self.offset = first_frame(self.version)
        self.bytes_read = 0  # from the file, all told (tests check --tail reads little)
        self.ended = False
        self.end_payload: bytes | None = None
        self.truncated = False
        self.damaged = False  # a frame no writer makes was found: reading ended there
        self._stream = 0  # the frame whose payload is being read, and how much of it is left
        self._left = 0
        self._time = 0
        self._length = 0
        self._crc = -1  # its expected checksum (v2; -1: none), and the running one
        self._running = 0
        self._verify = False  # whether all of it is read (else it cannot be checked)
        self._peek = WINDOW  # how much to read at a header: just the header after a long frame
        self._pending_mark = False  # a mark to give first (start_at)

    def start_at(self, offset: int, damaged_before: bool = False) -> None:
        """Begin at the frame at ``offset`` (a boundary :mod:`tjob.logtail` found); with
        ``damaged_before``, the first chunk read is a truncation mark (the log is damaged
        somewhere before ``offset``)."""
        self.offset = max(offset, first_frame(self.version))
        self._peek = self._hsize  # it may be a long frame: do not read a window of it
        self._pending_mark = damaged_before
        self.truncated = self.truncated or damaged_before

    def _pread(self, n: int, at: int) -> bytes:
        data = os.pread(self.fd, n, at)
        self.bytes_read += len(data)
        return data

    def skip_to_end(self) -> None:
        """Step over what is written so far without reading its payloads: the next read gets
        what comes after it (an attach's live view)."""
        streams, self.streams = self.streams, Stream(0)
        try:
            while True:
                before = self.offset
                self.read()
                if self.offset == before or self.ended:
                    break
        finally:
            self.streams = streams

    def read(self) -> list[Chunk]:
        """What is available now, up to ``read_size`` bytes; sets ``ended`` at the end.

        A header still all zeros is a frame being written: reading stops there and resumes
        from it next time. A header once written means its whole frame is in the file.

        Short frames are parsed from one read of several; a long payload is read on its own at
        its offset, which gives its bytes without a second copy (and a page-fault-prone second
        large allocation) to slice it out of a bigger buffer. Output left out (another stream,
        ``skip``, a time outside ``since``/``until``) is stepped over without reading it.
        """
        out: list[Chunk] = []
        if self._pending_mark:
            self._pending_mark = False
            out.append(TRUNCATION_MARK)
        budget = self.read_size
        while budget > 0 and not self.ended:
            if self._left:
                budget -= self._long_frame(out, budget)
                continue
            want = max(self._hsize, min(self._peek, budget))
            buf = self._pread(want, self.offset)
            pos, used, stop = self._frames(buf, out)
            self.offset += pos
            budget -= used
            if stop or (len(buf) < want and not self._left):
                break  # a frame being written, the end, or all there is for now
        return out

    def _long_frame(self, out: list[Chunk], budget: int) -> int:
        """The next piece of a frame read at its offset; returns the output bytes it took."""
        n = min(self._left, budget)
        wanted = self._stream & self.streams and self._in_window(self._time)
        if wanted and self.skip >= self._left:
            n = min(n, self.skip)  # none of this frame is output: step over it unread
            self.skip -= n
            self._verify = False
        elif wanted and self.skip:
            # Output begins inside this frame: what is left out is read too, so the part
            # given out is checked with the rest (a frame is at most 512 KiB).
            data = self._pread(min(n, self.skip), self.offset)
            if not data:
                self._damage(out)
                return n
            n = len(data)
            self.skip -= n
            self._running = zlib.crc32(data, self._running)
        elif wanted:
            data = self._pread(n, self.offset)
            if not data:
                self._damage(out)  # a written header promises its payload: the file was cut
                return n
            n = len(data)
            self._running = zlib.crc32(data, self._running)
            out.append(Chunk(Stream(self._stream), data, False, self._time))
        else:
            self._verify = False
        self.offset += n
        self._left -= n
        if not self._left:
            self._finish_long(out)
        return n

    def _finish_long(self, out: list[Chunk]) -> None:
        """After a long payload: its trailer (v3), and its check when all of it was read."""
        expect = self._crc
        if self._tsize:
            trailer = self._pread(self._tsize, self.offset)
            if len(trailer) < self._tsize:
                self._damage(out)
                return
            crc, length = TRAILER.unpack(trailer)
            self.offset += self._tsize
            if length != self._length:
                self._damage(out)
                return
            expect = crc
        got = self._running if self._tsize else self._running & CRC_MASK
        if self._verify and expect >= 0 and got != expect:
            self._damage(out)  # its first bytes are out already: the mark follows

    def _header(self, buf: bytes, pos: int) -> tuple[int, int, int, int]:
        """stream, length, time, and the v2 checksum (-1 if none) of the header at ``pos``."""
        if self.version >= 3:
            stream, length, t = HEADER.unpack_from(buf, pos)
            return stream, length, t, -1
        stream, crc_bytes, length = OLD_HEADER.unpack_from(buf, pos)
        crc = int.from_bytes(crc_bytes, "little") if self.checked else -1
        return stream, length, 0, crc

    def _frames(self, buf: bytes, out: list[Chunk]) -> tuple[int, int, bool]:
        """Parse the frames wholly in ``buf``; stop at the first that is not, after its header.

        Returns the bytes consumed, the output bytes among them, and whether reading must stop
        (a frame being written, the end, or ``until``).
        """
        pos, used, size, hsize, tsize = 0, 0, len(buf), self._hsize, self._tsize
        while pos + hsize <= size:
            stream, length, t, crc = self._header(buf, pos)
            if stream == PENDING:
                return pos, used, True
            if stream not in (*_OUTPUT, TRUNCATED, END):
                self._damage(out)  # no writer makes such a frame: the file is damaged from here
                return pos, used, True
            if self.until_ns is not None and t and t > self.until_ns and stream != END:
                self.ended = True
                return pos, used, True
            body = pos + hsize
            if stream in _OUTPUT and length >= WINDOW:
                self._peek = hsize
            elif stream in _OUTPUT:
                self._peek = WINDOW
            if body + length + tsize > size and stream in _OUTPUT:
                self._stream, self._left, self._time, self._length = stream, length, t, length
                self._crc, self._verify = crc, True
                self._running = zlib.crc32(buf[pos:body]) if tsize else 0
                return body, used, False  # read at its offset by the caller
            payload = buf[body : body + length]
            if len(payload) < length:
                payload = self._pread(length + tsize, self.offset + body)
                buf = buf[:body] + payload
                size = len(buf)
                payload = payload[:length]
            if not self._intact(buf, pos, body, length, crc):
                self._damage(out)
                return pos, used, True
            pos = body + length + tsize
            if stream == END:
                self.end_payload = payload
                self.ended = True
                return pos, used, True
            if not self._in_window(t):
                continue
            if stream == TRUNCATED:
                self.truncated = True
                out.append(TRUNCATION_MARK)
            elif length and stream & self.streams:
                self._emit(out, stream, payload, t)
            used += length
        return pos, used, False

    def _intact(self, buf: bytes, pos: int, body: int, length: int, crc: int) -> bool:
        """Whether the frame at ``pos`` (all of it in ``buf``) passes its check."""
        if self._tsize:
            tail = buf[body + length : body + length + self._tsize]
            if len(tail) < self._tsize:
                return False  # a written header promises its trailer: the file was cut
            want, again = TRAILER.unpack(tail)
            view = memoryview(buf)
            crc = frame_crc(view[pos:body], view[body : body + length])
            return bool(again == length and crc == want)
        return crc < 0 or zlib.crc32(buf[body : body + length]) & CRC_MASK == crc

    def _in_window(self, t: int) -> bool:
        """Whether a frame read at ``t`` is in ``since``..``until`` (no time: it is)."""
        if not t:
            return True
        if self.since_ns is not None and t < self.since_ns:
            return False
        return self.until_ns is None or t <= self.until_ns

    def _damage(self, out: list[Chunk]) -> None:
        """Say where the log is damaged (the truncation mark) and end it: nothing after a
        damaged frame can be trusted."""
        self.truncated = self.damaged = self.ended = True
        out.append(TRUNCATION_MARK)

    def _emit(self, out: list[Chunk], stream: int, data: bytes, t: int) -> None:
        if self.skip:
            if self.skip >= len(data):
                self.skip -= len(data)
                return
            data, self.skip = data[self.skip :], 0
        out.append(Chunk(Stream(stream), data, False, t))

    def close(self) -> None:
        if self._owned:
            os.close(self.fd)

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame_crc(header: bytes | memoryview, payload: bytes | memoryview) -> int:
    """A v3 frame's checksum: CRC-32 of its header, then its payload."""
    return zlib.crc32(payload, zlib.crc32(header))


def old_header(stream: int, data: bytes | memoryview, checked: bool = True) -> bytes:
    """The header of a TJOBLOG2 frame of ``data`` (its checksum), or of a TJOBLOG1 one
    (padding)."""
    crc = (zlib.crc32(data) & CRC_MASK).to_bytes(3, "little") if checked else b"\0\0\0"
    return OLD_HEADER.pack(stream, crc, len(data))
