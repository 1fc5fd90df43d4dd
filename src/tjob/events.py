"""Lifecycle events: queued, starting (a start unanswered past its timeout), started, failed,
exited, stopped, timed out, OOM-killed, lost, cancelled, removed, each with a sequence number,
kept with the job records (the store's ``events`` table, the most recent ``KEEP``) and
streamed to subscribers as they happen.

A subscriber is a bounded buffer: a reader that falls behind loses events rather than slowing
whoever emits them (the engine's end step), and is told how many it lost.
"""

from __future__ import annotations

import asyncio
import collections
import fnmatch
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import InvalidSpec
from .status import JobState, JobStatus

if TYPE_CHECKING:
    from .store import Store

KEEP = 10_000  # recent events kept (in memory and in the store)
BUFFER = 1024  # events a subscriber may fall behind by before it misses some
GATHER = 0.05  # seconds the store's writer waits for more events to write with one
KINDS = (
    "queued",
    "starting",
    "started",
    "failed",
    "exited",
    "stopped",
    "timed_out",
    "oom_killed",
    "lost",
    "cancelled",
    "removed",
)

_NOT_ENDS = ("queued", "starting", "started")


@dataclass(frozen=True)
class Event:
    seq: int
    time: float
    kind: str
    id: str
    owner: str
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = dict(self.labels)
        return d


def end_kind(st: JobStatus) -> str:
    """The event a final status makes."""
    if st.state is JobState.FAILED:
        return "failed"
    if st.state is JobState.LOST:
        return "lost"
    if st.state is JobState.CANCELLED:
        return "cancelled"
    if st.timed_out:
        return "timed_out"
    if st.oom_killed:
        return "oom_killed"
    return "stopped" if st.stopped else "exited"


def parse_filter(text: str) -> Callable[[Event], bool]:
    """``kind=K``, ``name=GLOB``, ``label=K[=V]``; InvalidSpec naming the bad one."""
    kind, sep, rest = text.partition("=")
    if kind == "kind" and rest in KINDS:
        return lambda e: e.kind == rest
    if kind == "name" and sep and 0 < len(rest) <= 128:
        return lambda e: bool(e.name) and fnmatch.fnmatchcase(e.name, rest)
    if kind == "label" and rest and len(rest) <= 320:
        key, has_value, value = rest.partition("=")
        return lambda e: key in e.labels and (not has_value or e.labels[key] == value)
    shown = repr(text if len(text) <= 40 else text[:40] + "...")
    raise InvalidSpec(
        f"event filter {shown} is not kind=KIND ({', '.join(KINDS)}), name=GLOB or "
        "label=KEY[=VALUE]"
    )


def matcher(texts: Sequence[str]) -> Callable[[Event], bool]:
    if len(texts) > 32:
        raise InvalidSpec(f"{len(texts)} filters: at most 32")
    tests = [parse_filter(t) for t in texts]
    return lambda e: all(t(e) for t in tests)


class Subscription:
    """Events for one reader, on its event loop; ``missed`` counts those it lost."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue(BUFFER)
        self.missed = 0

    def _put(self, event: Event) -> None:  # on the reader's loop
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.missed += 1

    async def get(self) -> Event:
        return await self.queue.get()


class EventLog:
    """Thread-safe: events are emitted from the engine's threads, and from the event loop of
    an async start. So emitting never waits on the disk: the store is written by a thread of
    the log's own (an event lost to a crash right after it is no reason to slow what it
    reports)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._recent: collections.deque[Event] = collections.deque(maxlen=KEEP)
        for data in store.events(KEEP):
            self._recent.append(Event(**data))
        self._seq = self._recent[-1].seq if self._recent else 0
        self._subs: set[Subscription] = set()
        self._unwritten: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._writer = threading.Thread(target=self._write, name="tjob-events", daemon=True)
        self._writer.start()

    def _write(self) -> None:
        """Write what is emitted, in one commit per batch: the writer waits GATHER seconds
        after an event for more (a job's start and end, the ends of many jobs at once cost
        one wake and one commit, not one each); a close cuts the wait short."""
        while True:
            batch = [self._unwritten.get()]
            self._closing.wait(GATHER)
            while not self._unwritten.empty():
                batch.append(self._unwritten.get())
            events = [(e.seq, e.to_dict()) for e in batch if e is not None]
            if events:
                self._store.add_events(events, KEEP)
            if any(e is None for e in batch):
                return

    def close(self) -> None:
        """Write what is still unwritten, then stop the writer (before the store closes)."""
        self._closing.set()
        self._unwritten.put(None)
        self._writer.join()

    def emit(self, kind: str, st: JobStatus, time: float) -> None:
        with self._lock:
            self._seq += 1
            event = Event(
                self._seq,
                time,
                kind,
                st.id,
                st.owner,
                st.name,
                dict(st.labels),
                st.exit_code if kind not in _NOT_ENDS else None,
                st.signal if kind not in _NOT_ENDS else None,
                st.error if kind in ("failed", "lost") else None,
            )
            self._recent.append(event)
            subs = list(self._subs)
            self._unwritten.put(event)
        for sub in subs:
            sub.loop.call_soon_threadsafe(sub._put, event)

    def subscribe(self, since: float | None) -> tuple[Subscription, list[Event]]:
        """A subscription, and the kept events at or after ``since`` (None: none) before it."""
        sub = Subscription(asyncio.get_running_loop())
        with self._lock:
            past = [e for e in self._recent if since is not None and e.time >= since]
            self._subs.add(sub)
        return sub, past

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def recent(self) -> list[Event]:
        with self._lock:
            return list(self._recent)
