"""A reader of a job's or an exec's output, paced by its caller: what one Logs call, attach or
library ``output()`` reads through (one shared log descriptor per job, the engine's shared
watcher); and :func:`chunks` / :func:`chunks_async`, the library's iterators over one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .logstore import TRUNCATION_MARK, Chunk, LogReader
from .logtail import find_start
from .status import Stream

if TYPE_CHECKING:
    from .watch import Hub


class SharedLog:
    """An output.log opened once for every follower while any reads it (they read at their own
    offsets): a thousand followers of one job cost one descriptor, not a thousand."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._users = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def open(self) -> Iterator[int]:
        """Its descriptor while the caller reads; FileNotFoundError if there is no log (yet)."""
        with self._lock:
            if not self._users:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            self._users += 1
            fd = self._fd
        try:
            yield fd
        finally:
            with self._lock:
                self._users -= 1
                if not self._users:
                    os.close(self._fd)
                    self._fd = -1


class Follower:
    """One reader of a job's (or an exec's) output, from byte 0 (or the view's beginning) to
    its end, which ``ended()`` says is recorded.

    ``take(n)`` returns what is there now (never waits); ``wait()`` / ``wait_async()`` sleep
    until there may be more, on the engine's shared watcher (no polling). Use as a context
    manager; ``loop`` is needed for ``wait_async``.

    A view: ``tail`` begins at the last ``tail`` lines of the selected streams (0: at what is
    written next); ``since_ns``/``until_ns`` keep output the supervisor read in that window
    (ns since the epoch; logs of formats before TJOBLOG3 have no times and are kept whole),
    and the first output past ``until_ns`` ends the view. Finding a view's beginning reads the
    log from its end (:mod:`tjob.logtail`): call :meth:`position` from a thread in asyncio
    code (the first ``take`` does it otherwise).

    The watcher wakes it on changes in the log's directory. ``mark_lost_end``: an ended log
    without its end frame ends with a truncation mark (a job's; an exec's ends without one).
    """

    def __init__(
        self,
        log: SharedLog,
        hub: Hub,
        ended: Callable[[], bool],
        streams: Stream,
        skip: int,
        loop: asyncio.AbstractEventLoop | None,
        *,
        tail: int | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        mark_lost_end: bool = True,
    ) -> None:
        self._ended = ended
        self._stack = contextlib.ExitStack()
        self._tail = tail
        self._real = True  # a log file (not the stand-in for one that does not exist)
        self._mark_lost_end = mark_lost_end
        try:
            fd = self._stack.enter_context(log.open())
            reader = LogReader(fd, streams, skip, since_ns=since_ns, until_ns=until_ns)
        except FileNotFoundError:
            # None yet (a start still under way) or never (a job lost before it had one):
            # an empty log that ends with the job.
            reader = LogReader("/dev/null", streams, skip, since_ns=since_ns, until_ns=until_ns)
            reader.offset = 0
            self._real = False
        self._positioned = not self._real or (tail is None and since_ns is None)
        self._reader = self._stack.enter_context(reader)
        self._waiter = self._stack.enter_context(hub.subscribe(str(log.path.parent), loop))

    def position(self) -> None:
        """Find where the view begins (reads from the log's end; blocking)."""
        if self._positioned:
            return
        self._positioned = True
        r = self._reader
        start, read = find_start(
            r.fd, r.streams, tail=self._tail, since_ns=r.since_ns, until_ns=r.until_ns
        )
        r.bytes_read += read
        r.start_at(start.offset, start.damaged)
        r.skip += start.skip

    async def position_async(self) -> None:
        """:meth:`position` in a thread; a cancelled caller still waits for the thread, which
        reads this follower's log (it must not be closed under it)."""
        if self._positioned:
            return
        task = asyncio.ensure_future(asyncio.to_thread(self.position))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await task
            raise

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def take(self, size: int) -> list[Chunk] | None:
        """Up to ``size`` bytes of output now: [] if none yet, None once all is read."""
        self.position()
        r = self._reader
        r.read_size = size
        self._waiter.clear()  # before reading: a write after this read wakes the next wait
        finished = False
        while True:
            before = r.offset
            chunks = r.read()
            if chunks:
                return chunks
            if r.ended or (finished and r.offset == before):
                return self._unended(r) if finished and not r.ended else None
            if r.offset == before:
                # Nothing new. Every recorded end writes an end frame first; only a full disk
                # or a power cut (the log is not fsynced) leaves none, and then the status file
                # says the job is over: read once more.
                finished = self._ended()
                if not finished and r.until_ns is not None and r.until_ns < time.time_ns():
                    return None  # all output to come is later than the view's end
                if not finished:
                    return []

    def skip_to_end(self) -> None:
        """Leave out the output written so far: read on from now (an attach's live view).
        Steps over the frames' payloads without reading them."""
        self._reader.skip_to_end()

    def _unended(self, r: LogReader) -> list[Chunk] | None:
        """A finished job's log that stops short of its end frame: the rest of it was lost
        (a full disk, a power cut): say so once with a mark, unless capture's own mark did."""
        r.ended = True
        if self._real and self._mark_lost_end and not r.truncated:
            r.truncated = True
            return [TRUNCATION_MARK]
        return None

    def wait(self, timeout: float | None = None) -> None:
        """Until there is more output, the end, or ``timeout`` passes."""
        self._waiter.wait(timeout)

    async def wait_async(self) -> None:
        await self._waiter.wait_async()


def chunks(f: Follower, follow: bool, read_size: int) -> Iterator[Chunk]:
    """What ``f`` reads, ``read_size`` at most at a time, until its end (``follow``) or until
    what is there now is read; closes ``f``."""
    with f:
        while True:
            got = f.take(read_size)
            if got is None or (not got and not follow):
                return
            yield from got
            if not got:
                f.wait()


async def chunks_async(f: Follower, follow: bool, read_size: int) -> AsyncIterator[Chunk]:
    """Like :func:`chunks`, for asyncio (finding where the view begins runs in a thread)."""
    with f:
        await f.position_async()
        while True:
            got = f.take(read_size)
            if got is None or (not got and not follow):
                return
            for chunk in got:
                yield chunk
            if not got:
                await f.wait_async()
