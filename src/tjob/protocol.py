"""The contract between the engine, its fork server and ``tjob-shim``: every message, file name,
magic and size that crosses a process boundary, with encode/decode for each message.

Pure (no I/O) and free of imports from the rest of the package: ``setup.py`` loads this file by
path to generate the shim's ``protocol.h`` from it (:mod:`tjob.protocol_h`), so the C side
takes its constants from here, and ``tjob-shim selftest`` lets the tests check the built
shim against this module, message by message.

The messages, in the order a job meets them (``→`` is who sends to whom):

1. ``StartRequest``: engine → fork server, JSON, with the reply socket attached.
2. ``Handoff``: fork server → the spare supervisor, ``DIR\\0CAP`` with the same socket.
3. ``exec.bin`` (``ExecJob``): written by the engine, read by init (NUL-terminated fields).
4. init's reports to its supervisor, one line each: ``S PID`` (the command runs; ``-`` if its
   host pid is unknown), ``F STAGE SYSCALL ERRNO TARGET`` (a step failed), ``X WSTATUS``.
5. ``run.json`` (``RunInfo``): the supervisor, once the command runs (read on re-adoption).
6. ``StartReply``: supervisor (or, on failure, fork server) → engine, JSON, with pidfds of the
   supervisor and init on success.
7. ``EndReport``: supervisor → fork server (or the fallback recorder's argv):
   ``X WSTATUS PID STARTED_AT CUT`` or ``F STAGE SYSCALL ERRNO TARGET`` (``F`` alone: init died
   before it reported). Answered by ``ACK_RECORDED`` or ``ACK_DECLINED``.

Exec into a running job (issue 16), a small job of its own in ``EXECS_DIR/N`` of the job's
directory (its ``exec.bin``, ``output.log`` and ``end-report``):

8. ``ExecRequest``: engine → fork server, JSON (``op`` ``exec``), with the reply socket and a
   pidfd of the job's init attached.
9. ``EXEC_REQUEST`` + ``Handoff`` (the exec's directory; -i/-t's ``stdio``): fork server →
   zygote, with the same two fds; the zygote forks an exec supervisor
   (``EXEC_SUPERVISOR_ARGV``), which lends -i/-t's stdin as a job's supervisor does.
10. ``StartReply`` on the reply socket once the command runs, with a pidfd of the exec
   supervisor; on failure the socket is closed unanswered and the ``EndReport`` (``F ...``) is
   in ``end-report``. At the end, the exec supervisor writes its ``EndReport`` (``X ...``) there
   itself: nobody records an exec's end for it.
An interactive job (issue 16; ``Handoff.stdio``) has a stdin pipe or a pseudo-terminal whose
write end / master the supervisor holds, and a unix socket ``ATTACH_SOCKET`` in its directory
where it lends that descriptor to one writer at a time (see "the attach channel" below).

A supervisor is recognisable by its command line: ``SUPERVISOR_ARGV`` followed by its job id
(``tjob-shim\\0supervisor\\0ID``; a spare without a job yet has no id). The engine believes it
only for the pid that ``run.json`` names and only in its own PID namespace, which a job's
processes (in the job's PID namespace) can never be in.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, NamedTuple

VERSION = 1

# ------------------------------------------------------------------ a job's directory
SPEC_FILE = "spec.json"
EXEC_FILE = "exec.bin"
RUN_FILE = "run.json"
STATUS_FILE = "status.json"
LOG_FILE = "output.log"
STOP_FILE = "stop-requested"
RESERVE_FILE = "reserve"
# The supervisor's EndReport (encode_end_report), written by it when no launcher recorded the
# end (the engine is down): whoever runs next records it. One small file, no process per end.
END_FILE = "end-report"
# In the launcher's environment (and so its supervisors'): "0" when the engine was made with
# durable=False, and files recording a job's state are then not fsynced.
SYNC_ENV = "TJOB_FSYNC"
RESERVE_SIZE = 16 << 10  # room for the final status should the disk fill up
# An interactive job's attach channel (issue 16): a SOCK_SEQPACKET socket the supervisor
# listens on while the job runs (mode 0600, peers of another uid are refused), removed at the end.
ATTACH_SOCKET = "attach.sock"

# ------------------------------------------------------------------ the framed log
# v3: the magic, then the committed end (u64le: the offset just past the last frame whose header
# is written; the writer moves it after each header, so a reader can scan backwards from a
# boundary the job's own bytes can never fake), then frames of
#   header  <stream:u8> <0:3> <length:u32le> <time:u64le>   (time: CLOCK_REALTIME ns of the read)
#   payload <length bytes>
#   trailer <crc:u32le> <length:u32le>   (crc: zlib's CRC-32 of header then payload)
# written payload+trailer first and the header last (an all-zero header is a frame being
# written), so the trailer's length lets a reader step back one frame at a time (--tail).
# v2 (still read): <stream:u8> <crc:3> <length:u32le> <bytes>, crc the low 24 bits of the
# payload's CRC-32; v1 (still read): the same with 3 bytes of padding. Both begin at offset 8.
LOG_MAGIC = b"TJOBLOG3"
LOG_MAGIC_V2 = b"TJOBLOG2"
LOG_MAGIC_V1 = b"TJOBLOG1"
LOG_MAGIC_SIZE = 8
LOG_FILE_HEADER_SIZE = 16  # magic and committed end: the first frame's offset
LOG_HEADER_SIZE = 16
LOG_TRAILER_SIZE = 8
LOG_OLD_HEADER_SIZE = 8  # v1 and v2 frame headers
STREAM_STDOUT = 1
STREAM_STDERR = 2
STREAM_TRUNCATED = 3
STREAM_END = 4

# ------------------------------------------------------------------ process marks and tags
SUPERVISOR_ARGV = (b"tjob-shim", b"supervisor")
ZYGOTE_ARGV = (b"tjob-shim", b"zygote")
INIT_ARGV = (b"tjob-shim", b"init")  # in the job's PID namespace: never taken for a supervisor
SPARE_REQUEST = b"s"  # fork server → zygote, with a spare's channel and busy pipe
INIT_JOB = b"j"  # supervisor → init, with the output pipes and exec.bin
# init → supervisor, first, with its mount namespace: the supervisor holds it until it exits,
# so that init's exit does not wait for the job's mounts to be torn down.
INIT_MOUNTS = b"m"
# Interactive jobs (issue 16): the same, with a fourth fd, the command's stdin: a pipe's read
# end, or (INIT_JOB_TTY) the pty's slave, which is then also fds 1 and 2 and the command's
# controlling terminal in a session of its own.
INIT_JOB_STDIN = b"i"
INIT_JOB_TTY = b"t"
REPORT_STARTED = "S"
REPORT_FAILED = "F"
REPORT_EXITED = "X"
ACK_RECORDED = b"k"
ACK_DECLINED = b"n"
EXEC_MAGIC = f"tjob-exec-v{VERSION}"
KEEP_ID = "-"  # exec.bin's uid/gid: stay root
NO_TARGET = "-"
TARGET_MAX = 200  # bytes of a failure's target kept (newlines become spaces)
MAX_LIST = 1 << 20  # entries in one exec.bin list


# ------------------------------------------------------------------ exec (issue 16)
EXECS_DIR = "execs"  # in a job's directory: one numbered directory per exec
EXEC_REQUEST = b"e"  # fork server → zygote, then a Handoff, with a reply socket and init's pidfd
EXEC_SUPERVISOR_ARGV = (b"tjob-shim", b"exec")  # then the exec's directory; never a job's mark
EXEC_OP = "exec"


class ProtocolError(ValueError):
    """A message that does not follow this contract."""


# ------------------------------------------------------------------ 1. engine → fork server


class Limits(NamedTuple):
    """Resolved limits, in cgroups' ``ResolvedLimits`` order."""

    cpu_percent: int
    memory_mb: int
    pids: int
    rbps: int
    wbps: int
    device: tuple[int, int] | None

    @classmethod
    def resolved(cls, *values: int | None, device: tuple[int, int] | None) -> Limits:
        """From the five numbers in field order, every one decided."""
        decided = [v for v in values if v is not None]
        if len(decided) != 5 or len(values) != 5:
            raise ProtocolError(f"limits must all be decided: {values!r}")
        cpu_percent, memory_mb, pids, rbps, wbps = decided
        return cls(cpu_percent, memory_mb, pids, rbps, wbps, device)


@dataclass(frozen=True)
class StartRequest:
    dir: str
    cap: int
    id: str
    limits: Limits
    cgroup: str = ""  # the job's cgroup relative to the engine's parent ("" is the id)
    stdio: Stdio | None = None  # an interactive job's (issue 16); None: /dev/null

    def __post_init__(self) -> None:
        if not self.cgroup:
            object.__setattr__(self, "cgroup", self.id)


def encode_start_request(req: StartRequest) -> bytes:
    lim = req.limits._asdict()
    lim["device"] = list(req.limits.device) if req.limits.device else None
    return json.dumps(
        {
            "v": VERSION,
            "dir": req.dir,
            "cap": req.cap,
            "id": req.id,
            "limits": lim,
            "cgroup": req.cgroup,
            **({"stdio": list(req.stdio)} if req.stdio else {}),
        }
    ).encode()


def decode_start_request(msg: bytes) -> StartRequest:
    return _start_request(_json(msg))


def _start_request(d: dict[str, Any]) -> StartRequest:
    try:
        lim = d["limits"]
        dev = lim["device"]
        limits = Limits(
            int(lim["cpu_percent"]),
            int(lim["memory_mb"]),
            int(lim["pids"]),
            int(lim["rbps"]),
            int(lim["wbps"]),
            (int(dev[0]), int(dev[1])) if dev else None,
        )
        cgroup = str(d.get("cgroup") or d["id"])
        io = d.get("stdio")
        stdio = Stdio(bool(io[0]), bool(io[1]), int(io[2]), int(io[3])) if io else None
        return StartRequest(str(d["dir"]), int(d["cap"]), str(d["id"]), limits, cgroup, stdio)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ProtocolError(f"malformed start request: {e!r}") from None


@dataclass(frozen=True)
class ExecRequest:
    """Run the exec prepared in ``dir`` (its exec.bin) in the job whose init's pidfd comes
    with the request; ``cap`` bounds its output.log as a job's; ``stdio``: its stdin or
    terminal (-i/-t), as an interactive job's, lent over the attach socket in ``dir``."""

    dir: str
    cap: int
    stdio: Stdio | None = None


def encode_exec_request(req: ExecRequest) -> bytes:
    d: dict[str, Any] = {"v": VERSION, "op": EXEC_OP, "dir": req.dir, "cap": req.cap}
    if req.stdio:
        d["stdio"] = list(req.stdio)
    return json.dumps(d).encode()


def decode_request(msg: bytes) -> StartRequest | ExecRequest:
    """What the engine sends the fork server: a job to start, or an exec into one."""
    d = _json(msg)  # parsed once: this is every job start's path
    if d.get("op") != EXEC_OP:
        return _start_request(d)
    try:
        io = d.get("stdio")
        stdio = Stdio(bool(io[0]), bool(io[1]), int(io[2]), int(io[3])) if io else None
        return ExecRequest(str(d["dir"]), int(d["cap"]), stdio)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ProtocolError(f"malformed exec request: {e!r}") from None


# ------------------------------------------------------------------ 2. fork server → supervisor


class Stdio(NamedTuple):
    """An interactive job's stdin (issue 16): ``stdin`` keeps it open for writers (a pipe,
    else /dev/null); ``tty`` gives the job a pseudo-terminal of ``rows`` x ``cols``."""

    stdin: bool = False
    tty: bool = False
    rows: int = 0
    cols: int = 0

    @property
    def interactive(self) -> bool:
        return self.stdin or self.tty


NO_STDIO = Stdio()
WINSIZE_MAX = 4096  # rows or columns: more is refused (absurd, and ws_row is 16 bits)
DEFAULT_WINSIZE = (24, 80)


@dataclass(frozen=True)
class Handoff:
    """``DIR\\0CAP``; an interactive job adds ``\\0FLAGS ROWS COLS`` (FLAGS: ``i``, ``t`` or
    ``it``), which the shim parses only then: a plain job's start costs nothing more."""

    dir: bytes
    cap: int
    stdio: Stdio = NO_STDIO


def encode_handoff(h: Handoff) -> bytes:
    out = h.dir + b"\0" + str(h.cap).encode()
    if h.stdio.interactive:
        flags = "i" * h.stdio.stdin + "t" * h.stdio.tty
        out += f"\0{flags} {h.stdio.rows} {h.stdio.cols}".encode()
    return out


def decode_handoff(msg: bytes) -> Handoff:
    d, sep, rest = msg.partition(b"\0")
    cap, _, stdio = rest.partition(b"\0")
    if not sep or not cap.isdigit():
        raise ProtocolError(f"malformed handoff: {msg!r}")
    if not stdio:
        return Handoff(d, int(cap))
    parts = stdio.split(b" ")
    if (
        len(parts) != 3
        or parts[0] not in (b"i", b"t", b"it")
        or not all(p.isdigit() and int(p) <= WINSIZE_MAX for p in parts[1:])
    ):
        raise ProtocolError(f"malformed handoff stdio: {stdio!r}")
    io = Stdio(b"i" in parts[0], b"t" in parts[0], int(parts[1]), int(parts[2]))
    return Handoff(d, int(cap), io)


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


# ------------------------------------------------------------------ 4 and 7. reports


@dataclass(frozen=True)
class Failure:
    """A step that failed: which stage, which system call, errno, and on what."""

    stage: str
    syscall: str
    errno: int
    target: bytes = NO_TARGET.encode()

    def message(self) -> str:
        """For a job's status: ``exec /x: No such file or directory`` when the call is the
        stage itself, else ``init: sethostname: Operation not permitted``."""
        reason = os.strerror(self.errno)
        target = "" if self.target == NO_TARGET.encode() else self.target.decode(errors="replace")
        if self.syscall == self.stage:
            return f"{self.stage} {target}: {reason}" if target else f"{self.stage}: {reason}"
        call = f"{self.syscall} {target}" if target else self.syscall
        return f"{self.stage}: {call}: {reason}"


def encode_failure(f: Failure) -> bytes:
    target = f.target.replace(b"\n", b" ")[:TARGET_MAX] or NO_TARGET.encode()
    return f"{REPORT_FAILED} {f.stage} {f.syscall} {f.errno} ".encode() + target


def decode_failure(line: bytes) -> Failure:
    parts = line.split(b" ", 4)
    if len(parts) != 5 or parts[0] != REPORT_FAILED.encode() or not parts[3].isdigit():
        raise ProtocolError(f"malformed failure report: {line!r}")
    return Failure(parts[1].decode(), parts[2].decode(), int(parts[3]), parts[4])


@dataclass(frozen=True)
class Started:
    pid: int | None


@dataclass(frozen=True)
class InitExited:
    wstatus: int


InitReport = Started | Failure | InitExited


def encode_init_report(r: InitReport) -> bytes:
    if isinstance(r, Failure):
        return encode_failure(r)
    if isinstance(r, Started):
        return f"{REPORT_STARTED} {r.pid if r.pid else '-'}".encode()
    return f"{REPORT_EXITED} {r.wstatus}".encode()


def decode_init_report(line: bytes) -> InitReport:
    tag, _, rest = line.partition(b" ")
    try:
        if tag == REPORT_STARTED.encode():
            return Started(None if rest == b"-" else int(rest))
        if tag == REPORT_EXITED.encode():
            return InitExited(int(rest))
    except ValueError:
        raise ProtocolError(f"malformed init report: {line!r}") from None
    return decode_failure(line)


@dataclass(frozen=True)
class Exited:
    """The command ran and ended: its wait status (-1: init was killed, i.e. a stop), host pid
    (None if unknown), start time, and why output was cut (None if it was not)."""

    wstatus: int
    pid: int | None
    started_at: float
    cut: str | None


@dataclass(frozen=True)
class Failed:
    """The command never ran; ``failure`` is None if init died before it said why."""

    failure: Failure | None

    def message(self) -> str:
        if self.failure is None:
            return "the job's init died before starting the command"
        return self.failure.message()


EndReport = Exited | Failed


def encode_end_report(r: EndReport) -> bytes:
    if isinstance(r, Failed):
        return encode_failure(r.failure) if r.failure else REPORT_FAILED.encode()
    pid = r.pid or 0
    return f"{REPORT_EXITED} {r.wstatus} {pid} {r.started_at!r} {r.cut or ''}".encode()


def decode_end_report(msg: bytes) -> EndReport:
    """Anything but an exit is a failure to start, and one without a well-formed ``F`` line is
    init having died before it said why."""
    tag, _, rest = msg.partition(b" ")
    if tag != REPORT_EXITED.encode():
        try:
            return Failed(decode_failure(msg))
        except ProtocolError:
            return Failed(None)
    parts = rest.split(b" ", 3)
    try:
        wstatus, pid, started_at = int(parts[0]), int(parts[1]), float(parts[2])
        cut = parts[3].decode(errors="replace") if len(parts) > 3 else ""
    except (ValueError, IndexError):
        raise ProtocolError(f"malformed end report: {msg!r}") from None
    return Exited(wstatus, pid or None, started_at, cut or None)


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
    d = _json(data)
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


# ------------------------------------------------------------------ 6. the start reply


@dataclass(frozen=True)
class StartReply:
    """``ok``: the command runs (pid, started_at, supervisor_pid are set); else ``error``."""

    ok: bool
    pid: int | None = None
    started_at: float = math.nan
    supervisor_pid: int = 0
    error: str = ""


def encode_start_reply(r: StartReply) -> bytes:
    if not r.ok:
        return json.dumps({"v": VERSION, "ok": False, "error": r.error}).encode()
    d = {"v": VERSION, "ok": True, "pid": r.pid, "started_at": r.started_at}
    d["supervisor_pid"] = r.supervisor_pid
    return json.dumps(d).encode()


def decode_start_reply(msg: bytes) -> StartReply:
    d = _json(msg)
    try:
        if not d["ok"]:
            return StartReply(False, error=str(d.get("error", "start failed")))
        pid = d["pid"]
        pid = None if pid is None else int(pid)
        return StartReply(True, pid, float(d["started_at"]), int(d["supervisor_pid"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolError(f"malformed start reply: {e!r}") from None


# ------------------------------------------------------------------ 8. the attach channel
# engine → supervisor: connect to ATTACH_SOCKET (SOCK_SEQPACKET); the supervisor answers one
# byte: LEASE_GRANTED with the descriptor attached (the stdin pipe's write end, or the pty's
# master: the engine writes, and sets a TTY's window size, on it directly, so the pipe's own
# flow control reaches the writer), LEASE_BUSY (another writer holds it) or LEASE_CLOSED (the
# job's stdin was closed). The connection is the lease: while it is open nobody else gets
# the descriptor. The holder may send LEASE_EOF (close the job's stdin: a pipe's readers see
# EOF) or LEASE_DETACH (leave it open) before closing; a lease of a pipe closed without either
# (its holder vanished) is taken as EOF, one of a TTY leaves the terminal as it is.
LEASE_GRANTED = b"o"
LEASE_BUSY = b"b"
LEASE_CLOSED = b"c"
LEASE_EOF = b"e"
LEASE_DETACH = b"d"


def _json(data: bytes) -> dict[str, Any]:
    try:
        d = json.loads(data)
    except ValueError as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(d, dict):
        raise ProtocolError("not a JSON object")
    if d.get("v", VERSION) != VERSION:
        raise ProtocolError(f"protocol version {d.get('v')!r}, expected {VERSION}")
    return d
