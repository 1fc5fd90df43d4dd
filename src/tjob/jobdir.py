"""A job's directory: the files in it and how they are written.

spec.json       what the job's final status repeats of its request (id, argv, owner, ...),
                and the Run's request id (so that a rebuilt index still knows it)
exec.bin        what the job's init needs to start the command (protocol.ExecJob)
output.log      the framed output (logstore.py), made by the supervisor
reserve         room kept for the final status should the disk fill up (blocks and an inode):
                made by the engine before the job starts, sized for the biggest status (the
                end frame and status.json each repeat spec.json); the end's writer writes
                status.json into it and renames it
run.json        written by the supervisor once the command runs (protocol.RunInfo), through
                run.json.tmp (a blank's: blanks.py; left empty if the command never ran)
status.json     the final status; its presence means the job is over
stop-requested  present if the job was stopped on request
end-report      the supervisor's end report, left when no launcher recorded it (the engine was
                down): the next engine records it and removes the file
timed-out       present if that stop was its timeout's (written before stop-requested)
execs/N/        one directory per exec into the job (issue 16, execs.py): exec.bin, output.log,
                reserve and end-report, as above, written by its exec supervisor

The names are :mod:`tjob.protocol`'s: the shim uses them too.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .protocol import (
    END_FILE,
    EXEC_FILE,
    LOG_FILE,
    RESERVE_FILE,
    RESERVE_SIZE,
    RUN_FILE,
    SPEC_FILE,
    STATUS_FILE,
    STOP_FILE,
    SYNC_ENV,
    TMP_SUFFIX,
    ExecJob,
    encode_exec,
)

# The engine's alone (the shim never reads it), so not in the protocol.
TIMEOUT_FILE = "timed-out"

__all__ = [
    "END_FILE",
    "EXEC_FILE",
    "LOG_FILE",
    "RESERVE_FILE",
    "RUN_FILE",
    "SPEC_FILE",
    "STATUS_FILE",
    "STOP_FILE",
    "TIMEOUT_FILE",
    "TMP_SUFFIX",
    "create_file",
    "exec_blob",
    "read_final",
    "reserve",
    "reserve_size",
    "sync_dir",
    "sync_file",
    "write_final",
    "write_json",
]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
FALLOC_FL_KEEP_SIZE = 1  # <linux/falloc.h>

# Whether write_json fsyncs: the launcher of an engine made with durable=False is started
# with SYNC_ENV=0 (an engine's own writes take its flag explicitly).
SYNC = os.environ.get(SYNC_ENV) != "0"


def _write_all(fd: int, data: bytes) -> None:
    """Every byte, or OSError: a short write on a regular file means the disk is full."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def sync_dir(path: Path) -> None:
    """Make the names created or renamed in ``path`` durable (a power cut keeps them)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_file(path: Path) -> None:
    """Put ``path``'s data on the disk (its name: :func:`sync_dir` of its directory)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_file(path: Path, data: bytes) -> None:
    """A new file holding ``data``, whole or raising; an empty one already there (a blank's:
    blanks.py) is written into, any other is FileExistsError. Made durable, if it must be,
    by :func:`sync_file` and :func:`sync_dir`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_size:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
        _write_all(fd, data)
    finally:
        os.close(fd)


def reserve_size(spec_bytes: int) -> int:
    """Room for a job's end: its end frame and status.json (plus its temporary), each the size
    of spec.json (the argv, the bulk) and a bounded rest (usage, error, times)."""
    return 2 * (spec_bytes + RESERVE_SIZE)


def reserve(jdir: Path, size: int) -> None:
    """Keep ``size`` bytes and one inode for the job's end (OSError if the disk has not); a
    blank's reserve is grown to ``size`` if it is smaller. The bytes are kept past the file's
    end (it reads as empty): the end writes the status into it and need not cut it first."""
    fd = os.open(jdir / RESERVE_FILE, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if _libc.fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size):
            e = ctypes.get_errno()
            if e not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise OSError(e, os.strerror(e))
            os.posix_fallocate(fd, 0, size)  # zeros, where the file system has no fallocate
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
    volumes: Sequence[str] = (),
) -> bytes:
    """exec.bin for the job's init (protocol.ExecJob).

    ``ids``: (uid, gid) to switch to, or None to keep root. ``procs``: cgroup files to join,
    relative to the cgroup root. ``scratch``: the size of the job's tmpfs (0: as mounted);
    ``rlimits``: ``NAME=SOFT:HARD`` (jail.py); ``volumes``: ``MODE NAME SUBDIR
    TARGET`` (volumes.py)."""
    job = ExecJob(
        hostname=os.fsencode(hostname),
        cwd=os.fsencode(cwd),
        ids=ids,
        procs=tuple(os.fsencode(p) for p in procs),
        argv=tuple(os.fsencode(a) for a in argv),
        env=tuple(os.fsencode(f"{k}={v}") for k, v in env.items()),
        scratch=scratch,
        rlimits=tuple(os.fsencode(r) for r in rlimits),
        volumes=tuple(os.fsencode(v) for v in volumes),
    )
    return encode_exec(job)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically and durably (whole or not at all, even across a power cut); on a full disk
    (no block or no inode), spend the job's reserve and try once more."""
    body = json.dumps(data).encode()
    try:
        fd = _replace(path, body, None)
    except OSError:
        (path.parent / RESERVE_FILE).unlink(missing_ok=True)
        fd = _replace(path, body, None)
    os.close(fd)
    _sync_name(path)


def write_final(path: Path, data: dict[str, Any], finish: bool = True) -> None:
    """The job's final status, whole, into the job's reserve while it has one: its inode and
    blocks were made at the start, so the end allocates nothing (it cannot fail on a full
    disk) and frees no inode (on ext4 without a journal each recently freed inode makes every
    later file creation in its group slower: blanks.py).

    It is renamed into place *before* it is put on the disk, so that a waiter for the end
    does not wait on the disk too (about 1 ms, a tenth of a start of ``/bin/true`` here). A
    power cut between the two may leave it empty or holding zeros: :func:`read_final` takes
    that as no end recorded (the job is then found lost), never as damage. Then the reserve's
    blocks past the status are given back (on a full disk, the room for what the end writes
    next: the store's row) and it is fsynced, with its name.

    ``finish``: those last two steps are done here; the launcher passes False for an end a
    supervisor reported, whose supervisor does them once answered (shim/supervisor.c)."""
    body = json.dumps(data).encode()
    spare = path.parent / RESERVE_FILE
    try:
        fd = _replace(path, body, spare, sync=False)
    except OSError:
        spare.unlink(missing_ok=True)  # full, and bigger than the reserve: its room, for a new file
        fd = _replace(path, body, None, sync=False)
    try:
        if finish:
            os.ftruncate(fd, len(body))  # ext4 frees the blocks past it even at the same length
            if SYNC:
                os.fsync(fd)
    finally:
        os.close(fd)
    if finish:
        _sync_name(path)


@contextlib.contextmanager
def claimed(jdir: Path) -> Iterator[None]:
    """The job directory's lock, which a supervisor holds from its check that the job has no
    end recorded until output.log has its header (``claim_job`` in shim/supervisor.c)."""
    fd = os.open(jdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_final(path: Path) -> bytes | None:
    """A final status's bytes; None if there is none, or if it never reached the disk: empty
    or holding zeros, as a power cut may leave it (:func:`write_final`; JSON has no NUL).
    Anything else that is not a status is damage, for the caller to say."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return data if data and b"\0" not in data else None


def _sync_name(path: Path) -> None:
    if SYNC:
        sync_dir(path.parent)


def _replace(path: Path, body: bytes, spare: Path | None, sync: bool = True) -> int:
    """``body`` written to ``spare`` if it exists (else to a new temporary), put on the disk
    (if ``sync``), then renamed over ``path``; the file, still open."""
    tmp, fd = spare, -1
    if spare is not None:
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(spare, os.O_WRONLY | os.O_CLOEXEC)
    if fd < 0:
        tmp = path.with_name(path.name + TMP_SUFFIX)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    assert tmp is not None
    try:
        _write_all(fd, body)
        if os.fstat(fd).st_size > len(body):  # a reserve kept as zeros: cut them
            os.ftruncate(fd, len(body))
        if SYNC and sync:
            os.fsync(fd)  # before the rename: a power cut leaves the old name or the whole file
    except OSError:
        os.close(fd)
        if tmp is not spare:
            tmp.unlink(missing_ok=True)
        raise
    try:
        os.rename(tmp, path)  # atomic: readers see the whole file or none
    except OSError:
        os.close(fd)
        raise
    return fd
