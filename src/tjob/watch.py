"""Wake-ups without polling: one thread multiplexes inotify and pidfds for every waiter.

A waiter subscribes to a key (a job directory) and gets woken when a file in it changes (or,
with ``names``, one of those files: a wait for a job's end sleeps through its log's writes).
Waiters are threading events (sync readers) or asyncio events (async readers, woken with one
``call_soon_threadsafe`` per loop per wake-up, not one per waiter), so thousands of followers
cost one thread and one inotify instance in all. The same thread runs a callback when a pidfd
handed to :meth:`Hub.on_exit` fires (the engine learns there that a supervisor exited).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import select
import struct
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE_SELF = 0x400
IN_IGNORED = 0x8000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")
DIR_MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


class Waiter:
    """Set when its key changes; ``clear()`` before checking, then wait: no wake-up is lost."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None, names: frozenset[bytes] | None = None
    ) -> None:
        self.loop = loop
        self.names = names
        self.sync_event = threading.Event()
        self.async_event = asyncio.Event() if loop is not None else None

    def clear(self) -> None:
        if self.async_event is not None:
            self.async_event.clear()
        else:
            self.sync_event.clear()

    def wait(self, timeout: float | None) -> bool:
        return self.sync_event.wait(timeout)

    async def wait_async(self) -> None:
        assert self.async_event is not None
        await self.async_event.wait()


class _Key:
    __slots__ = ("waiters", "wd")

    def __init__(self) -> None:
        self.wd = -1
        self.waiters: set[Waiter] = set()


class Hub:
    """One per engine. Its thread starts on first use and stops on ``close()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, _Key] = {}
        self._by_wd: dict[int, str] = {}
        self._exits: dict[int, Callable[[], None]] = {}
        self._fd = -1
        self._epoll: select.epoll | None = None
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._closed = False

    def _start(self) -> None:
        self._fd = _check(_libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1")
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._fd, select.EPOLLIN)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._thread = threading.Thread(target=self._run, name="tjob-watch", daemon=True)
        self._thread.start()

    def _started(self) -> None:
        if self._closed:
            raise RuntimeError("hub closed")
        if self._thread is None:
            self._start()

    def on_exit(self, pidfd: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, on the hub's thread, when ``pidfd``'s process has exited
        (at once if it has). The caller keeps the pidfd and must :meth:`forget` it before
        closing it. A closed hub (the engine closing) watches nothing."""
        with self._lock:
            if self._closed:
                return
            self._started()
            assert self._epoll is not None
            self._exits[pidfd] = callback
            self._epoll.register(pidfd, select.EPOLLIN)

    def forget(self, pidfd: int) -> None:
        """Stop watching ``pidfd`` (no-op once its callback has been taken)."""
        with self._lock:
            if self._exits.pop(pidfd, None) is not None and self._epoll is not None:
                self._epoll.unregister(pidfd)

    def counts(self) -> tuple[int, int]:
        """(watched directories, watched pidfds): for leak checks."""
        with self._lock:
            return len(self._keys), len(self._exits)

    @contextmanager
    def subscribe(
        self,
        key: str,
        loop: asyncio.AbstractEventLoop | None = None,
        names: frozenset[str] | None = None,
    ) -> Iterator[Waiter]:
        """Watch directory ``key``; ``loop``: wake the waiter there (for ``wait_async``);
        ``names``: only for changes to these files (and the directory's removal)."""
        waiter = Waiter(loop, None if names is None else frozenset(n.encode() for n in names))
        with self._lock:
            self._started()
            k = self._keys.get(key)
            if k is None:
                k = self._keys[key] = _Key()
                wd = _libc.inotify_add_watch(self._fd, key.encode(), DIR_MASK)
                if wd < 0:
                    del self._keys[key]
                    e = ctypes.get_errno()
                    raise OSError(e, f"inotify_add_watch {key}: {os.strerror(e)}")
                k.wd = wd
                self._by_wd[wd] = key
            k.waiters.add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                k.waiters.discard(waiter)
                if not k.waiters and self._keys.get(key) is k:
                    self._drop(key, k)

    def wait_until(
        self,
        key: str,
        ready: Callable[[], T | None],
        deadline: float | None,
        late: str,
        names: frozenset[str] | None = None,
    ) -> T:
        """Block until ``ready()`` gives something, checked again at each change in directory
        ``key`` (to ``names``, if given); TimeoutError(``late``) once ``deadline``
        (time.monotonic) has passed."""
        with self.subscribe(key, names=names) as w:
            while True:
                w.clear()  # before checking: a change after the check wakes the wait
                got = ready()
                if got is not None:
                    return got
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(late)
                w.wait(left)

    async def until_async(
        self, key: str, ready: Callable[[], T | None], names: frozenset[str] | None = None
    ) -> T:
        """Like :meth:`wait_until`, without blocking the event loop (the caller bounds it)."""
        with self.subscribe(key, asyncio.get_running_loop(), names) as w:
            while True:
                w.clear()  # before asking: a change after the answer wakes the wait
                got = ready()
                if got is not None:
                    return got
                await w.wait_async()

    def _drop(self, key: str, k: _Key) -> None:
        del self._keys[key]
        if k.wd >= 0 and self._by_wd.pop(k.wd, None) is not None:
            _libc.inotify_rm_watch(self._fd, k.wd)

    def _run(self) -> None:
        """Wait for events; under the lock only the bookkeeping: the inotify fd is read, and
        waiters woken, outside it (a thread waiting for the GIL while holding the lock would
        hold up every subscribe of the event loop with it)."""
        assert self._epoll is not None
        buf = bytearray(65536)
        while True:
            try:
                events = self._epoll.poll()
            except InterruptedError:
                continue
            raw = self._read_inotify(buf) if any(fd == self._fd for fd, _ in events) else []
            keys: dict[str, set[bytes] | None] = {}
            exited: list[Callable[[], None]] = []
            with self._lock:
                if self._closed:
                    return
                for data in raw:
                    self._parse(data, keys)
                for fd, _ in events:
                    if fd in self._exits:
                        # Level-triggered: a pidfd stays readable, so it fires once and goes.
                        exited.append(self._exits.pop(fd))
                        self._epoll.unregister(fd)
                sync, per_loop = self._waiters(keys)
            _wake(sync, per_loop)
            for callback in exited:  # outside the lock: it may subscribe, forget, or write
                try:
                    callback()
                except Exception:
                    traceback.print_exc()  # the thread must live on for every other waiter

    def _read_inotify(self, buf: bytearray) -> list[bytes]:
        """What the inotify fd holds now (close() closes it only after this thread ends)."""
        out: list[bytes] = []
        while True:
            try:
                n = os.readv(self._fd, [buf])
            except BlockingIOError:
                return out
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            out.append(bytes(buf[:n]))

    def _parse(self, data: bytes, keys: dict[str, set[bytes] | None]) -> None:
        """Into ``keys``: each changed directory, with the names that changed in it (None: the
        directory itself, which wakes every waiter)."""
        pos = 0
        while pos < len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
            name = data[pos + _EVENT.size : pos + _EVENT.size + length].rstrip(b"\0")
            pos += _EVENT.size + length
            key = self._by_wd.get(wd)
            if key is None:
                continue
            changed = keys.setdefault(key, set())
            if changed is not None:
                if name:
                    changed.add(name)
                else:
                    keys[key] = None
            if mask & IN_IGNORED:
                # The directory is gone (job removed): its watch went with it.
                self._by_wd.pop(wd, None)
                k = self._keys.get(key)
                if k is not None:
                    k.wd = -1

    def _waiters(
        self, keys: dict[str, set[bytes] | None]
    ) -> tuple[list[threading.Event], dict[asyncio.AbstractEventLoop, list[asyncio.Event]]]:
        """The events to set for ``keys``: threads' and, per event loop, coroutines'."""
        sync: list[threading.Event] = []
        per_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
        for key, changed in keys.items():
            k = self._keys.get(key)
            if k is None:
                continue
            for w in k.waiters:
                if changed is not None and w.names is not None and w.names.isdisjoint(changed):
                    continue
                if w.loop is None:
                    sync.append(w.sync_event)
                else:
                    assert w.async_event is not None
                    per_loop.setdefault(w.loop, []).append(w.async_event)
        return sync, per_loop

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            os.write(self._wake_w, b"x")
            thread.join(5)
            assert self._epoll is not None
            for key, k in list(self._keys.items()):
                self._drop(key, k)
            self._exits.clear()
            self._epoll.close()
            for fd in (self._fd, self._wake_r, self._wake_w):
                os.close(fd)


def _wake(
    sync: list[threading.Event], per_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Event]]
) -> None:
    for ev in sync:
        ev.set()
    for loop, evs in per_loop.items():
        try:
            loop.call_soon_threadsafe(_set_all, evs)
        except RuntimeError:
            pass  # that loop is closed; its waiters are gone


def _set_all(events: list[asyncio.Event]) -> None:
    for ev in events:
        ev.set()
