"""One exception hierarchy for the whole package.

Every expected failure raises a subclass of :class:`TjobError` with a message a user can act on;
the CLIs print that message and exit non-zero.
"""

from __future__ import annotations


class TjobError(Exception):
    """Base class of every error tjob raises on purpose."""


class InvalidSpec(TjobError, ValueError):
    """A job spec or a limit was refused before anything was created."""


class JobNotFound(TjobError, LookupError):
    """No job has this id (or this prefix)."""


class AmbiguousJobId(JobNotFound):
    """A prefix matches more than one job."""


class JobRunning(TjobError):
    """The job is still running, and the operation needs it finished."""


class CgroupError(TjobError):
    """The cgroup filesystem is missing, lacks a controller, or refused a write."""


class SpawnError(TjobError):
    """The launcher or a job's supervisor failed (not the command itself)."""


class StateDirInUse(TjobError):
    """Another engine holds the state directory (one engine per state directory at a time)."""


class EngineClosed(TjobError):
    """The engine was closed; it starts no more jobs."""


class NoSpace(TjobError):
    """The state directory's disk has no room (blocks or inodes) for a new job's files."""


class JobFinished(TjobError):
    """The job has ended, and the operation needs it running (a signal)."""


class ExecLimit(TjobError):
    """As many execs run in the job as the engine allows at once (issue 16)."""


class NameInUse(TjobError):
    """Another of the owner's jobs (not removed) has this name."""


class StdinUnavailable(TjobError):
    """A job's stdin cannot be taken: the job has no open stdin (run without ``stdin``/``tty``,
    or closed), it has ended, or another writer holds it."""
