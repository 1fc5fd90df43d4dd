"""A job's directory: the files in it and how they are written.

spec.json       what the job's final status repeats of its request (id, argv, owner, ...)
exec.bin        what the job's init needs to start the command (protocol.ExecJob)
output.log      the framed output (logstore.py), made by the supervisor
reserve         16 KiB the supervisor keeps for the final status, should the disk fill up
run.json        written by the supervisor once the command runs (protocol.RunInfo)
status.json     the final status; its presence means the job is over
stop-requested  present if the job was stopped on request
timed-out       present if that stop was its timeout's (written before stop-requested)

The names are protocol.py's: the shim uses them too.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .protocol import (
    EXEC_FILE,
    LOG_FILE,
    RESERVE_FILE,
    RUN_FILE,
    SPEC_FILE,
    STATUS_FILE,
    STOP_FILE,
    ExecJob,
    encode_exec,
)

# The engine's alone (the shim never reads it), so not in protocol.py.
TIMEOUT_FILE = "timed-out"

__all__ = [
    "EXEC_FILE",
    "LOG_FILE",
    "RESERVE_FILE",
    "RUN_FILE",
    "SPEC_FILE",
    "STATUS_FILE",
    "STOP_FILE",
    "TIMEOUT_FILE",
    "create_file",
    "exec_blob",
    "write_json",
]


def create_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if os.write(fd, data) != len(data):  # a regular file: short only when the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    finally:
        os.close(fd)


def exec_blob(
    hostname: str,
    cwd: str,
    ids: tuple[int, int] | None,
    procs: Sequence[str],
    argv: Sequence[str],
    env: Mapping[str, str],
) -> bytes:
    """exec.bin for the job's init (protocol.ExecJob).

    ``ids``: (uid, gid) to switch to, or None to keep root. ``procs``: cgroup files to join,
    relative to the cgroup root."""
    job = ExecJob(
        hostname=os.fsencode(hostname),
        cwd=os.fsencode(cwd),
        ids=ids,
        procs=tuple(os.fsencode(p) for p in procs),
        argv=tuple(os.fsencode(a) for a in argv),
        env=tuple(os.fsencode(f"{k}={v}") for k, v in env.items()),
    )
    return encode_exec(job)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically; on a full disk, spend the job's reserve and try once more."""
    try:
        _write_json(path, data)
    except OSError:
        (path.parent / RESERVE_FILE).unlink(missing_ok=True)
        _write_json(path, data)
    (path.parent / RESERVE_FILE).unlink(missing_ok=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(data).encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)  # atomic: readers see the whole file or none
