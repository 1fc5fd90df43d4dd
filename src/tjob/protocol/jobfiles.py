"""The contract's files in a job's directory (messages 3 and 5 of :mod:`tjob.protocol`):
``exec.bin``, what init needs to start the command, and ``run.json``, the supervisor's record
of the running command (read on re-adoption)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .base import ProtocolError, json_object
from .constants import EXEC_MAGIC, KEEP_ID, RUN_FILE, VERSION

__all__ = ["ExecJob", "RunInfo", "decode_exec", "decode_run", "encode_exec", "encode_run"]


# ------------------------------------------------------------------ 3. exec.bin


@dataclass(frozen=True)
class ExecJob:
    """What init needs to start the command. Encoded as NUL-terminated fields in this order
    (a list is its length, then its items); new fields go at the end, here and in
    ``shim/jobfile.c``:

    EXEC_MAGIC, hostname, cwd, uid, gid (``KEEP_ID``: stay root), procs (cgroup files to join,
    relative to the cgroup root), argv, env (``NAME=value``), scratch (the size in bytes of
    each of the job's scratch tmpfs; 0: as mounted), rlimits (``NAME=SOFT:HARD``, jail.py),
    volumes (``MODE NAME SUBDIR TARGET``, volumes.py)."""

    hostname: bytes
    cwd: bytes
    ids: tuple[int, int] | None
    procs: tuple[bytes, ...]
    argv: tuple[bytes, ...]
    env: tuple[bytes, ...] = field(default=())
    scratch: int = 0
    rlimits: tuple[bytes, ...] = field(default=())
    volumes: tuple[bytes, ...] = field(default=())


def encode_exec(job: ExecJob) -> bytes:
    uid, gid = (str(job.ids[0]), str(job.ids[1])) if job.ids else (KEEP_ID, KEEP_ID)
    fields: list[bytes] = [EXEC_MAGIC.encode(), job.hostname, job.cwd, uid.encode(), gid.encode()]
    for items in (job.procs, job.argv, job.env):
        fields += [str(len(items)).encode(), *items]
    fields += [str(job.scratch).encode(), str(len(job.rlimits)).encode(), *job.rlimits]
    fields += [str(len(job.volumes)).encode(), *job.volumes]
    if any(b"\0" in f for f in fields):
        raise ProtocolError("exec.bin fields cannot hold NUL")
    return b"".join(f + b"\0" for f in fields)


def decode_exec(blob: bytes) -> ExecJob:
    if not blob.endswith(b"\0"):
        raise ProtocolError("exec.bin does not end with NUL")
    fields = blob[:-1].split(b"\0")
    if len(fields) < 10 or fields[0] != EXEC_MAGIC.encode():
        raise ProtocolError("not an exec.bin of this version")
    uid, gid = fields[3].decode(), fields[4].decode()
    ids = None if gid == KEEP_ID else (int(uid), int(gid))
    rest, lists = fields[5:], []
    for _ in range(3):
        items, rest = _exec_list(rest)
        lists.append(items)
    if not rest or not rest[0].isdigit():
        raise ProtocolError("malformed exec.bin scratch size")
    scratch = int(rest[0])
    rlimits, rest = _exec_list(rest[1:])
    volumes, rest = _exec_list(rest)
    if rest:
        raise ProtocolError("trailing fields in exec.bin")
    return ExecJob(
        fields[1], fields[2], ids, lists[0], lists[1], lists[2], scratch, rlimits, volumes
    )


def _exec_list(fields: list[bytes]) -> tuple[tuple[bytes, ...], list[bytes]]:
    """A list (its length, then its items) at the head of ``fields``, and what follows."""
    if not fields or not fields[0].isdigit():
        raise ProtocolError("malformed exec.bin list")
    n = int(fields[0])
    items = tuple(fields[1 : 1 + n])
    if len(items) != n:
        raise ProtocolError("exec.bin list cut short")
    return items, fields[1 + n :]


# ------------------------------------------------------------------ 5. run.json


@dataclass(frozen=True)
class RunInfo:
    supervisor_pid: int
    init_pid: int
    pid: int | None
    started_at: float


def encode_run(r: RunInfo) -> bytes:
    return json.dumps(
        {
            "v": VERSION,
            "supervisor_pid": r.supervisor_pid,
            "init_pid": r.init_pid,
            "pid": r.pid,
            "started_at": r.started_at,
        }
    ).encode()


def decode_run(data: bytes) -> RunInfo:
    d = json_object(data)
    try:
        pid = d["pid"]
        return RunInfo(
            int(d["supervisor_pid"]),
            int(d["init_pid"]),
            None if pid is None else int(pid),
            float(d["started_at"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolError(f"malformed {RUN_FILE}: {e!r}") from None
