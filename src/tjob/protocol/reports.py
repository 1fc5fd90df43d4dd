"""What comes back (messages 4, 6, 7 and 10 of :mod:`tjob.protocol`): init's reports to its
supervisor, the start reply to the engine, and the supervisor's end report."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from .base import ProtocolError, json_object
from .constants import NO_TARGET, REPORT_EXITED, REPORT_FAILED, REPORT_STARTED, TARGET_MAX, VERSION

__all__ = [
    "EndReport",
    "Exited",
    "Failed",
    "Failure",
    "InitExited",
    "InitReport",
    "StartReply",
    "Started",
    "decode_end_report",
    "decode_failure",
    "decode_init_report",
    "decode_start_reply",
    "encode_end_report",
    "encode_failure",
    "encode_init_report",
    "encode_start_reply",
]


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
    d = json_object(msg)
    try:
        if not d["ok"]:
            return StartReply(False, error=str(d.get("error", "start failed")))
        pid = d["pid"]
        pid = None if pid is None else int(pid)
        return StartReply(True, pid, float(d["started_at"]), int(d["supervisor_pid"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ProtocolError(f"malformed start reply: {e!r}") from None
