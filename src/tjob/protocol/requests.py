"""What the engine asks of the fork server, and the fork server hands a supervisor (messages 1,
2, 8 and 9 of :mod:`tjob.protocol`): a job's start, an exec into one, the handoff, and the
resolved limits and stdio they carry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from .base import ProtocolError, json_object
from .constants import EXEC_OP, VERSION, WINSIZE_MAX

__all__ = [
    "NO_STDIO",
    "ExecRequest",
    "Handoff",
    "Limits",
    "StartRequest",
    "Stdio",
    "decode_handoff",
    "decode_request",
    "decode_start_request",
    "encode_exec_request",
    "encode_handoff",
    "encode_start_request",
]


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
    return _start_request(json_object(msg))


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
    d = json_object(msg)  # parsed once: this is every job start's path
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
