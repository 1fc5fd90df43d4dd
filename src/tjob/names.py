"""Job names: unique per owner among jobs not removed (a name is freed by ``remove``).

Held in memory, rebuilt from the job records at start-up; a name is taken before the job's
record is written, so two concurrent starts with one name cannot both succeed.
"""

from __future__ import annotations

import threading

from .errors import NameInUse


class Names:
    """Thread-safe: (owner, name) -> job id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, str], str] = {}

    def take(self, owner: str, name: str, job_id: str) -> None:
        """Give ``name`` to ``job_id``; NameInUse naming the job that has it."""
        if not name:
            return
        with self._lock:
            holder = self._ids.get((owner, name))
            if holder is not None and holder != job_id:
                raise NameInUse(f"the name {name!r} is in use by job {holder[:8]}")
            self._ids[(owner, name)] = job_id

    def release(self, owner: str, name: str, job_id: str) -> None:
        if not name:
            return
        with self._lock:
            if self._ids.get((owner, name)) == job_id:
                del self._ids[(owner, name)]

    def get(self, owner: str, name: str) -> str | None:
        with self._lock:
            return self._ids.get((owner, name))
