"""tjob: run Linux commands as isolated, resource-limited jobs.

The library surface, re-exported; see README.md for an example.
"""

from .engine import Chunk, Engine, Job
from .errors import (
    AmbiguousJobId,
    CgroupError,
    EngineClosed,
    InvalidSpec,
    JobNotFound,
    SpawnError,
    TjobError,
)
from .spec import DEFAULT_LIMITS, JobSpec, Limits
from .status import JobState, JobStatus, Stream, Usage

__all__ = [
    "DEFAULT_LIMITS",
    "AmbiguousJobId",
    "CgroupError",
    "Chunk",
    "Engine",
    "EngineClosed",
    "InvalidSpec",
    "Job",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "JobStatus",
    "Limits",
    "SpawnError",
    "Stream",
    "TjobError",
    "Usage",
]
