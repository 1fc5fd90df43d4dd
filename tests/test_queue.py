"""The queue in the library (issue 15): queued jobs start as room frees, FIFO per owner and round
robin between owners, can be cancelled, waited for and followed, and survive a restart."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tjob import Engine, JobSpec, JobState
from tjob.errors import InvalidSpec
from tjob.job import Job

pytestmark = pytest.mark.root

HANG = 60.0


@pytest.fixture
def eng1(tmp_path: Path, cgroup_parent: str) -> Iterator[Engine]:
    """An engine that runs one job at a time."""
    eng = Engine(tmp_path / "state", cgroup_parent=cgroup_parent, max_running=1)
    try:
        yield eng
    finally:
        stop_all(eng)
        eng.close()


def stop_all(eng: Engine) -> None:
    for job in eng.jobs():
        if job.queued:
            job.stop(0)
    for job in eng.jobs():
        if not job.status().state.finished:
            job.stop(0)


def blocker(eng: Engine, owner: str = "") -> Job:
    """A running job that holds the one slot until stopped."""
    job = eng.start(JobSpec(["sleep", "600"], owner=owner))
    assert job.status().state is JobState.RUNNING
    return job


def test_queued_jobs_start_in_order_as_room_frees(eng1: Engine) -> None:
    hold = blocker(eng1)
    jobs = [eng1.enqueue(JobSpec(["echo", str(i)])) for i in range(3)]
    assert [j.status().state for j in jobs] == [JobState.QUEUED] * 3
    assert eng1.queued_count() == 3 and eng1.running_count() == 1
    hold.stop(0)
    ends = [j.wait(HANG) for j in jobs]
    assert [st.exit_code for st in ends] == [0, 0, 0]
    starts = [st.started_at or 0 for st in ends]
    assert starts == sorted(starts)
    # One at a time: each started after the one before it ended.
    for before, after in itertools.pairwise(ends):
        assert before.ended_at is not None and after.started_at is not None
        assert after.started_at >= before.ended_at
    assert b"".join(c.data for c in jobs[2].output()) == b"2\n"


def test_round_robin_between_owners(eng1: Engine) -> None:
    hold = blocker(eng1, "a")
    mine = [eng1.enqueue(JobSpec(["true"], owner="a")) for _ in range(4)]
    theirs = eng1.enqueue(JobSpec(["true"], owner="b"))
    hold.stop(0)
    st_b = theirs.wait(HANG)
    ends = [j.wait(HANG) for j in mine]
    later = [st for st in ends if (st.started_at or 0) > (st_b.started_at or 0)]
    assert len(later) >= 3  # b's one job did not wait behind a's four


def test_cancel_a_queued_job(eng1: Engine) -> None:
    hold = blocker(eng1)
    job = eng1.enqueue(JobSpec(["echo", "never"], name="q1"))
    waited: list[object] = []
    t = threading.Thread(target=lambda: waited.append(job.wait(HANG)))
    t.start()
    st = job.stop(10)
    t.join(HANG)
    assert (st.state, st.started_at, st.pid) == (JobState.CANCELLED, None, None)
    assert waited == [st] and job.status() == st
    assert list(job.output()) == []
    hold.stop(0)
    eng1.remove(job.id)  # a finished job like any other; its name is free again
    assert eng1.find("", "q1") is None


def test_per_owner_cap_queues_too(tmp_path: Path, cgroup_parent: str) -> None:
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent, owner_max_running=1) as eng:
        hold = blocker(eng, "a")
        a2 = eng.enqueue(JobSpec(["true"], owner="a"))
        b1 = eng.enqueue(JobSpec(["true"], owner="b"))  # b has room: starts at once
        assert b1.wait(HANG).exit_code == 0
        assert a2.status().state is JobState.QUEUED
        hold.stop(0)
        assert a2.wait(HANG).exit_code == 0


def test_the_queue_survives_a_restart_in_order(tmp_path: Path, cgroup_parent: str) -> None:
    state = tmp_path / "state"
    with Engine(state, cgroup_parent=cgroup_parent, max_running=1) as eng:
        hold = blocker(eng)
        ids = [
            eng.enqueue(JobSpec(["echo", str(i)], name=f"j{i}", env={"X": "y"})).id
            for i in range(3)
        ]
    with Engine(state, cgroup_parent=cgroup_parent, max_running=1) as eng:
        jobs = [eng.get(i) for i in ids]
        assert [j.status().state for j in jobs] == [JobState.QUEUED] * 3
        assert [j.status().name for j in jobs] == ["j0", "j1", "j2"]
        eng.get(hold.id).stop(0)
        ends = [j.wait(HANG) for j in jobs]
        assert [st.exit_code for st in ends] == [0, 0, 0]
        starts = [st.started_at or 0 for st in ends]
        assert starts == sorted(starts)
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        assert all(eng.get(i).status().state is JobState.EXITED for i in ids)


def test_removing_a_job_right_after_its_end_frees_its_slot(eng1: Engine) -> None:
    for _ in range(5):
        job = eng1.enqueue(JobSpec(["true"]))
        job.wait(HANG)
        eng1.remove(job.id)  # perhaps before the engine's end step: the slot is freed anyway
    assert eng1.running_count() == 0


def test_a_capped_start_holds_its_slot_from_the_check(eng1: Engine) -> None:
    """A direct start counted against max_running from its check on: a queued job cannot take
    the slot while it starts, and a second capped start is refused (issue 15)."""
    import asyncio

    from tjob.queue import NoRoom

    # A capped start that fails after its check gives its slot back.
    with pytest.raises(InvalidSpec):
        eng1.start(JobSpec(["true"], user="no-such-user-here"), capped=True)
    assert eng1.running_count() == 0 and eng1.has_room("")

    async def race() -> tuple[Job, Job]:
        task = asyncio.ensure_future(eng1.start_async(JobSpec(["sleep", "600"]), capped=True))
        await asyncio.sleep(0)  # the flow's first step: the reservation, before any thread hop
        assert eng1.running_count() == 1 and not eng1.has_room("")
        with pytest.raises(NoRoom) as no:
            eng1.start(JobSpec(["true"]), capped=True)
        assert (no.value.scope, no.value.running, no.value.limit) == ("host", 1, 1)
        waiting = eng1.enqueue(JobSpec(["true"]))  # the dispatcher sees no room
        return await asyncio.wait_for(task, HANG), waiting

    direct, waiting = asyncio.run(race())
    assert direct.status().state is JobState.RUNNING
    assert waiting.status().state is JobState.QUEUED and eng1.running_count() == 1
    direct.stop(0)
    assert waiting.wait(HANG).exit_code == 0  # the slot freed: the queued job ran


def test_capped_starts_racing_for_the_last_slots(tmp_path: Path, cgroup_parent: str) -> None:
    eng = Engine(
        tmp_path / "state", cgroup_parent=cgroup_parent, max_running=3, owner_max_running=2
    )
    try:
        blocker(eng, "carol")
        got: list[Job] = []
        refused: list[str] = []
        go = threading.Barrier(6)

        def run(owner: str) -> None:
            from tjob.queue import NoRoom

            go.wait(HANG)
            try:
                got.append(eng.start(JobSpec(["sleep", "600"], owner=owner), capped=True))
            except NoRoom as e:
                refused.append(e.scope)

        threads = [threading.Thread(target=run, args=(o,)) for o in ["alice"] * 3 + ["bob"] * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG)
        # Two slots were left on the host: two of six racing starts got them, the rest refused.
        assert len(got) == 2 and len(refused) == 4 and eng.running_count() == 3
        live = [j for j in eng.jobs() if j.status().state is JobState.RUNNING]
        assert len(live) == 3
    finally:
        stop_all(eng)
        eng.close()


def test_a_queued_run_repeated_with_its_request_id_is_one_job(
    tmp_path: Path, cgroup_parent: str
) -> None:
    """A retried queued Run (and a direct one with the same id) returns the queued job, before
    and after a restart, and once it ran (issue 19's idempotent Run, for the queue too)."""
    state = tmp_path / "state"
    with Engine(state, cgroup_parent=cgroup_parent, max_running=1) as eng:
        hold = blocker(eng)
        first = eng.enqueue(JobSpec(["echo", "once"], owner="alice", request_id="q1"))
        assert eng.enqueue(JobSpec(["echo", "once"], owner="alice", request_id="q1")) is first
        assert eng.start(JobSpec(["echo", "once"], owner="alice", request_id="q1")) is first
        other = eng.enqueue(JobSpec(["true"], owner="bob", request_id="q1"))  # ids are per owner
        assert other.id != first.id and eng.queued_count() == 2
    with Engine(state, cgroup_parent=cgroup_parent, max_running=1) as eng:
        again = eng.enqueue(JobSpec(["echo", "once"], owner="alice", request_id="q1"))
        assert again.id == first.id and again.status().state is JobState.QUEUED
        eng.get(hold.id).stop(0)
        assert again.wait(HANG).exit_code == 0
        ran = eng.enqueue(JobSpec(["echo", "once"], owner="alice", request_id="q1"))
        assert ran.id == first.id and ran.status().state is JobState.EXITED
        assert eng.get(other.id).wait(HANG).exit_code == 0
        assert sum(j.owner == "alice" for j in eng.jobs()) == 1


def test_a_queued_start_cut_short_is_queued_again_with_its_request_id(
    tmp_path: Path, cgroup_parent: str
) -> None:
    """An engine died between recording a queued job's start (its row and directory) and
    handing it over: the next one records no failure for it, queues it again (it never ran),
    and a retry with its request id still finds it (issues 15, 19)."""
    import json
    import sqlite3

    from tjob.jobdir import SPEC_FILE

    state = tmp_path / "state"
    with Engine(state, cgroup_parent=cgroup_parent, max_running=1) as eng:
        hold = blocker(eng)
        queued = eng.enqueue(JobSpec(["echo", "once"], owner="alice", request_id="q1"))
    # What a start cut short leaves: its jobs row and its directory (spec.json), no log.
    (state / "jobs" / queued.id).mkdir(mode=0o700)
    (state / "jobs" / queued.id / SPEC_FILE).write_text(json.dumps(queued.facts.to_dict()))
    db = sqlite3.connect(state / "jobs.db")
    spec = {"argv": ["echo", "once"], "cwd": "/", "user": None, "limits": {}}
    db.execute(
        "INSERT INTO jobs VALUES (?, ?, ?, ?, NULL, NULL)",
        (queued.id, "alice", queued.created_at, json.dumps(spec)),
    )
    db.commit()
    db.close()
    with Engine(state, cgroup_parent=cgroup_parent, max_running=1) as eng:
        again = eng.enqueue(JobSpec(["echo", "once"], owner="alice", request_id="q1"))
        assert again.id == queued.id and again.status().state is JobState.QUEUED
        eng.get(hold.id).stop(0)
        assert again.wait(HANG).exit_code == 0
        assert b"".join(c.data for c in again.output(follow=False)) == b"once\n"
