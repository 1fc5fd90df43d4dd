"""A queue instead of a refusal: jobs wait in state ``queued`` until the host's and their
owner's running counts allow them to start.

Order: first in, first out per owner; between owners, round robin (each start goes to the
next owner in turn that has a job waiting and room under its own cap), so one client's
thousand queued jobs do not hold back another's one. Durable: a queued job's whole spec is a
row of the store's ``queue`` table (in submission order) until its start moves it to ``jobs``;
a restarted engine queues the rows again, in order. One dispatcher thread per engine starts
jobs, woken when a job ends, is queued or is cancelled.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .spec import JobSpec, Limits


class Gate:
    """Opens once when a queued job starts or is cancelled; sync and asyncio waiters alike."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._loops: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    @property
    def open(self) -> bool:
        return self._event.is_set()

    def release(self) -> None:
        with self._lock:
            self._event.set()
            loops, self._loops = self._loops, []
        for loop, ev in loops:
            loop.call_soon_threadsafe(ev.set)

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    async def wait_async(self) -> None:
        ev = asyncio.Event()
        with self._lock:
            if self._event.is_set():
                return
            self._loops.append((asyncio.get_running_loop(), ev))
        await ev.wait()


def spec_to_dict(spec: JobSpec) -> dict[str, Any]:
    """Everything a queued job needs to start later (the store's ``queue`` row)."""
    lim = spec.limits
    return {
        "argv": list(spec.argv),
        "env": dict(spec.env),
        "cwd": spec.cwd,
        "user": spec.user,
        "owner": spec.owner,
        "limits": {
            "cpu_percent": lim.cpu_percent,
            "memory_mb": lim.memory_mb,
            "pids": lim.pids,
            "rbps": lim.rbps,
            "wbps": lim.wbps,
            "device": lim.device,
        },
        "name": spec.name,
        "labels": dict(spec.labels),
        "timeout": spec.timeout,
        **(
            {"stdin": spec.stdin, "tty": spec.tty, "tty_size": spec.tty_size}
            if spec.tty or spec.stdin
            else {}
        ),
    }


def spec_from_dict(d: Mapping[str, Any]) -> JobSpec:
    return JobSpec(
        argv=tuple(d["argv"]),
        env=dict(d.get("env") or {}),
        cwd=d.get("cwd") or "/",
        user=d.get("user"),
        owner=d.get("owner") or "",
        limits=Limits(**(d.get("limits") or {})),
        name=d.get("name") or "",
        labels=dict(d.get("labels") or {}),
        timeout=d.get("timeout"),
        stdin=bool(d.get("stdin")),
        tty=bool(d.get("tty")),
        tty_size=tuple(d["tty_size"]) if d.get("tty_size") else None,
    )


class Dispatcher:
    """The running counts (host, per owner) and the waiting jobs; starts them as room frees.

    ``start(job_id)`` is the engine's: it starts the queued job (blocking) and reports it with
    :meth:`running`; every job's end is reported with :meth:`ended`.
    """

    def __init__(
        self, start: Callable[[str], None], max_running: int | None, per_owner: int | None
    ) -> None:
        self._start = start
        self.max_running = max_running
        self.per_owner = per_owner
        self._cond = threading.Condition()
        self._running: dict[str, str] = {}  # job id -> owner (starting ones too)
        self._owner_running: collections.Counter[str] = collections.Counter()
        self._waiting: dict[str, collections.deque[str]] = {}  # owner -> ids, FIFO
        self._turn: collections.deque[str] = collections.deque()  # owners, round robin
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- counts -------------------------------------------------------------------------------

    def running(self, job_id: str, owner: str, settled: Callable[[], bool]) -> None:
        """``job_id`` runs, unless ``settled()`` says its end was seen. Asked under the lock
        that :meth:`ended` takes, and a job is settled before ``ended`` is called, so a job
        that ends at any point around this call is counted out."""
        with self._cond:
            if settled():
                self._pop(job_id)
            elif job_id not in self._running:
                self._running[job_id] = owner
                self._owner_running[owner] += 1

    def ended(self, job_id: str) -> None:
        with self._cond:
            self._pop(job_id)

    def _pop(self, job_id: str) -> None:
        owner = self._running.pop(job_id, None)
        if owner is not None:
            self._owner_running[owner] -= 1
            if not self._owner_running[owner]:
                del self._owner_running[owner]
            self._cond.notify()

    def running_count(self, owner: str | None = None) -> int:
        with self._cond:
            return len(self._running) if owner is None else self._owner_running[owner]

    def queued_count(self, owner: str | None = None) -> int:
        with self._cond:
            if owner is not None:
                return len(self._waiting.get(owner, ()))
            return sum(len(q) for q in self._waiting.values())

    def has_room(self, owner: str) -> bool:
        """Nothing waits and both counts allow one more: a job may start at once."""
        with self._cond:
            return not self._waiting and self._room(owner)

    def _room(self, owner: str) -> bool:
        if self.max_running is not None and len(self._running) >= self.max_running:
            return False
        return self.per_owner is None or self._owner_running[owner] < self.per_owner

    # --- the queue ----------------------------------------------------------------------------

    def add(self, job_id: str, owner: str) -> None:
        with self._cond:
            if owner not in self._waiting:
                self._waiting[owner] = collections.deque()
                self._turn.append(owner)
            self._waiting[owner].append(job_id)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name="tjob-queue", daemon=True)
                self._thread.start()
            self._cond.notify()

    def remove(self, job_id: str, owner: str) -> bool:
        """Take a waiting job out (a cancel); False if it is not waiting (it started)."""
        with self._cond:
            q = self._waiting.get(owner)
            if q is None or job_id not in q:
                return False
            q.remove(job_id)
            if not q:
                del self._waiting[owner]
                self._turn.remove(owner)
            self._cond.notify()
            return True

    def _next(self) -> str | None:
        """The next job to start, counted as running already; None if none may."""
        if self.max_running is not None and len(self._running) >= self.max_running:
            return None
        for _ in range(len(self._turn)):
            owner = self._turn[0]
            self._turn.rotate(-1)  # the next start looks at the next owner first
            if self._room(owner):
                q = self._waiting[owner]
                job_id = q.popleft()
                if not q:
                    del self._waiting[owner]
                    self._turn.remove(owner)
                self._running[job_id] = owner
                self._owner_running[owner] += 1
                return job_id
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                job_id = self._next()
                while job_id is None and not self._closed:
                    self._cond.wait()
                    job_id = self._next()
                if self._closed or job_id is None:
                    return
            try:
                self._start(job_id)
            except Exception:  # recorded as the job's failure by start; the queue goes on
                self.ended(job_id)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
