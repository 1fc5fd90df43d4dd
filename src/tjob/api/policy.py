"""What the server allows (its caps, defaults, admins, quotas, timeouts and queue), as one
value the API server is given."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..spec import Limits
from . import quotas
from .limits import ServerLimits


@dataclass(frozen=True)
class Policy:
    """What the server allows: its caps, the defaults of jobs that ask for none (None: the
    caps), admins, job account (None: each client's own uid, see the engine's ``uid_range``),
    job cap, stored-job quotas, timeouts (a server with ``max_timeout`` gives it to jobs that
    ask for no timeout when it has no ``default_timeout``), the queue."""

    caps: Limits
    admins: frozenset[str] = frozenset()
    job_user: str | int | None = "nobody"
    max_jobs: int = 64
    limits: ServerLimits = field(default_factory=ServerLimits)
    store: quotas.StoreQuota = field(default_factory=quotas.StoreQuota)
    defaults: Limits | None = None
    max_timeout: float | None = None
    default_timeout: float | None = None
    queue: bool = False  # Run queues by default when over a running-job limit
    max_running: int | None = None  # jobs running on the server, all clients
    max_queued: int = 1000  # queued jobs per client


# The tjobs flag that sets each cap, for refusals that say how to get more.
CAP_FLAGS = {
    "cpu_percent": "tjobs --max-cpu",
    "memory_mb": "tjobs --max-mem",
    "pids": "tjobs --max-pids",
    "rbps": "tjobs --max-rbps",
    "wbps": "tjobs --max-wbps",
}
