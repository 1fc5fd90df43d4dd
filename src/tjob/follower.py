"""A reader of a job's output, paced by its caller: what one Logs call, attach or library
``output()`` reads through (one shared log descriptor per job, the engine's shared watcher)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from .logstore import TRUNCATION_MARK, Chunk, LogReader
from .logtail import find_start
from .status import Stream

if TYPE_CHECKING:
    from .job import Job


class Follower:
    """One reader of a job's output, from byte 0 (or the view's beginning) to the job's end.

    ``take(n)`` returns what is there now (never waits); ``wait()`` / ``wait_async()`` sleep
    until there may be more, on the engine's shared watcher (no polling). Use as a context
    manager; ``loop`` is needed for ``wait_async``.

    A view: ``tail`` begins at the last ``tail`` lines of the selected streams (0: at what is
    written next); ``since_ns``/``until_ns`` keep output the supervisor read in that window
    (ns since the epoch; logs of formats before TJOBLOG3 have no times and are kept whole),
    and the first output past ``until_ns`` ends the view. Finding a view's beginning reads the
    log from its end (:mod:`tjob.logtail`): call :meth:`position` from a thread in asyncio
    code (the first ``take`` does it otherwise).
    """

    def __init__(
        self,
        job: Job,
        streams: Stream,
        skip: int,
        loop: asyncio.AbstractEventLoop | None,
        *,
        tail: int | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> None:
        self._job = job
        self._stack = contextlib.ExitStack()
        self._tail = tail
        self._real = True  # a log file (not the stand-in for one that does not exist)
        try:
            fd = self._stack.enter_context(job._shared_log())
            reader = LogReader(fd, streams, skip, since_ns=since_ns, until_ns=until_ns)
        except FileNotFoundError:
            # None yet (a start still under way) or never (a job lost before it had one):
            # an empty log that ends with the job.
            reader = LogReader("/dev/null", streams, skip, since_ns=since_ns, until_ns=until_ns)
            reader.offset = 0
            self._real = False
        self._positioned = not self._real or (tail is None and since_ns is None)
        self._reader = self._stack.enter_context(reader)
        self._waiter = self._stack.enter_context(job._hub.subscribe(str(job.dir), loop))

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
                finished = self._job._final_status() is not None
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
        if self._real and not r.truncated:
            r.truncated = True
            return [TRUNCATION_MARK]
        return None

    def wait(self, timeout: float | None = None) -> None:
        """Until the job writes more, ends, or ``timeout`` passes."""
        self._waiter.wait(timeout)

    async def wait_async(self) -> None:
        await self._waiter.wait_async()
