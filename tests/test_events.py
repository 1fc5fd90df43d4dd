"""Lifecycle events (issue 15): emitted by the engine, kept across a restart (bounded), streamed
by the Events RPC to the jobs' owners (admins: all), with filters; a reader that falls behind
is told what it missed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from apiharness import ADMIN, ALICE, BOB, HANG, Harness
from test_cli import Server, server

import tjob
from tjob import Engine, JobSpec
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.events import BUFFER, Event, EventLog

__all__ = ["server"]

pytestmark = pytest.mark.root


def kinds(log: EventLog, job_id: str) -> list[str]:
    return [e.kind for e in log.recent() if e.id == job_id]


def of(events: list[Event], job_id: str) -> list[str]:
    return [e.kind for e in events if e.id == job_id]


def until_events(log: EventLog, done: Callable[[list[Event]], bool]) -> None:
    """Until ``done`` holds of the events kept and emitted since: woken by each new one, never
    by a timer (HANG only guards a hang)."""

    async def watch() -> None:
        sub, seen = log.subscribe(0.0)  # what is kept, and from then on all of them
        try:
            async with asyncio.timeout(HANG):
                while not done(seen):
                    seen.append(await sub.get())
        finally:
            log.unsubscribe(sub)

    asyncio.run(watch())


def test_engine_events_and_a_restart(tmp_path: Path, cgroup_parent: str) -> None:
    state = tmp_path / "s"
    with Engine(state, cgroup_parent=cgroup_parent, max_running=1) as eng:
        a = eng.start(JobSpec(["sh", "-c", "exit 3"], name="a"))
        a.wait(HANG)
        b = eng.enqueue(JobSpec(["sleep", "60"]))
        c = eng.enqueue(JobSpec(["true"]))
        c.stop()  # queued behind b (or starting): cancelled, or stopped once it runs
        b.stop(0)
        t = eng.start(JobSpec(["sleep", "60"], timeout=0.2))
        t.wait(HANG)
        eng.remove(a.id)
        # The end step runs on the watcher's thread: until it has, the last event is not there.
        until_events(
            eng.events,
            lambda seen: "timed_out" in of(seen, t.id) and of(seen, b.id)[-1:] != ["started"],
        )
        assert kinds(eng.events, a.id) == ["started", "exited", "removed"]
        ended = [e for e in eng.events.recent() if e.id == a.id and e.kind == "exited"]
        assert ended[0].exit_code == 3 and ended[0].name == "a"
        # b started once a's end step freed the slot, or was cancelled queued if not yet.
        assert kinds(eng.events, b.id) in (
            ["queued", "started", "stopped"],
            ["queued", "cancelled"],
        )
        assert kinds(eng.events, c.id)[-1] in ("cancelled", "stopped", "exited")
        assert kinds(eng.events, t.id) == ["started", "timed_out"]
        seqs = [e.seq for e in eng.events.recent()]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        before = eng.events.recent()
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        assert eng.events.recent() == before  # kept with the job records
        eng.start(JobSpec(["true"])).wait(HANG)
        assert eng.events.recent()[-1].seq > before[-1].seq or len(eng.events.recent()) > len(
            before
        )


def test_a_short_jobs_end_is_never_said_before_its_start(
    tmp_path: Path, cgroup_parent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end is watched for only once the start is said: a job that ends, and whose
    supervisor exits, before its start is said (a loaded machine; made certain here) has its
    "exited" after its "started" all the same."""
    real = Engine._started

    def late(self: Engine, job: tjob.Job) -> None:
        pid = json.loads((job.dir / "run.json").read_text())["supervisor_pid"]
        with contextlib.suppress(ProcessLookupError):
            fd = os.pidfd_open(pid)
            assert select.select([fd], [], [], HANG)[0]
            os.close(fd)
        # Not watched yet, so no end step can run (and say "exited") before this one.
        assert self._hub.counts()[1] == 0
        real(self, job)

    monkeypatch.setattr(Engine, "_started", late)
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent) as eng:
        jobs = [eng.start(JobSpec(["true"])) for _ in range(5)]
        until_events(eng.events, lambda seen: sum(e.kind == "exited" for e in seen) == 5)
        for job in jobs:
            assert kinds(eng.events, job.id) == ["started", "exited"]


def test_events_rpc_owners_filters_and_since(tmp_path: Path) -> None:
    with Harness(tmp_path) as h:
        alice, bob, admin = h.stub(ALICE), h.stub(BOB), h.stub(ADMIN)
        t0 = time.time()
        mine = alice.Run(pb.RunRequest(argv=["true"], name="ev1", labels={"t": "x"}), timeout=HANG)
        alice.Wait(pb.JobRef(id=mine.id), timeout=HANG)
        theirs = bob.Run(pb.RunRequest(argv=["true"]), timeout=HANG)
        bob.Wait(pb.JobRef(id=theirs.id), timeout=HANG)

        def first(stub: object, n: int, **kw: object) -> list[pb.Event]:
            call = stub.Events(pb.EventsRequest(since=t0, **kw), timeout=HANG)  # type: ignore[attr-defined]
            got = [e for _, e in zip(range(n), call, strict=False)]
            call.cancel()
            return got

        # Alice sees her job start and end, not bob's; the admin sees both.
        got = first(alice, 2)
        assert [(e.id, e.kind) for e in got] == [(mine.id, "started"), (mine.id, "exited")]
        assert got[1].HasField("exit_code") and got[1].exit_code == 0 and got[1].name == "ev1"
        assert {e.id for e in first(admin, 4)} == {mine.id, theirs.id}
        assert [e.kind for e in first(alice, 1, filters=["kind=exited", "label=t=x"])] == ["exited"]
        with pytest.raises(grpc.RpcError) as err:
            first(alice, 1, filters=["colour=red"])
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        # Live: an event arrives as it happens.
        call = alice.Events(pb.EventsRequest(filters=["name=ev2"]), timeout=HANG)
        alice.Run(pb.RunRequest(argv=["true"], name="ev2"), timeout=HANG)
        assert next(call).kind == "started"
        call.cancel()


def test_a_reader_that_falls_behind_is_told(tmp_path: Path) -> None:
    with Harness(tmp_path) as h:
        assert h.engine is not None
        log = h.engine.events
        from tjob.status import JobState, JobStatus

        async def behind() -> tuple[int, int]:
            sub, _ = log.subscribe(None)
            st = JobStatus("0" * 32, JobState.EXITED, ("x",), owner="z")
            for _ in range(BUFFER + 10):
                log.emit("exited", st, time.time())  # nobody reads meanwhile
            await asyncio.sleep(0)  # the loop delivers what it was handed
            got = sub.queue.qsize()
            log.unsubscribe(sub)
            return got, sub.missed

        got, missed = asyncio.run(behind())
        assert (got, missed) == (BUFFER, 10)


def test_tjob_events_cli(server: Server) -> None:
    job = server.run("--name", "cli-ev", "sh", "-c", "exit 4")
    server.tjob("wait", job)
    with server.popen("events", "--since", "1h", "--json", "--filter", "name=cli-ev") as proc:
        assert proc.stdout is not None
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
        proc.terminate()
    assert [(d["kind"], d["exit_code"]) for d in lines] == [("started", None), ("exited", 4)]
    with server.popen("events", "--since", "1h", "--filter", "name=cli-ev") as proc:
        assert proc.stdout is not None
        text = proc.stdout.readline().decode()
        proc.terminate()
    assert f" {job} cli-ev " in text and text.rstrip().endswith("started")
