"""The shared watcher: directory changes wake sync and async waiters; a pidfd's exit runs its
callback once, on the watcher's thread."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.timeouts import HANG

from tjob.watch import Hub


@pytest.fixture
def hub() -> Iterator[Hub]:
    h = Hub()
    yield h
    h.close()


def test_a_file_written_in_the_directory_wakes_a_sync_waiter(hub: Hub, tmp_path: Path) -> None:
    with hub.subscribe(str(tmp_path)) as w:
        w.clear()
        assert not w.wait(0)
        (tmp_path / "status.json").write_text("{}")
        assert w.wait(HANG)
    assert hub.counts() == (0, 0)  # the last waiter gone, the watch goes


def test_a_waiter_for_some_names_sleeps_through_the_other_files(hub: Hub, tmp_path: Path) -> None:
    d = tmp_path / "job"
    d.mkdir()
    with hub.subscribe(str(d), names=frozenset({"status.json"})) as end, hub.subscribe(str(d)) as w:
        end.clear()
        w.clear()
        (d / "output.log").write_text("x")
        assert w.wait(HANG)  # the change was seen: by both waiters at once
        assert not end.wait(0)
        (d / "status.json.tmp").write_text("{}")
        (d / "status.json.tmp").rename(d / "status.json")
        assert end.wait(HANG)
        end.clear()
        for f in d.iterdir():
            f.unlink()
        d.rmdir()  # the directory itself: every waiter wakes
        assert end.wait(HANG)


def test_async_waiters_of_one_directory_all_wake(hub: Hub, tmp_path: Path) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with hub.subscribe(str(tmp_path), loop) as a, hub.subscribe(str(tmp_path), loop) as b:
            assert hub.counts() == (1, 0)
            a.clear()
            b.clear()
            (tmp_path / "x").write_text("x")
            async with asyncio.timeout(HANG):
                await a.wait_async()
                await b.wait_async()

    asyncio.run(main())


def test_exit_callback_runs_once_on_the_watchers_thread(hub: Hub) -> None:
    proc = subprocess.Popen(["sleep", "1000"])
    fd = os.pidfd_open(proc.pid)
    ran: list[int] = []
    done = threading.Event()

    def on_exit() -> None:
        ran.append(threading.get_ident())
        done.set()

    try:
        hub.on_exit(fd, on_exit)
        assert hub.counts() == (0, 1)
        assert not done.wait(0.05)  # still running: nothing yet
        proc.kill()
        proc.wait()
        assert done.wait(HANG)
        assert ran != [threading.get_ident()] and len(ran) == 1
        assert hub.counts() == (0, 0)
        hub.forget(fd)  # taken already: a no-op
    finally:
        os.close(fd)


def test_a_forgotten_pidfd_runs_nothing(hub: Hub) -> None:
    forgotten, later = subprocess.Popen(["sleep", "1000"]), subprocess.Popen(["sleep", "1000"])
    fds = [os.pidfd_open(forgotten.pid), os.pidfd_open(later.pid)]
    ran, went_round = threading.Event(), threading.Event()
    try:
        hub.on_exit(fds[0], ran.set)
        hub.forget(fds[0])
        assert hub.counts() == (0, 0)
        forgotten.kill()
        forgotten.wait()
        # Another exit after it: once its callback has run, the thread has gone past the first.
        hub.on_exit(fds[1], went_round.set)
        later.kill()
        later.wait()
        assert went_round.wait(HANG)
    finally:
        for fd in fds:
            os.close(fd)
    assert not ran.is_set()


def test_a_closed_hub_refuses_waiters_and_ignores_exits(tmp_path: Path) -> None:
    h = Hub()
    h.close()
    with pytest.raises(RuntimeError), h.subscribe(str(tmp_path)):
        pass
    h.on_exit(0, lambda: None)  # the engine closing: nothing is watched
    assert h.counts() == (0, 0)
