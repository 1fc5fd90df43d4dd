"""A parent cgroup per client: jobs live in ``<parent>/<client>/<job>``.

Each client's cgroup carries the client's ceilings (pids, memory, an optional CPU quota) and
the same CPU weight as every other client's, so the kernel shares the CPU between clients
first and between one client's jobs second: twenty busy jobs of one client leave another its
half. Client cgroups are kept when empty (one directory per client and hierarchy): removing
them would race with the launcher starting that client's next job.

Jobs made before this layout live in ``<parent>/<job>``; :meth:`CgroupBackend.name_of` finds
them there, so they are still followed, stopped and recorded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any

# Client cgroups start with this; job cgroups are 32 hex digits, so the two never collide,
# and no cgroup interface file starts with it.
CLIENT_PREFIX = "c-"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]+")
NAME_MAX = 32  # characters of the client's name kept, for reading; the hash makes it unique


@dataclass(frozen=True)
class ClientLimits:
    """Ceilings of each client's cgroup, all its jobs together; None is no ceiling.

    pids: processes and threads (``--client-pids``); memory_mb: memory in MiB, swap included
    (``--client-mem``); cpu_percent: CPU time in percent of one CPU (``--client-cpu``).
    """

    pids: int | None = None
    memory_mb: int | None = None
    cpu_percent: int | None = None

    def to_dict(self) -> dict[str, int | None]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClientLimits:
        return cls(d.get("pids"), d.get("memory_mb"), d.get("cpu_percent"))


def client_dir(owner: str) -> str:
    """A safe cgroup directory name for ``owner`` (a CN may hold anything, ``/`` and ``..``
    included): its safe characters, then a hash of the whole name."""
    digest = hashlib.sha256(owner.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    readable = _UNSAFE.sub("_", owner)[:NAME_MAX]
    return f"{CLIENT_PREFIX}{readable}-{digest}" if readable else f"{CLIENT_PREFIX}{digest}"


def job_cgroup(owner: str, job_id: str) -> str:
    """A new job's cgroup, relative to the engine's parent cgroup."""
    return f"{client_dir(owner)}/{job_id}"


def is_client_dir(name: str) -> bool:
    return name.startswith(CLIENT_PREFIX)
