"""The job store on its own: records round-trip with their typed facts and ends, and a state
directory written before limits were typed still reads."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from tjob.errors import TjobError
from tjob.status import JobFacts, JobState, JobStatus, ResolvedLimits
from tjob.store import Store

LIMITS = ResolvedLimits(20, 64, 100, 1 << 20, 2 << 20, "8:0")


def facts(job_id: str, created_at: float) -> JobFacts:
    return JobFacts(job_id, ("echo", "hi"), "alice", created_at, LIMITS)


def test_records_round_trip_in_creation_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "jobs.db")
    store.add(facts("b", 2.0), "/tmp", "nobody")
    store.add(facts("a", 1.0), "/", 1000)
    recs = list(store.records())
    assert [r.facts for r in recs] == [facts("a", 1.0), facts("b", 2.0)]
    assert [(r.cwd, r.user, r.status) for r in recs] == [
        ("/", 1000, None),
        ("/tmp", "nobody", None),
    ]
    assert (tmp_path / "jobs.db").stat().st_mode & 0o777 == 0o600
    store.close()


def test_finish_prune_and_remove(tmp_path: Path) -> None:
    store = Store(tmp_path / "jobs.db")
    store.add(facts("a", 1.0), "/", None)
    store.add(facts("b", 1.0), "/", None)
    end = JobStatus.of(facts("a", 1.0), JobState.EXITED, exit_code=0, ended_at=10.0)
    store.finish("a", end)
    assert store.ended_before(11.0) == ["a"] and store.ended_before(10.0) == []
    store.close()
    again = Store(tmp_path / "jobs.db")  # durable across a reopen
    assert {r.facts.id: r.status for r in again.records()} == {"a": end, "b": None}
    again.remove("a")
    assert [r.facts.id for r in again.records()] == ["b"]
    with pytest.raises(TjobError, match="cannot record"):
        again.add(facts("b", 1.0), "/", None)  # one record per id
    again.close()


def test_rows_written_before_typed_limits_still_read(tmp_path: Path) -> None:
    Store(tmp_path / "jobs.db").close()
    db = sqlite3.connect(tmp_path / "jobs.db")
    spec = {"argv": ["true"], "cwd": "/", "user": None, "limits": {"memory_mb": 20, "pids": None}}
    status = {"id": "old", "state": "lost", "argv": ["true"], "limits": {"memory_mb": 20}}
    db.execute(
        "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?)",
        ("old", "bob", 1.0, json.dumps(spec), json.dumps(status), 2.0),
    )
    db.commit()
    db.close()
    (rec,) = Store(tmp_path / "jobs.db").records()
    assert rec.facts.limits == ResolvedLimits(memory_mb=20)
    assert rec.status is not None and rec.status.state is JobState.LOST
    assert rec.status.limits == ResolvedLimits(memory_mb=20)


def test_only_what_is_acknowledged_waits_for_the_disk(tmp_path: Path) -> None:
    """A record, a queued job and a client's uid are committed with synchronous=FULL; ends,
    events and removals with NORMAL (the directories say them again), so they never wait on
    an fsync; a store made with durable=False never asks for FULL."""
    for durable in (True, False):
        store = Store(tmp_path / f"{durable}.db", durable)
        said: list[str] = []
        store._db.set_trace_callback(said.append)
        store.add(facts("a", 1.0), "/", None)
        store.enqueue("q", "alice", 1.0, {"argv": ["true"]})
        store.client_uid("alice", 5000, 5010)
        full = [s.split()[0] for s in said if s.startswith(("INSERT", "PRAGMA"))]
        expect = ["PRAGMA", "INSERT", "PRAGMA"] if durable else ["INSERT"]
        assert full == expect * 3
        assert said.count("PRAGMA synchronous=FULL") == (3 if durable else 0)
        said.clear()
        store.finish("a", JobStatus.of(facts("a", 1.0), JobState.EXITED, exit_code=0, ended_at=2.0))
        store.add_events([(1, {"kind": "started"})], 10)
        store.dequeue("q")
        store.remove("a")
        assert said and not [s for s in said if s.startswith("PRAGMA")]
        (synchronous,) = store._db.execute("PRAGMA synchronous").fetchone()
        assert synchronous == 1  # NORMAL between durable commits
        store.close()


def test_a_record_added_unsynced_is_put_on_the_disk_by_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start's record is committed with NORMAL and made durable by sync() while the job
    starts: an fsync of the WAL, where the commit is; a store made with durable=False syncs
    nothing."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    for durable in (True, False):
        store = Store(tmp_path / f"{durable}.db", durable)
        said: list[str] = []
        store._db.set_trace_callback(said.append)
        synced.clear()
        monkeypatch.setattr(os, "fsync", fsync)
        store.add(facts("a", 1.0), "/", None, synced=False)
        assert not [s for s in said if s.startswith("PRAGMA")]
        store.sync()
        monkeypatch.undo()
        assert synced == ([str(tmp_path / f"{durable}.db-wal")] if durable else [])
        assert [r.facts.id for r in store.records()] == ["a"]
        store.close()


def test_events_are_written_in_batches_and_the_oldest_pruned(tmp_path: Path) -> None:
    store = Store(tmp_path / "jobs.db")
    store.add_events([(s, {"seq": s}) for s in range(1, 50)], 50)
    assert [e["seq"] for e in store.events(1000)] == list(range(1, 50))
    store.add_events([(s, {"seq": s}) for s in range(50, 121)], 50)  # crosses 100: pruned
    assert [e["seq"] for e in store.events(1000)] == list(range(71, 121))
    assert [e["seq"] for e in store.events(3)] == [118, 119, 120]
    store.close()
