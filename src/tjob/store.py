"""Job records in SQLite (one database per state directory, WAL mode).

The record is the index the engine lists and looks up from; each job's directory beside it
holds what its supervisor writes (spec, run info, output log, final status). A record is
inserted and committed before the job's directory exists, so a crash at any point leaves
either nothing or a record the next engine can account for.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import TjobError
from .status import JobFacts, JobStatus, ResolvedLimits

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    spec TEXT NOT NULL,
    status TEXT,
    ended_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_end ON jobs(ended_at);
-- Queued jobs (issue 15), in submission order, until their start moves them to jobs.
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    spec TEXT NOT NULL
);
-- Recent lifecycle events (issue 15), the last KEEP of them (events.py).
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, data TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Record:
    """A job as the store knows it: its facts, what else it was asked, and its end if over."""

    facts: JobFacts
    cwd: str
    user: str | int | None
    status: JobStatus | None


class Store:
    """Thread-safe: one connection, one lock (writes are a few per job)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # WAL: readers never block the writer; NORMAL sync is durable against a crash of the
        # process (kill -9), which is what the server must survive.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        path.chmod(0o600)

    def add(self, facts: JobFacts, cwd: str, user: str | int | None) -> None:
        limits = facts.limits.to_dict()
        spec: dict[str, Any] = {"argv": list(facts.argv), "cwd": cwd, "user": user}
        spec.update(
            limits=limits, name=facts.name, labels=dict(facts.labels), timeout=facts.timeout
        )
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO jobs (id, owner, created_at, spec) VALUES (?, ?, ?, ?)",
                    (facts.id, facts.owner, facts.created_at, json.dumps(spec)),
                )
            except sqlite3.Error as e:
                raise TjobError(f"cannot record the job: {e}") from None

    def finish(self, job_id: str, status: JobStatus) -> None:
        """Record the end. Best effort: the job directory's status file is the truth, and a
        record left unfinished (disk full) is completed from it by the next engine."""
        with self._lock:
            try:
                self._db.execute(
                    "UPDATE jobs SET status = ?, ended_at = ? WHERE id = ?",
                    (json.dumps(status.to_dict()), status.ended_at or 0.0, job_id),
                )
            except sqlite3.OperationalError:
                pass

    def remove(self, job_id: str) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            except sqlite3.Error as e:
                raise TjobError(f"cannot remove the job's record: {e}") from None

    def records(self) -> Iterator[Record]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, owner, created_at, spec, status FROM jobs ORDER BY created_at"
            ).fetchall()
        for job_id, owner, created_at, spec_json, status in rows:
            spec = json.loads(spec_json)
            facts = JobFacts(
                job_id,
                tuple(spec["argv"]),
                owner,
                created_at,
                ResolvedLimits.from_dict(spec["limits"] or {}),
                name=spec.get("name") or "",
                labels=dict(spec.get("labels") or {}),
                timeout=spec.get("timeout"),
            )
            end = JobStatus.from_dict(json.loads(status)) if status else None
            yield Record(facts, spec["cwd"], spec["user"], end)

    def ended_before(self, when: float) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE ended_at IS NOT NULL AND ended_at < ?", (when,)
            ).fetchall()
        return [r[0] for r in rows]

    def enqueue(self, job_id: str, owner: str, created_at: float, spec: dict[str, Any]) -> None:
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO queue (id, owner, created_at, spec) VALUES (?, ?, ?, ?)",
                    (job_id, owner, created_at, json.dumps(spec)),
                )
            except sqlite3.Error as e:
                raise TjobError(f"cannot record the queued job: {e}") from None

    def dequeue(self, job_id: str) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM queue WHERE id = ?", (job_id,))
            except sqlite3.Error as e:
                raise TjobError(f"cannot record the job's start: {e}") from None

    def queued(self) -> list[tuple[str, float, dict[str, Any]]]:
        """(id, created_at, spec) of each queued job, in submission order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, created_at, spec FROM queue ORDER BY seq"
            ).fetchall()
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def add_event(self, seq: int, data: dict[str, Any], keep: int) -> None:
        """Best effort: an event not kept is no reason to fail what it reports."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO events (seq, data) VALUES (?, ?)",
                    (seq, json.dumps(data)),
                )
                if seq % 100 == 0:
                    self._db.execute("DELETE FROM events WHERE seq <= ?", (seq - keep,))
            except sqlite3.Error:
                pass

    def events(self, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` events, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM events ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
        return [json.loads(r[0]) for r in reversed(rows)]

    def close(self) -> None:
        with self._lock:
            self._db.close()
