"""The gateway's own state (SQLite): each job's node, its placement group and its last known
status. It is what survives a gateway restart: the jobs themselves live on their nodes."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from ..status import JobStatus

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    placement TEXT NOT NULL,   -- the placement group's name; '' once released
    status TEXT NOT NULL       -- JobStatus.to_dict() as JSON: the last one the node gave
);
"""


@dataclass(frozen=True)
class Record:
    status: JobStatus
    node: str
    placement: str


class Records:
    """Thread-safe; every write is committed before it returns (a gateway killed after a Run
    answered still knows where the job is)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(state_dir / "gateway.db", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def all(self) -> list[Record]:
        with self._lock:
            rows = self._db.execute("SELECT status, node, placement FROM jobs").fetchall()
        return [Record(JobStatus.from_dict(json.loads(s)), n, p) for s, n, p in rows]

    def add(self, status: JobStatus, node: str, placement: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?)",
                (status.id, node, placement, json.dumps(status.to_dict())),
            )

    def update(self, status: JobStatus) -> None:
        with self._lock, self._db:
            self._db.execute(
                "UPDATE jobs SET status = ? WHERE id = ?",
                (json.dumps(status.to_dict()), status.id),
            )

    def held(self, job_id: str, placement: str) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE jobs SET placement = ? WHERE id = ?", (placement, job_id))

    def released(self, job_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE jobs SET placement = '' WHERE id = ?", (job_id,))

    def remove(self, job_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
