"""What a job is doing or did: pure data (no I/O)."""

from __future__ import annotations

import enum
import signal
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


class JobState(enum.StrEnum):
    RUNNING = "running"
    EXITED = "exited"  # the command ended on its own (exit code, or a signal nobody asked for)
    STOPPED = "stopped"  # ended after a stop request
    FAILED = "failed"  # never started: see JobStatus.error
    LOST = "lost"  # its supervisor vanished before recording the end
    DAMAGED = "damaged"  # a file of its record is unreadable: quarantined, see JobStatus.error
    QUEUED = "queued"  # waiting for room to start (issue 15)
    CANCELLED = "cancelled"  # stopped while queued: it never ran
    # Its start was sent and is not confirmed yet (unanswered past the start timeout): it may
    # still start; it becomes running, or failed/lost, when the truth arrives (issue 19).
    STARTING = "starting"

    @property
    def finished(self) -> bool:
        return self not in _ALIVE


_ALIVE = frozenset({JobState.RUNNING, JobState.QUEUED, JobState.STARTING})


class Stream(enum.IntFlag):
    """Which output stream(s): a chunk has exactly one; a reader may ask for both."""

    STDOUT = 1
    STDERR = 2
    BOTH = 3


@dataclass(frozen=True)
class Usage:
    """Resource use as the job's cgroup accounted it (``None``: not reported by this kernel)."""

    cpu_seconds: float | None = None
    memory_peak_bytes: int | None = None
    memory_current_bytes: int | None = None
    pids_current: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None


@dataclass(frozen=True)
class ResolvedLimits:
    """The limits a job runs under, every field decided: what the cgroup backends write, the
    store keeps, a status reports and the wire carries (0 / None: not known, as from a status
    decoded from a peer that left a field out).

    ``device`` is the ``"MAJ:MIN"`` of the throttled block device, None when none is.
    """

    cpu_percent: int = 0
    memory_mb: int = 0
    pids: int = 0
    rbps: int = 0
    wbps: int = 0
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ResolvedLimits:
        """From a record written by any version (a field left out or None is 0)."""
        ints = {f: d.get(f) or 0 for f in ("cpu_percent", "memory_mb", "pids", "rbps", "wbps")}
        return cls(**ints, device=d.get("device") or None)


@dataclass(frozen=True)
class JobFacts:
    """What a job's status repeats of its request, fixed before it starts (``spec.json``)."""

    id: str
    argv: tuple[str, ...]
    owner: str
    created_at: float
    limits: ResolvedLimits
    # Added for the job lifecycle (issue 15); records of earlier versions have none of them.
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds of wall-clock time from the start
    # The idempotency key of the Run that made it (issue 19): kept here too, so that an index
    # rebuilt from the job directories still answers a retried Run with this job.
    request_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {
            "id": self.id,
            "argv": list(self.argv),
            "owner": self.owner,
            "created_at": self.created_at,
            "limits_public": self.limits.to_dict(),
            "name": self.name,
            "labels": dict(self.labels),
            "timeout": self.timeout,
        }
        if self.request_id:
            d["request_id"] = self.request_id
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobFacts:
        return cls(
            id=d["id"],
            argv=tuple(d["argv"]),
            owner=d.get("owner", ""),
            created_at=d["created_at"],
            limits=ResolvedLimits.from_dict(d["limits_public"]),
            name=d.get("name") or "",
            labels=dict(d.get("labels") or {}),
            timeout=d.get("timeout"),
            request_id=str(d.get("request_id") or ""),
        )


@dataclass(frozen=True)
class JobStatus:
    """A truthful account of one job.

    Exactly one of ``exit_code`` and ``signal`` is set once the command has ended: a command
    that exits 3 reports 3, one killed by SIGKILL reports signal 9.
    """

    id: str
    state: JobState
    argv: tuple[str, ...]
    owner: str = ""
    pid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    oom_killed: bool = False
    stopped: bool = False
    error: str | None = None
    output_truncated: bool = False
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    usage: Usage = field(default_factory=Usage)
    limits: ResolvedLimits = field(default_factory=ResolvedLimits)
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    timed_out: bool = False  # stopped because its timeout passed (``stopped`` is set too)
    node: str = ""  # the cluster node it runs on, through a gateway (issue 18); "" on one host

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def signal_name(self) -> str | None:
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"SIG{self.signal}"

    @property
    def shell_exit_code(self) -> int | None:
        """The code a shell would show: the exit code, or 128 + signal."""
        if self.exit_code is not None:
            return self.exit_code
        if self.signal is not None:
            return 128 + self.signal
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        d["argv"] = list(self.argv)
        d["labels"] = dict(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobStatus:
        d = dict(d)
        d["state"] = JobState(d["state"])
        d["argv"] = tuple(d["argv"])
        d["usage"] = Usage(**d.get("usage") or {})
        d["limits"] = ResolvedLimits.from_dict(d.get("limits") or {})
        return cls(**d)

    @classmethod
    def of(cls, facts: JobFacts, state: JobState, **end: Any) -> JobStatus:
        """A status of the job ``facts`` describe: the one way every status is built."""
        return cls(
            id=facts.id,
            state=state,
            argv=facts.argv,
            owner=facts.owner,
            created_at=facts.created_at,
            limits=facts.limits,
            name=facts.name,
            labels=facts.labels,
            timeout=facts.timeout,
            **end,
        )
