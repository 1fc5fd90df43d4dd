"""Where a view of a log begins (``logs --tail N``, ``--since``), found from the log's end.

A ``TJOBLOG3`` log is walked backwards from its committed end (the offset the writer moves past
each frame once its header is written), a frame at a time by each frame's trailer, reading
only trailers, headers and, for ``--tail``, the payloads that hold the last N lines: the last
100 lines of a 1 GiB log cost a few kilobytes of reads. The committed end is the writer's own
word, never the job's bytes: walking back from the end of the file instead would start in the
payload of a frame being written, which the job controls and could shape into fake frames.
Frames written after the committed end was last moved (normally none) are walked forwards.

Logs of the earlier formats (no trailers, no times) and logs whose committed end is unusable
(a cut file) are walked forwards over their headers instead, keeping the last ``KEEP`` frames.
A frame that fails the backward walk's checks stops it there, and the view begins after it
with a truncation mark (``Start.damaged``): the damage is reported, not stepped over silently.

Lines are counted over the selected streams together, as they are stored; a last line without
its newline counts as a line. Times are checked against ``since``/``until`` frame by frame.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from .logstore import (
    COMMITTED,
    END,
    HEADER,
    OLD_HEADER,
    TRAILER,
    TRUNCATED,
    first_frame,
    log_version,
)
from .protocol import LOG_MAGIC_SIZE
from .status import Stream

KEEP = 1 << 16  # frames kept by a forward walk (older formats): bounds its memory
# A payload is searched for newlines from its end, this much at first, then twice as much a
# time up to BLOCK: --tail 100 of short lines reads a few kilobytes, not a frame.
FIRST_BLOCK = 4 << 10
BLOCK = 64 << 10
_STREAMS = (Stream.STDOUT, Stream.STDERR, TRUNCATED, END)


class Start(NamedTuple):
    """A view's beginning: the frame at ``offset``, leaving out the first ``skip`` bytes of its
    output; ``damaged``: the log is damaged before it (the view starts with a mark)."""

    offset: int
    skip: int = 0
    damaged: bool = False


class Frame(NamedTuple):
    offset: int
    stream: int
    length: int
    time_ns: int
    body: int  # the payload's offset


class Counter:
    """Newlines found so far, from the end of the selected output backwards."""

    def __init__(self, lines: int) -> None:
        self.left = lines
        self.last_byte = True  # the next byte seen is the output's last (its newline ends
        # the last line; it does not start one)
        self.read = 0
        self.block = FIRST_BLOCK

    def find(self, fd: int, f: Frame) -> int | None:
        """The offset in ``f``'s payload where the last ``lines`` lines begin, if they begin in
        it; else count its newlines and return None."""
        hi = f.length
        while hi > 0:
            lo = max(0, hi - self.block)
            self.block = min(self.block * 2, BLOCK)
            data = os.pread(fd, hi - lo, f.body + lo)
            self.read += len(data)
            end = len(data)
            if self.last_byte and end:
                self.last_byte = False
                end -= data.endswith(b"\n")
            while (i := data.rfind(b"\n", 0, end)) >= 0:
                self.left -= 1
                if not self.left:
                    return lo + i + 1
                end = i
            hi = lo
        return None


def find_start(
    fd: int,
    streams: Stream,
    *,
    tail: int | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> tuple[Start, int]:
    """Where the view of the log ``fd`` begins, and the bytes read to find it.

    ``tail``: the last ``tail`` lines of the selected streams (0: none of what is there now);
    ``since_ns``/``until_ns``: frames read by the supervisor in that window (frames without a
    time, from the older formats, are in every window).
    """
    version = log_version(os.pread(fd, LOG_MAGIC_SIZE, 0))
    start = Start(first_frame(version))
    if tail is None and (since_ns is None or version < 3):
        return start, 0
    walk = _Walk(fd, version)
    count = Counter(tail) if tail else None
    frames = walk.backwards()
    at = walk.end  # the offset just past the last whole frame: a view of nothing yet
    for f in frames:
        if f.stream == END:
            at = f.offset
            continue
        if f.time_ns and since_ns is not None and f.time_ns < since_ns:
            break
        if tail == 0:
            break
        late = until_ns is not None and f.time_ns > until_ns
        if count and f.stream in (Stream.STDOUT, Stream.STDERR) and f.stream & streams and not late:
            inside = count.find(fd, f)
            if inside is not None:
                return Start(f.offset, inside, walk.damaged), walk.read + count.read
        at = f.offset
    return Start(at, 0, walk.damaged), walk.read + (count.read if count else 0)


class _Walk:
    """The frames of a log from its end backwards (see the module's docstring)."""

    def __init__(self, fd: int, version: int) -> None:
        self.fd = fd
        self.version = version
        self.first = first_frame(version)
        self.damaged = False
        self.read = 0
        self.end = self.first

    def _pread(self, n: int, at: int) -> bytes:
        data = os.pread(self.fd, n, at)
        self.read += len(data)
        return data

    def backwards(self) -> Iterator[Frame]:
        size = os.fstat(self.fd).st_size
        committed = -1
        if self.version >= 3:
            committed = COMMITTED.unpack(self._pread(COMMITTED.size, LOG_MAGIC_SIZE))[0]
        if not self.first <= committed <= size:
            # An older format, or a committed end past the file's (a cut file): forwards.
            frames = collections.deque(self._forwards(self.first), maxlen=KEEP)
            return reversed(frames)
        after = list(self._forwards(committed))  # written since it was moved (normally none)
        return _chain(reversed(after), self._back_from(committed))

    def _forwards(self, at: int) -> Iterator[Frame]:
        """Frame headers from ``at`` to the first frame being written (or the end frame),
        stepping over payloads. Sets ``end`` past the last whole frame."""
        hsize = HEADER.size if self.version >= 3 else OLD_HEADER.size
        tsize = TRAILER.size if self.version >= 3 else 0
        self.end = at
        while True:
            head = self._pread(hsize, at)
            if len(head) < hsize:
                return
            if self.version >= 3:
                stream, length, t = HEADER.unpack(head)
            else:
                stream, _crc, length = OLD_HEADER.unpack(head)
                t = 0
            if stream not in _STREAMS:
                return  # being written, or damaged: the forward reader will say which
            yield Frame(at, stream, length, t, at + hsize)
            at += hsize + length + tsize
            self.end = at
            if stream == END:
                return

    def _back_from(self, end: int) -> Iterator[Frame]:
        """Whole frames ending at ``end``, then the ones before each, by their trailers; a
        frame whose header does not match its trailer stops the walk (``damaged``)."""
        while end > self.first:
            start = end - TRAILER.size
            _crc, length = TRAILER.unpack(self._pread(TRAILER.size, start))
            start -= length + HEADER.size
            if start < self.first:
                self.damaged = True
                return
            head = self._pread(HEADER.size, start)
            stream, again, t = HEADER.unpack(head)
            if stream not in _STREAMS or again != length:
                self.damaged = True
                return
            yield Frame(start, stream, length, t, start + HEADER.size)
            end = start


def _chain(*parts: Iterable[Frame]) -> Iterator[Frame]:
    for part in parts:
        yield from part
