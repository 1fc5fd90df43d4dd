"""Append-only framed output of one job, and readers that parse it from any offset.

File layout: the 8-byte magic, then frames of ``<stream:u8> <pad:3> <length:u32le> <bytes>``.
Stream 1 is stdout, 2 stderr; stream 3 marks where capture stopped (cap or full disk); a frame
of stream 4 ends the log (its payload is the final status as JSON), so a reader knows the job is
over from the log alone. Bytes are never decoded.

Output is spliced from the job's pipe straight into the file (no copy through user space), the
bytes first and their header after; a header still all zeros is a frame being written, and
readers stop there until it is complete.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import NamedTuple

from .status import Stream

MAGIC = b"TJOBLOG1"
HEADER = struct.Struct("<BxxxI")
PENDING = 0
TRUNCATED = 3
END = 4
READ_SIZE = 1 << 20


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
    """The supervisor's side: one writer per job, frames written with a single writev."""

    def __init__(self, path: str) -> None:
        # Not O_APPEND: frames go at self.size, so an undone short write leaves no gap.
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.write(self.fd, MAGIC)
        self.size = len(MAGIC)

    @classmethod
    def resume(cls, path: str) -> LogWriter:
        """The log a supervisor wrote, to append its end frame."""
        self = cls.__new__(cls)
        self.fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        self.size = os.fstat(self.fd).st_size
        return self

    def write(self, stream: int, data: bytes | memoryview) -> None:
        """Append one whole frame, or nothing: a short write (disk full) is undone."""
        want = HEADER.size + len(data)
        try:
            n = os.pwritev(self.fd, [HEADER.pack(stream, len(data)), data], self.size)
        except OSError:
            os.ftruncate(self.fd, self.size)
            raise
        if n != want:
            os.ftruncate(self.fd, self.size)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.size += n

    def splice(self, stream: int, src: int, limit: int) -> int:
        """Move up to ``limit`` bytes from pipe ``src`` into a new frame; 0 at end of input."""
        body = self.size + HEADER.size
        try:
            n = os.splice(src, self.fd, limit, offset_dst=body)
        except OSError:
            os.ftruncate(self.fd, self.size)
            raise
        if n:
            try:
                os.pwrite(self.fd, HEADER.pack(stream, n), self.size)
            except OSError:
                os.ftruncate(self.fd, self.size)
                raise
            self.size = body + n
        return n

    def end(self, payload: bytes) -> None:
        self.write(END, payload)

    def truncate_mark(self) -> None:
        self.write(TRUNCATED, b"")

    def close(self) -> None:
        os.close(self.fd)


class LogReader:
    """Parses frames from a log file; never blocks and never waits (followers do that).

    Each :meth:`read` takes at most ``read_size`` bytes from the file, splitting a long frame
    across calls, so many readers at once hold little memory each.
    """

    def __init__(
        self, path: str, streams: Stream = Stream.BOTH, skip: int = 0, read_size: int = READ_SIZE
    ) -> None:
        """``skip``: leave out the first bytes of the selected output (to resume a reader)."""
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.streams = streams
        self.skip = skip
        self.read_size = max(read_size, 4096)
        self.offset = len(MAGIC)
        self.ended = False
        self.end_payload: bytes | None = None
        self.truncated = False
        self._stream = 0  # the frame whose payload is being read, and how much of it is left
        self._left = 0

    def read(self) -> list[Chunk]:
        """What is available now, up to ``read_size`` bytes; sets ``ended`` at the end.

        A header still all zeros is a frame being written: reading stops there and resumes
        from it next time. A header once written means its whole payload is in the file.
        """
        out: list[Chunk] = []
        if self.ended:
            return out
        buf = os.pread(self.fd, self.read_size, self.offset)
        pos, size, hsize = 0, len(buf), HEADER.size
        while pos < size:
            if self._left:
                n = min(self._left, size - pos)
                self._emit(out, buf[pos : pos + n])
                pos += n
                self._left -= n
                continue
            if pos + hsize > size:
                break
            stream, length = HEADER.unpack_from(buf, pos)
            if stream == PENDING:
                break
            if stream == END:
                body = buf[pos + hsize : pos + hsize + length]
                if len(body) < length:
                    if pos:
                        break  # read it whole next time
                    body = os.pread(self.fd, length, self.offset + hsize)
                self.end_payload = body
                self.ended = True
                pos += hsize + length
                break
            pos += hsize
            if stream == TRUNCATED:
                self.truncated = True
                out.append(TRUNCATION_MARK)
            else:
                self._stream, self._left = stream, length
        self.offset += pos
        return out

    def _emit(self, out: list[Chunk], data: bytes) -> None:
        if not self._stream & self.streams:
            return
        if self.skip:
            if self.skip >= len(data):
                self.skip -= len(data)
                return
            data, self.skip = data[self.skip :], 0
        out.append(Chunk(Stream(self._stream), data))

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
