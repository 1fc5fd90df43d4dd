"""Damaged copies of every durable file of a state directory (status.json, run.json,
spec.json, output.log, jobs.db): the engine starts, every undamaged job is intact and
controllable, the damaged one is reported as such (or repaired from the other copy), and
nothing runs unlisted."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from faultkit import check_intact, check_nothing_unlisted, make_state, stop_all, unfinish
from support.oldlogs import as_version, offset_of

from tjob import Engine, JobSpec, JobState
from tjob.jobdir import LOG_FILE, RUN_FILE, SPEC_FILE, STATUS_FILE
from tjob.logstore import HEADER

pytestmark = pytest.mark.root


@pytest.mark.parametrize("content", [b'{"id": "ab', b"{}", b"[1]"], ids=repr)
def test_a_damaged_status_quarantines_its_job_only(
    tmp_path: Path, cgroup_parent: str, content: bytes
) -> None:
    state = tmp_path / "state"
    jobs = make_state(state, cgroup_parent, ["sh", "-c", "exit 7"])
    unfinish(state, jobs.victim)  # it ended while no engine ran: its status file is the truth
    (state / "jobs" / jobs.victim / STATUS_FILE).write_bytes(content)
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        victim = eng.get(jobs.victim)
        st = victim.status()
        assert st.state is JobState.DAMAGED and STATUS_FILE in (st.error or "")
        assert st.owner == "carol"
        assert victim.wait(1).state is JobState.DAMAGED  # Wait answers, at once
        assert {j.id for j in eng.jobs()} >= {jobs.victim}  # List answers
        assert (state / "jobs" / jobs.victim / STATUS_FILE).read_bytes() == content  # kept
        check_intact(eng, jobs)
        check_nothing_unlisted(eng, cgroup_parent)
        eng.remove(jobs.victim)  # rm works
        assert not (state / "jobs" / jobs.victim).exists()
    finally:
        stop_all(eng)
        eng.close(stop_jobs=True)


@pytest.mark.parametrize("content", [b"", b"\0" * 700], ids=["empty", "zeros"])
def test_a_status_that_never_reached_the_disk_is_no_end_and_the_job_is_lost(
    tmp_path: Path, cgroup_parent: str, content: bytes
) -> None:
    """status.json is renamed into place before its fsync (jobdir.write_final): a power cut
    between the two may leave it empty or zeros, and its row without the end (committed
    NORMAL). That is no end recorded, not damage: the job is found lost, its file replaced."""
    state = tmp_path / "state"
    jobs = make_state(state, cgroup_parent, ["sh", "-c", "exit 7"])
    unfinish(state, jobs.victim)
    status = state / "jobs" / jobs.victim / STATUS_FILE
    status.write_bytes(content)
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        st = eng.get(jobs.victim).status()
        assert st.state is JobState.LOST and st.owner == "carol", st
        assert json.loads(status.read_bytes())["state"] == "lost"
        check_intact(eng, jobs)
        check_nothing_unlisted(eng, cgroup_parent)
    finally:
        stop_all(eng)
        eng.close(stop_jobs=True)


@pytest.mark.parametrize("content", [b"", b'{"v": 1, "supervisor_pid": 1', b"{}"], ids=repr)
def test_a_damaged_run_file_does_not_kill_a_healthy_job(
    tmp_path: Path, cgroup_parent: str, content: bytes
) -> None:
    state = tmp_path / "state"
    jobs = make_state(state, cgroup_parent, ["sleep", "1000"])
    (state / "jobs" / jobs.victim / RUN_FILE).write_bytes(content)
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        victim = eng.get(jobs.victim)
        assert victim.status().state is JobState.RUNNING  # found by its supervisor's mark
        check_intact(eng, jobs)
        check_nothing_unlisted(eng, cgroup_parent)
        st = victim.stop(grace=0)
        assert (st.state, st.signal, st.owner) == (JobState.STOPPED, 9, "carol")
    finally:
        stop_all(eng)
        eng.close()


@pytest.mark.parametrize("content", [b"", b"{}", b"\x00" * 100], ids=repr)
def test_a_damaged_spec_is_rewritten_from_the_store(
    tmp_path: Path, cgroup_parent: str, content: bytes
) -> None:
    state = tmp_path / "state"
    jobs = make_state(state, cgroup_parent, ["sleep", "1000"])
    (state / "jobs" / jobs.victim / SPEC_FILE).write_bytes(content)
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        check_intact(eng, jobs)
        st = eng.get(jobs.victim).stop(grace=0)  # recorded from the repaired spec.json
        assert (st.state, st.argv, st.owner) == (JobState.STOPPED, ("sleep", "1000"), "carol")
        check_nothing_unlisted(eng, cgroup_parent)
    finally:
        stop_all(eng)
        eng.close()


def test_a_running_job_with_no_record_and_no_spec_is_killed_and_quarantined(
    tmp_path: Path, cgroup_parent: str
) -> None:
    state = tmp_path / "state"
    jobs = make_state(state, cgroup_parent, ["sleep", "1000"])
    (state / "jobs" / jobs.victim / SPEC_FILE).write_bytes(b"")
    for name in os.listdir(state):
        if name.startswith("jobs.db"):
            os.unlink(state / name)  # and its record is gone too
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        st = eng.get(jobs.victim).status()
        assert st.state is JobState.DAMAGED and "killed" in (st.error or "")
        check_intact(eng, jobs)  # the others, rebuilt from their directories
        check_nothing_unlisted(eng, cgroup_parent)
        eng.remove(jobs.victim)
    finally:
        stop_all(eng)
        eng.close()


@pytest.mark.parametrize("what", ["stream byte", "payload bit"])
def test_a_damaged_log_is_marked_not_served_as_whole(
    tmp_path: Path, cgroup_parent: str, what: str
) -> None:
    state = tmp_path / "state"
    jobs = make_state(state, cgroup_parent, ["sh", "-c", "echo one; echo two >&2"])
    log = state / "jobs" / jobs.victim / LOG_FILE
    data = bytearray(log.read_bytes())
    if what == "payload bit":
        data[offset_of(data, 0) + HEADER.size] ^= 0x01  # "one" -> "nne": its checksum fails
        expect = [b""]
    else:
        data[offset_of(data, 1)] = 0xEE  # the second frame's stream byte: no writer makes it
        expect = [b"one\n", b""]
    log.write_bytes(bytes(data))
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        chunks = list(eng.get(jobs.victim).output(follow=True))
        assert [c.data for c in chunks] == expect and chunks[-1].truncated
        # The view of the last line: a damaged frame it meets is marked; one wholly before it
        # (the "one" of "payload bit") is not read.
        tail = list(eng.get(jobs.victim).output(follow=True, tail=1))
        if what == "payload bit":
            assert [(c.data, c.truncated) for c in tail] == [(b"two\n", False)]
        else:
            assert [(c.data, c.truncated) for c in tail] == [(b"", True)]
        check_intact(eng, jobs)
    finally:
        stop_all(eng)
        eng.close()


def _truncate(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def _bad_header(db: Path) -> None:
    with open(db, "r+b") as f:
        f.write(b"not a database at all")


def _bad_page(db: Path) -> None:
    with open(db, "r+b") as f:
        f.seek(4096 + 16)  # the jobs table's first page (after the schema page)
        f.write(os.urandom(512))


@pytest.mark.parametrize("damage", [_truncate, _bad_header, _bad_page, os.unlink])
def test_a_damaged_database_is_rebuilt_from_the_job_directories(
    tmp_path: Path, cgroup_parent: str, damage: object, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    jobs = make_state(state, cgroup_parent, ["sleep", "1000"])
    db = sqlite3.connect(state / "jobs.db")
    for i in range(60):  # rows of jobs long removed, so the table spans pages
        spec = json.dumps({"argv": ["x" * 200], "cwd": "/", "user": None, "limits": {}})
        db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, NULL, NULL)", (f"gone{i}", "z", 0, spec))
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    assert callable(damage)
    damage(state / "jobs.db")
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        assert {j.id for j in eng.jobs()} >= {jobs.exited, jobs.running, jobs.victim}
        assert eng.get(jobs.victim).status().state is JobState.RUNNING  # adopted
        check_intact(eng, jobs)
        check_nothing_unlisted(eng, cgroup_parent)
        assert eng.get(jobs.victim).stop(grace=0).state is JobState.STOPPED
    finally:
        stop_all(eng)
        eng.close()
    if damage is not os.unlink:
        assert any(n.startswith("jobs.db.damaged-") for n in os.listdir(state))
        assert "moved aside" in caplog.text
    assert "indexed again" in caplog.text


def test_a_record_without_a_directory_is_cleaned(tmp_path: Path, cgroup_parent: str) -> None:
    state = tmp_path / "state"
    Engine(state, cgroup_parent=cgroup_parent).close()
    db = sqlite3.connect(state / "jobs.db")
    spec = json.dumps({"argv": ["true"], "cwd": "/", "user": None, "limits": {}})
    db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, NULL, NULL)", ("a" * 32, "z", 0, spec))
    db.commit()
    db.close()
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        assert eng.jobs() == []  # a start cut short before its directory: nothing ran
    finally:
        eng.close()


def test_a_state_dir_of_the_previous_release_still_reads(
    tmp_path: Path, cgroup_parent: str
) -> None:
    """Logs without checksums (TJOBLOG1: padding where the checksum is), a database without
    this release's tables: read as they are."""
    state = tmp_path / "state"
    jobs = make_state(state, cgroup_parent, ["sh", "-c", "echo one; echo two >&2; exit 5"])
    log = state / "jobs" / jobs.victim / LOG_FILE
    data = as_version(log.read_bytes(), 1)
    log.write_bytes(data)
    db = sqlite3.connect(state / "jobs.db")
    db.execute("DROP TABLE requests")
    db.execute("DROP TABLE end_clock")
    db.commit()
    db.close()
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        victim = eng.get(jobs.victim)
        assert sorted(c.data for c in victim.output(follow=True)) == [b"one\n", b"two\n"]
        assert victim.status().exit_code == 5
        check_intact(eng, jobs)
        assert eng.prune(0) == sorted([jobs.exited, jobs.running, jobs.victim])
    finally:
        stop_all(eng)
        eng.close()


@pytest.mark.parametrize("damage", [_bad_header, os.unlink])
def test_a_rebuilt_database_still_knows_each_runs_request_id(
    tmp_path: Path, cgroup_parent: str, damage: object
) -> None:
    """The request id is kept in spec.json: a Run retried after the index was rebuilt from the
    job directories returns the job the first attempt started, not a second one."""
    state = tmp_path / "state"
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        done = eng.start(JobSpec(["true"], owner="alice", request_id="r-done"))
        done.wait(30)
        running = eng.start(JobSpec(["sleep", "1000"], owner="alice", request_id="r-run"))
    finally:
        eng.close()
    assert callable(damage)
    damage(state / "jobs.db")
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        again = eng.start(JobSpec(["true"], owner="alice", request_id="r-done"))
        assert again.id == done.id and again.status().state is JobState.EXITED
        rerun = eng.start(JobSpec(["sleep", "1000"], owner="alice", request_id="r-run"))
        assert rerun.id == running.id and rerun.status().state is JobState.RUNNING
        # Ids are per owner: another client's Run with the same id is a new job of its own.
        other = eng.start(JobSpec(["true"], owner="mallory", request_id="r-run"))
        assert other.id != running.id and other.owner == "mallory"
        assert len(eng.jobs()) == 3
    finally:
        stop_all(eng)
        eng.close()
