"""What a job is doing or did: pure data (no I/O)."""

from __future__ import annotations

import enum
import signal
from dataclasses import asdict, dataclass, field
from typing import Any


class JobState(enum.StrEnum):
    RUNNING = "running"
    EXITED = "exited"  # the command ended on its own (exit code, or a signal nobody asked for)
    STOPPED = "stopped"  # ended after a stop request
    FAILED = "failed"  # never started: see JobStatus.error
    LOST = "lost"  # its supervisor vanished before recording the end

    @property
    def finished(self) -> bool:
        return self is not JobState.RUNNING


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
    limits: dict[str, Any] = field(default_factory=dict)

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
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobStatus:
        d = dict(d)
        d["state"] = JobState(d["state"])
        d["argv"] = tuple(d["argv"])
        d["usage"] = Usage(**d.get("usage") or {})
        return cls(**d)
