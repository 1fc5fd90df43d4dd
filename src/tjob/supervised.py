"""What a job and an exec share: a command under a ``tjob-shim`` supervisor, known by the
directory the supervisor writes (its output.log and its end; an interactive one's attach
socket), which the engine's shared watcher watches. The base of :class:`tjob.Job` and
:class:`tjob.Exec`: their output readers and stdin leases are one code (their waits for an
end, :meth:`tjob.watch.Hub.wait_until` and :meth:`~tjob.watch.Hub.until_async`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from . import stdio
from .follower import Follower, SharedLog
from .protocol import LOG_FILE
from .status import Stream

if TYPE_CHECKING:
    from .stdio import Lease
    from .watch import Hub


class Supervised:
    """A job or an exec: its supervisor's directory ``dir``, watched through ``hub``."""

    kind: ClassVar[str]  # "job" or "exec": how messages name it
    # A log without its end frame once the end is recorded ends with a truncation mark (a
    # job's: the rest was lost); an exec's log is closed before its end, and ends as it is.
    marks_lost_end: ClassVar[bool] = True

    def __init__(self, sdir: Path, hub: Hub) -> None:
        self.dir = sdir
        self._hub = hub
        self._log = SharedLog(sdir / LOG_FILE)  # one descriptor for all its followers

    @property
    def short_id(self) -> str:
        raise NotImplementedError

    def _end_recorded(self) -> bool:
        """Whether its end is recorded (a read: it changes nothing)."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """Its end is not recorded yet: cheaper than its status when that is all one needs."""
        return not self._end_recorded()

    def stdin(self) -> Lease:
        """Its stdin, for one writer at a time (started with ``stdin`` or ``tty``): see
        :class:`tjob.stdio.Lease`. ``StdinUnavailable`` if it has none open, has ended, or
        another writer holds it."""
        return stdio.take(self.dir, f"{self.kind} {self.short_id}")

    async def stdin_async(self) -> Lease:
        """:meth:`stdin` without blocking the event loop (use the lease's ``write_async``)."""
        return await stdio.take_async(self.dir, f"{self.kind} {self.short_id}")

    def follower(
        self,
        streams: Stream = Stream.BOTH,
        skip: int = 0,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        tail: int | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> Follower:
        """A reader of its output paced by its caller: a server serving many readers decides
        how much each one takes and when (see :class:`Follower`)."""
        return Follower(
            self._log,
            self._hub,
            self._end_recorded,
            streams,
            skip,
            loop,
            tail=tail,
            since_ns=since_ns,
            until_ns=until_ns,
            mark_lost_end=self.marks_lost_end,
        )
