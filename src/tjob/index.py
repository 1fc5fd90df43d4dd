"""The engine's jobs by id: exact lookups in a dict, prefixes by bisection of the sorted ids.

A lookup is O(log n) whatever a client sends (a request may repeat a prefix many times).
"""

from __future__ import annotations

import bisect
import threading
from typing import Generic, Protocol, TypeVar

from .errors import AmbiguousJobId, JobNotFound


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


J = TypeVar("J", bound=_HasId)


class JobIndex(Generic[J]):
    """Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, J] = {}
        self._ids: list[str] = []  # sorted

    def add(self, job: J) -> None:
        with self._lock:
            if job.id not in self._by_id:
                bisect.insort(self._ids, job.id)
            self._by_id[job.id] = job

    def discard(self, job_id: str) -> None:
        with self._lock:
            if self._by_id.pop(job_id, None) is not None:
                del self._ids[bisect.bisect_left(self._ids, job_id)]

    def get(self, id_or_prefix: str) -> J:
        """The job with this id, or the only one whose id starts with it."""
        with self._lock:
            job = self._by_id.get(id_or_prefix)
            if job is not None:
                return job
            if id_or_prefix:
                ids = self._ids
                i = bisect.bisect_left(ids, id_or_prefix)
                if i < len(ids) and ids[i].startswith(id_or_prefix):
                    if i + 1 < len(ids) and ids[i + 1].startswith(id_or_prefix):
                        end = bisect.bisect_left(ids, id_or_prefix + "\U0010ffff", i)
                        raise AmbiguousJobId(
                            f"job id prefix {id_or_prefix!r} matches {end - i} jobs"
                        )
                    return self._by_id[ids[i]]
        raise JobNotFound(f"no job {id_or_prefix!r}")

    def all(self) -> list[J]:
        with self._lock:
            return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)
