"""Job records in SQLite (one database per state directory, WAL mode).

The record is the index the engine lists and looks up from; each job's directory beside it
holds what its supervisor writes (spec, run info, output log, final status). A record is
inserted and committed before the job's directory exists, so a crash at any point leaves
either nothing or a record the next engine can account for.

The directories are the truth and the database an index: one that fails SQLite's own check at
open is moved aside (``jobs.db.damaged-<time>``) and the engine rebuilds it from them.
Retention is measured on ``CLOCK_BOOTTIME`` for ends seen during this boot (table
``end_clock``): a step of the wall clock never makes a recent end look old.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NoSpace, TjobError
from .jobdir import sync_file
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
CREATE TABLE IF NOT EXISTS tenants (
    owner TEXT PRIMARY KEY,
    uid INTEGER NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS requests (
    owner TEXT NOT NULL,
    request_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (owner, request_id)
);
CREATE TABLE IF NOT EXISTS end_clock (
    id TEXT PRIMARY KEY,
    boot TEXT NOT NULL,
    at REAL NOT NULL
);
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
_SQLITE_FULL = 13
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
_DAMAGE_CODES = (_SQLITE_CORRUPT, _SQLITE_NOTADB)
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class Record:
    """A job as the store knows it: its facts, what else it was asked, and its end if over."""

    facts: JobFacts
    cwd: str
    user: str | int | None
    status: JobStatus | None
    damage: str | None = None  # why the row could not be read (its facts are then the id only)


class Store:
    """Thread-safe: one connection, one lock (writes are a few per job).

    Only what an acknowledgement promises is committed with ``synchronous=FULL`` (on the disk
    before the commit returns): a queued job, a client's uid; a job's record is too, or is
    committed with ``NORMAL`` and put on the disk by :meth:`sync` while its start goes on
    (the engine acknowledges the start only after that). The rest (ends,
    events, removals, dequeues) is committed with ``NORMAL``: it survives a crash of the
    process and is on the disk with the next FULL commit or checkpoint; a power cut before
    that loses nothing the directories do not say (an end is in ``status.json``; a removed
    job's directory is gone; a dequeued job has its row). The connection's setting is
    switched around each durable commit, so the others never wait on an fsync."""

    def __init__(self, path: Path, durable: bool = True) -> None:
        """``durable``: a committed job survives a power cut (synchronous=FULL), not only a
        crash of the process. ``damaged`` is set (to the aside name and why) when the file at
        ``path`` failed its check and a new, empty database replaced it."""
        self._lock = threading.Lock()
        self.damaged: str | None = None
        self._durable = durable
        self._wal = path.with_name(path.name + "-wal")
        try:
            self._db = _open(path)
        except sqlite3.DatabaseError as e:
            if not _is_damage(e):  # locked by someone, no permission...: not ours to move
                raise TjobError(f"cannot open {path}: {e}") from None
            aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
            for suffix in ("", "-wal", "-shm"):
                src = path.with_name(path.name + suffix)
                if src.exists():
                    src.rename(aside.with_name(aside.name + suffix))
            self.damaged = f"{path} failed its check ({e}); moved aside to {aside.name}"
            self._db = _open(path)
        self._boot = _boot_id()

    def add(
        self,
        facts: JobFacts,
        cwd: str,
        user: str | int | None,
        request_id: str = "",
        *,
        synced: bool = True,
    ) -> None:
        """Record a job (and the request id it was started with, in the same commit); not
        ``synced``: on the disk only with the next :meth:`sync` (or FULL commit)."""
        limits = facts.limits.to_dict()
        spec: dict[str, Any] = {"argv": list(facts.argv), "cwd": cwd, "user": user}
        spec.update(
            limits=limits, name=facts.name, labels=dict(facts.labels), timeout=facts.timeout
        )
        with self._lock, self._synced() if synced else contextlib.nullcontext():
            try:
                self._db.execute("BEGIN")
                self._db.execute(
                    "INSERT INTO jobs (id, owner, created_at, spec) VALUES (?, ?, ?, ?)",
                    (facts.id, facts.owner, facts.created_at, json.dumps(spec)),
                )
                if request_id:
                    self._db.execute(
                        "INSERT INTO requests VALUES (?, ?, ?)", (facts.owner, request_id, facts.id)
                    )
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                if request_id and isinstance(e, sqlite3.IntegrityError) and "requests" in str(e):
                    raise TjobError("a start with this request id is under way; retry") from None
                if getattr(e, "sqlite_errorcode", None) == _SQLITE_FULL:
                    raise NoSpace(f"no room to record the job: {e}") from None
                raise TjobError(f"cannot record the job: {e}") from None

    def finish(self, job_id: str, status: JobStatus) -> None:
        """Record the end. Best effort: the job directory's status file is the truth, and a
        record left unfinished (disk full) is completed from it by the next engine."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.execute(
                    "UPDATE jobs SET status = ?, ended_at = ? WHERE id = ?",
                    (json.dumps(status.to_dict()), status.ended_at or 0.0, job_id),
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO end_clock VALUES (?, ?, ?)",
                    (job_id, self._boot, time.clock_gettime(time.CLOCK_BOOTTIME)),
                )
                self._db.execute("COMMIT")
            except sqlite3.Error:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")

    def remove(self, job_id: str) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
                self._db.execute("DELETE FROM end_clock WHERE id = ?", (job_id,))
                self._db.execute("DELETE FROM requests WHERE job_id = ?", (job_id,))
            except sqlite3.Error as e:
                raise TjobError(f"cannot remove the job's record: {e}") from None

    def records(self) -> Iterator[Record]:
        """Every record, oldest first; a row that cannot be read comes with ``damage`` set."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, owner, created_at, spec, status FROM jobs ORDER BY created_at"
            ).fetchall()
        for job_id, owner, created_at, spec_json, status in rows:
            try:
                yield _record(job_id, owner, created_at, spec_json, status)
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                facts = JobFacts(str(job_id), (), str(owner or ""), 0.0, ResolvedLimits())
                yield Record(facts, "/", None, None, damage=f"its record in jobs.db: {e!r}")

    def by_request(self, owner: str, request_id: str) -> str | None:
        """The job ``owner`` started with ``request_id``, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT job_id FROM requests WHERE owner = ? AND request_id = ?",
                (owner, request_id),
            ).fetchone()
        return row[0] if row else None

    def ended_before(self, when: float) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE ended_at IS NOT NULL AND ended_at < ?", (when,)
            ).fetchall()
        return [r[0] for r in rows]

    def client_uid(self, owner: str, first: int, last: int) -> int | None:
        """The uid ``owner`` was given, else the lowest free one of ``first..last`` (recorded
        before it is returned: stable across restarts); None when the range is used up."""
        with self._lock:
            row = self._db.execute("SELECT uid FROM tenants WHERE owner = ?", (owner,)).fetchone()
            if row is not None:
                return int(row[0])
            # The first gap at or above `first` (uids are handed out in order, so usually the end).
            row = self._db.execute(
                "SELECT MIN(t.uid + 1) FROM tenants t WHERE t.uid + 1 >= ? AND NOT EXISTS "
                "(SELECT 1 FROM tenants u WHERE u.uid = t.uid + 1)",
                (first,),
            ).fetchone()
            taken = self._db.execute("SELECT 1 FROM tenants WHERE uid = ?", (first,)).fetchone()
            uid = first if taken is None else row[0]
            if uid is None or uid > last:
                return None
            try:
                with self._synced():
                    self._db.execute("INSERT INTO tenants (owner, uid) VALUES (?, ?)", (owner, uid))
            except sqlite3.Error as e:
                raise TjobError(f"cannot record the client's uid: {e}") from None
            return int(uid)

    def client_uid_span(self) -> tuple[int, int] | None:
        """The lowest and highest uid given to a client, or None if none was."""
        with self._lock:
            lo, hi = self._db.execute("SELECT MIN(uid), MAX(uid) FROM tenants").fetchone()
        return None if lo is None else (int(lo), int(hi))

    def expired(self, older_than: float) -> list[str]:
        """Jobs that ended more than ``older_than`` seconds ago: on CLOCK_BOOTTIME for ends
        seen in this boot, else on the wall clock; never one that ended "in the future"."""
        wall = time.time()
        boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        with self._lock:
            rows = self._db.execute(
                "SELECT jobs.id, jobs.ended_at, c.boot, c.at FROM jobs "
                "LEFT JOIN end_clock AS c ON c.id = jobs.id "
                "WHERE jobs.ended_at IS NOT NULL AND jobs.ended_at < ?",
                (wall - older_than,),
            ).fetchall()
        return [
            job_id
            for job_id, ended_at, end_boot, at in rows
            if ended_at <= wall and (end_boot != self._boot or boot - at > older_than)
        ]

    def enqueue(self, job_id: str, owner: str, created_at: float, spec: dict[str, Any]) -> None:
        """Record a queued job (and its request id, if any, in the same commit)."""
        request_id = spec.get("request_id")
        with self._lock, self._synced():
            try:
                self._db.execute("BEGIN")
                self._db.execute(
                    "INSERT INTO queue (id, owner, created_at, spec) VALUES (?, ?, ?, ?)",
                    (job_id, owner, created_at, json.dumps(spec)),
                )
                if request_id:
                    self._db.execute(
                        "INSERT INTO requests VALUES (?, ?, ?)", (owner, request_id, job_id)
                    )
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                if request_id and isinstance(e, sqlite3.IntegrityError) and "requests" in str(e):
                    raise TjobError("a start with this request id is under way; retry") from None
                raise TjobError(f"cannot record the queued job: {e}") from None

    def remember_request(self, owner: str, request_id: str, job_id: str) -> None:
        """Record ``owner``'s request id of ``job_id`` unless recorded (best effort)."""
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.execute(
                "INSERT OR IGNORE INTO requests VALUES (?, ?, ?)", (owner, request_id, job_id)
            )

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

    def add_events(self, events: list[tuple[int, dict[str, Any]]], keep: int) -> None:
        """``(seq, data)`` of events, in one commit. Best effort: an event not kept is no
        reason to fail what it reports."""
        rows = [(seq, json.dumps(data)) for seq, data in events]
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?)", rows)
                last = rows[-1][0]
                if last // 100 != (rows[0][0] - 1) // 100:  # every hundred events or so
                    self._db.execute("DELETE FROM events WHERE seq <= ?", (last - keep,))
                self._db.execute("COMMIT")
            except sqlite3.Error:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")

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

    def sync(self) -> None:
        """Put every commit made so far on the disk, those made with ``NORMAL`` too (OSError
        if that fails). SQLite appends each commit to the WAL, and syncs the database before
        a checkpoint lets it reuse the WAL: an fsync of the WAL is enough. Not under the lock:
        it waits on the disk, and other commits need not wait with it."""
        if self._durable:
            # No WAL while a connection is open: all of it is in the synced database.
            with contextlib.suppress(FileNotFoundError):
                sync_file(self._wal)

    @contextlib.contextmanager
    def _synced(self) -> Iterator[None]:
        """The commits inside are on the disk when they return (a durable store's only)."""
        if not self._durable:
            yield
            return
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            yield
        finally:
            self._db.execute("PRAGMA synchronous=NORMAL")


def _open(path: Path) -> sqlite3.Connection:
    """The database at ``path``, checked (sqlite3.DatabaseError if it is damaged)."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        # WAL: readers never block the writer. NORMAL: a commit survives a crash of the
        # process; Store._synced makes those that must survive a power cut FULL (on the disk
        # before the commit returns).
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        (check,) = db.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise _Damaged(f"quick_check: {check}")
        db.executescript(SCHEMA)
        path.chmod(0o600)
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


class _Damaged(sqlite3.DatabaseError):
    """The database opened but failed its check."""


def _is_damage(e: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is not a (sound) database: corrupt, not a database."""
    code = getattr(e, "sqlite_errorcode", None)
    return isinstance(e, _Damaged) or (code is not None and code & 0xFF in _DAMAGE_CODES)


def _record(
    job_id: str, owner: str, created_at: float, spec_json: str, status: str | None
) -> Record:
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
    return Record(facts, spec["cwd"], spec["user"], end)


def _boot_id() -> str:
    try:
        with open(_BOOT_ID) as f:
            return f.read().strip()
    except OSError:
        return f"unknown-{os.getpid()}"
