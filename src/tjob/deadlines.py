"""Wall-clock timeouts: one thread per engine sleeps until the next job's deadline.

A deadline is the job's ``started_at`` plus its ``timeout`` (wall-clock seconds, both in the
job's records), so it means the same to a restarted engine: jobs adopted at start-up are
handed here again, and one whose deadline passed while no engine ran is stopped at once.
When a deadline passes, ``expire(job)`` runs on a thread of its own (a stop waits out its
grace; other deadlines must not wait behind it).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class _Timed(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def running(self) -> bool: ...


J = TypeVar("J", bound=_Timed)


class Deadlines(Generic[J]):
    """Thread-safe; the thread starts with the first deadline and ends at :meth:`close`."""

    def __init__(self, expire: Callable[[J], object]) -> None:
        self._expire = expire
        self._heap: list[tuple[float, str, J]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, job: J, deadline: float) -> None:
        """Call ``expire(job)`` at ``deadline`` (epoch seconds) if it still runs then."""
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._heap, (deadline, job.id, job))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tjob-deadlines")
                self._thread.daemon = True
                self._thread.start()
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.time()):
                    left = self._heap[0][0] - time.time() if self._heap else None
                    self._cond.wait(left)
                if self._closed:
                    return
                _when, _id, job = heapq.heappop(self._heap)
            if job.running:
                threading.Thread(target=self._expire, args=(job,), daemon=True).start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5)
