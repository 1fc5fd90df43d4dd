"""A job's directory: the files in it and how they are written.

spec.json       what the job's final status repeats of its request (id, argv, owner, ...)
exec.bin        what the job's init needs to start the command (read by shim.c)
output.log      the framed output (logstore.py), made by the supervisor
reserve         16 KiB the supervisor keeps for the final status, should the disk fill up
run.json        written by the supervisor once the command runs (pids, start time)
status.json     the final status; its presence means the job is over
stop-requested  present if the job was stopped on request
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .logstore import LogWriter
from .status import JobStatus

SPEC_FILE = "spec.json"
EXEC_FILE = "exec.bin"
RUN_FILE = "run.json"
STATUS_FILE = "status.json"
LOG_FILE = "output.log"
STOP_FILE = "stop-requested"
RESERVE_FILE = "reserve"


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
    scratch: int = 0,
    rlimits: Sequence[str] = (),
) -> bytes:
    """exec.bin for the job's init (shim.c): NUL-terminated fields, lists led by their length.

    ``ids``: (uid, gid) to switch to, or None to keep root. ``procs``: cgroup files to join,
    relative to the cgroup root. ``scratch``: the size of the job's tmpfs (0: the default);
    ``rlimits``: ``NAME=SOFT:HARD`` (jail.py)."""
    uid, gid = (str(ids[0]), str(ids[1])) if ids else ("-", "-")
    fields = [hostname, cwd, uid, gid, str(len(procs)), *procs, str(len(argv)), *argv]
    fields += [str(len(env)), *(f"{k}={v}" for k, v in env.items())]
    fields += [str(scratch), str(len(rlimits)), *rlimits]  # jail (issue 13): appended
    return b"".join(os.fsencode(f) + b"\0" for f in fields)


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


def record_end(jdir: Path, status: JobStatus) -> None:
    """End the log with the final status (followers stop there), then write status.json."""
    data = status.to_dict()
    try:
        log = LogWriter(str(jdir / LOG_FILE))
        try:
            log.end(json.dumps(data).encode())
        finally:
            log.close()
    except OSError:
        pass  # disk full: followers end on the status file instead
    write_json(jdir / STATUS_FILE, data)
