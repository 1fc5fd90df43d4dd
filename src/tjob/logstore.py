"""Append-only framed output of one job, and readers that parse it from any offset.

File layout: the 8-byte magic, then frames of ``<stream:u8> <crc:3> <length:u32le> <bytes>``
(``crc``: the low 24 bits of the payload's CRC-32; logs of the earlier ``TJOBLOG1`` format have
padding there and are read unchecked). A frame that fails its check, or names no stream,
ends the log with a truncation mark (``LogReader.damaged``): damage is reported, never served.
Stream 1 is stdout, 2 stderr; stream 3 marks where capture stopped (cap or full disk); a frame
of stream 4 ends the log (its payload is the final status as JSON), so a reader knows the job is
over from the log alone. Bytes are never decoded.

The job's supervisor (shim.c) reads output from the job's pipes and writes each frame's bytes
first and its header after (pwrite at known offsets); a header still all zeros is a frame being
written, and readers stop there until it is complete. This module is the reader, and the writer
of a log's end frame.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from typing import NamedTuple

from .protocol import LOG_HEADER_SIZE, LOG_MAGIC, LOG_MAGIC_V1, STREAM_END, STREAM_TRUNCATED
from .status import Stream

MAGIC = LOG_MAGIC
HEADER = struct.Struct("<B3sI")
CRC_MASK = 0xFFFFFF
assert HEADER.size == LOG_HEADER_SIZE == len(MAGIC)
PENDING = 0
TRUNCATED = STREAM_TRUNCATED
END = STREAM_END
READ_SIZE = 1 << 20
_OUTPUT = (Stream.STDOUT, Stream.STDERR)
# Read at a frame header: enough for many short frames in one system call.
WINDOW = 64 << 10


class Chunk(NamedTuple):
    """A piece of output as the job wrote it: which stream, and the bytes.

    A chunk with ``truncated`` set (and no data) marks where capture stopped: at the output cap
    or because the disk was full. Output after it was not kept.
    """

    stream: Stream
    data: bytes
    truncated: bool = False


TRUNCATION_MARK = Chunk(Stream.BOTH, b"", True)


class LogWriter:
    """Appends whole frames to a job's log (its end; in tests, any), each with one pwritev.
    The supervisor (shim/logwriter.c) creates the log and writes the job's output into it."""

    def __init__(self, path: str) -> None:
        """Open a job's log to append to it, making it if the job never got as far as a
        supervisor (a failed start), so that its readers find the end frame too."""
        # Not O_APPEND: frames go at self.size, so an undone short write leaves no gap.
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.size = os.fstat(self.fd).st_size
        if self.size < len(MAGIC):
            os.pwrite(self.fd, MAGIC, 0)
            self.size = len(MAGIC)
        self.checked = os.pread(self.fd, len(MAGIC), 0) != LOG_MAGIC_V1

    def write(self, stream: int, data: bytes | memoryview) -> None:
        """Append one whole frame, or nothing: a short write (disk full) is undone."""
        want = HEADER.size + len(data)
        try:
            header = frame_header(stream, data, self.checked)
            n = os.pwritev(self.fd, [header, data], self.size)
        except OSError:
            os.ftruncate(self.fd, self.size)
            raise
        if n != want:
            os.ftruncate(self.fd, self.size)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.size += n

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
    ) -> None:
        """``log``: the file's path, or a descriptor of it the caller keeps (readers may share
        one: every read is positional). ``skip``: leave out the first bytes of the selected
        output (to resume a reader)."""
        self._owned = isinstance(log, str)
        self.fd = os.open(log, os.O_RDONLY | os.O_CLOEXEC) if isinstance(log, str) else log
        self.checked = os.pread(self.fd, len(MAGIC), 0) == MAGIC
        self.streams = streams
        self.skip = skip
        self.read_size = max(read_size, 4096)
        self.offset = len(MAGIC)
        self.ended = False
        self.end_payload: bytes | None = None
        self.truncated = False
        self.damaged = False  # a frame no writer makes was found: reading ended there
        self._stream = 0  # the frame whose payload is being read, and how much of it is left
        self._left = 0
        self._crc = 0  # its expected checksum, and the running one of what was read of it
        self._running = 0
        self._verify = False  # whether all of it is read (else it cannot be checked)
        self._peek = WINDOW  # how much to read at a header: just the header after a long frame

    def read(self) -> list[Chunk]:
        """What is available now, up to ``read_size`` bytes; sets ``ended`` at the end.

        A header still all zeros is a frame being written: reading stops there and resumes
        from it next time. A header once written means its whole payload is in the file.

        Short frames are parsed from one read of several; a long payload is read on its own at
        its offset, which gives its bytes without a second copy (and a page-fault-prone second
        large allocation) to slice it out of a bigger buffer. Output left out (another stream,
        ``skip``) is stepped over without reading it.
        """
        out: list[Chunk] = []
        budget = self.read_size
        while budget > 0 and not self.ended:
            if self._left:
                n = min(self._left, budget)
                wanted = self._stream & self.streams
                if wanted and self.skip:
                    n = min(n, self.skip)
                    self.skip -= n
                    self._verify = False
                elif wanted:
                    data = os.pread(self.fd, n, self.offset)
                    if not data:
                        break  # cannot happen for a written header; never loop on it
                    n = len(data)
                    self._running = zlib.crc32(data, self._running)
                    out.append(Chunk(Stream(self._stream), data))
                else:
                    self._verify = False
                self.offset += n
                self._left -= n
                budget -= n
                if not self._left and self._verify and self._running & CRC_MASK != self._crc:
                    self._damage(out)  # its first bytes are out already: the mark follows
                continue
            want = max(HEADER.size, min(self._peek, budget))
            buf = os.pread(self.fd, want, self.offset)
            pos, used, stop = self._frames(buf, out)
            self.offset += pos
            budget -= used
            if stop or (len(buf) < want and not self._left):
                break  # a frame being written, the end, or all there is for now
        return out

    def _frames(self, buf: bytes, out: list[Chunk]) -> tuple[int, int, bool]:
        """Parse the frames wholly in ``buf``; stop at the first that is not, after its header.

        Returns the bytes consumed, the output bytes among them, and whether reading must stop
        (a frame being written, or the end).
        """
        pos, used, size, hsize = 0, 0, len(buf), HEADER.size
        while pos + hsize <= size:
            stream, crc_bytes, length = HEADER.unpack_from(buf, pos)
            if stream == PENDING:
                return pos, used, True
            crc = int.from_bytes(crc_bytes, "little") if self.checked else -1
            body = pos + hsize
            if stream == END:
                payload = buf[body : body + length]
                if len(payload) < length:
                    payload = os.pread(self.fd, length, self.offset + body)
                self.end_payload = payload
                self.ended = True
                return body + length, used, True
            if stream == TRUNCATED:
                self.truncated = True
                out.append(TRUNCATION_MARK)
                pos = body + length
                continue
            if stream not in _OUTPUT:
                # No writer makes such a frame: the file is damaged from here.
                self._damage(out)
                return pos, used, True
            self._peek = HEADER.size if length >= WINDOW else WINDOW
            if body + length > size:
                self._stream, self._left = stream, length  # read at its offset by the caller
                self._crc, self._running, self._verify = crc, 0, crc >= 0
                return body, used, False
            payload = buf[body : body + length]
            if crc >= 0 and _crc(payload) != crc:
                self._damage(out)
                return pos, used, True
            if length and stream & self.streams:
                self._emit(out, stream, payload)
            pos = body + length
            used += length
        return pos, used, False

    def _damage(self, out: list[Chunk]) -> None:
        """Say where the log is damaged (the truncation mark) and end it: nothing after a
        damaged frame can be trusted."""
        self.truncated = self.damaged = self.ended = True
        out.append(TRUNCATION_MARK)

    def _emit(self, out: list[Chunk], stream: int, data: bytes) -> None:
        if self.skip:
            if self.skip >= len(data):
                self.skip -= len(data)
                return
            data, self.skip = data[self.skip :], 0
        out.append(Chunk(Stream(stream), data))

    def close(self) -> None:
        if self._owned:
            os.close(self.fd)

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame_header(stream: int, data: bytes | memoryview, checked: bool = True) -> bytes:
    """The header of a frame of ``data`` (with its checksum, or padding in a v1 log)."""
    crc = _crc(data).to_bytes(3, "little") if checked else b"\0\0\0"
    return HEADER.pack(stream, crc, len(data))


def _crc(data: bytes | memoryview) -> int:
    """A frame's checksum: the low 24 bits of its payload's CRC-32."""
    return zlib.crc32(data) & CRC_MASK
