"""tjob: run Linux commands as isolated, resource-limited jobs.

The library surface, re-exported lazily so that ``import tjob.cli.tjob`` (the CLI) and the
launcher do not pay for the engine's imports they never use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Chunk, Engine, Job
    from .errors import (
        AmbiguousJobId,
        CgroupError,
        EngineClosed,
        InvalidSpec,
        JobFinished,
        JobNotFound,
        JobRunning,
        SpawnError,
        StateDirInUse,
        TjobError,
    )
    from .execs import Exec, ExecResult
    from .spec import DEFAULT_LIMITS, JobSpec, Limits
    from .status import JobState, JobStatus, Stream, Usage
    from .volumes import Volume

_WHERE = {
    "Chunk": "engine",
    "Engine": "engine",
    "Job": "engine",
    "Exec": "execs",
    "ExecResult": "execs",
    "JobFinished": "errors",
    "AmbiguousJobId": "errors",
    "CgroupError": "errors",
    "EngineClosed": "errors",
    "InvalidSpec": "errors",
    "JobNotFound": "errors",
    "JobRunning": "errors",
    "SpawnError": "errors",
    "StateDirInUse": "errors",
    "TjobError": "errors",
    "DEFAULT_LIMITS": "spec",
    "JobSpec": "spec",
    "Limits": "spec",
    "JobState": "status",
    "JobStatus": "status",
    "Stream": "status",
    "Usage": "status",
    "Volume": "volumes",
}

__all__ = [
    "DEFAULT_LIMITS",
    "AmbiguousJobId",
    "CgroupError",
    "Chunk",
    "Engine",
    "EngineClosed",
    "Exec",
    "ExecResult",
    "InvalidSpec",
    "Job",
    "JobFinished",
    "JobNotFound",
    "JobRunning",
    "JobSpec",
    "JobState",
    "JobStatus",
    "Limits",
    "SpawnError",
    "StateDirInUse",
    "Stream",
    "TjobError",
    "Usage",
    "Volume",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tjob' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
