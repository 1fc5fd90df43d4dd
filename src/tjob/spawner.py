"""The fork server: starts jobs through the C shim, and records how each ended.

The fork server is a fresh, single-threaded interpreter started once per engine. It starts one
*zygote* (``tjob-shim``, a small C program built from ``shim.c``), which keeps one spare
supervisor forked ahead of need, in a session of its own, whose init has already built the
job's namespaces; a request only hands the spare its job. The supervisor outlives both the fork
server and the engine: it holds the job's output pipes and writes the log, as containerd-shim
and conmon do. When the job is over it reports here, and the fork server, warm, records the
final status: cgroup usage and OOM kills, the cgroup's removal, ``status.json``. A supervisor
whose fork server is gone (the engine closed or died) runs :func:`record_main` instead.

Messages: engine -> fork server: one SEQPACKET datagram of JSON (directory, output cap, job id,
limits) with the reply socket attached; fork server -> supervisor: ``DIR\0CAP`` with that
socket; supervisor -> engine: one datagram of JSON on it, with pidfds of itself and of init;
supervisor -> fork server: the end (see shim.c).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cgroups import CgroupBackend, ResolvedLimits, backend
from .errors import CgroupError
from .jobdir import SPEC_FILE, STATUS_FILE, STOP_FILE, record_end
from .status import JobState, JobStatus, Usage

# --------------------------------------------------------------------------- fork server


SHIM = Path(__file__).with_name("tjob-shim")
RECORDER = (
    f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r}); "
    "from tjob.spawner import record_main; record_main()"
)


class _Zygote:
    """The C process that forks the spares (``tjob-shim zygote``)."""

    def __init__(self, cg: CgroupBackend, conf: str) -> None:
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Reaped by the kernel (SIGCHLD is ignored here); stderr is the engine's spawner.log.
        ctl = str(theirs.fileno())
        # The jail's settings (jail.py), if any: the zygote's last argument, not in the
        # configuration its supervisors hand to the recorder.
        c = json.loads(conf)
        jail = c.pop("jail", None)
        conf = json.dumps(c)
        subprocess.Popen(
            [str(SHIM), "zygote", ctl, str(cg.root), sys.executable, RECORDER, conf]
            + ([jail] if jail is not None else []),
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        theirs.close()


class _Spare:
    """A supervisor forked ahead of need, whose init has already built the job's namespaces:
    a request only has to hand it the job, which takes the forks and the namespaces' set-up
    off each start."""

    def __init__(self, chan: socket.socket, busy: int) -> None:
        self.chan, self.busy = chan, busy

    @classmethod
    def make(cls, zygote: _Zygote) -> _Spare:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Closed by the supervisor once its job is running: the cue to build the next spare,
        # so that doing so does not compete with this job's start for the CPUs.
        busy_r, busy_w = os.pipe()
        try:
            socket.send_fds(zygote.ctl, [b"s"], [theirs.fileno(), busy_w])
        except OSError:
            pass  # the zygote is gone: handing this spare its job fails, and says so
        theirs.close()
        os.close(busy_w)
        return cls(ours, busy_r)

    def hand(self, msg: bytes, reply_fd: int) -> bool:
        """Give the spare its job; its channel then waits for the report of the job's end."""
        try:
            socket.send_fds(self.chan, [msg], [reply_fd])
            return True
        except OSError:
            self.chan.close()
            return False


def serve(sock: socket.socket, cg: CgroupBackend, conf: str) -> None:
    """Hand each request to a spare supervisor, and record the ends its supervisors report,
    until the engine closes its end of ``sock``."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    zygote = _Zygote(cg, conf)
    spare: _Spare | None = _Spare.make(zygote)
    starting = -1  # the busy pipe of the job last handed over, until it is running
    running: dict[int, tuple[socket.socket, Path]] = {}  # channels of handed-over jobs
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    while True:
        ready = {key.fd for key, _ in sel.select()}
        if starting in ready:
            sel.unregister(starting)
            os.close(starting)
            starting = -1
            if spare is None:
                spare = _Spare.make(zygote)
        for fd in ready & running.keys():
            sel.unregister(fd)
            chan, jdir = running.pop(fd)
            with chan:
                _record_reported(chan, jdir, cg)
        if sock.fileno() not in ready:
            continue
        msg, fds, _flags, _addr = socket.recv_fds(sock, 65536, 1)
        if not msg:
            if spare is not None:
                spare.chan.close()  # the spare sees the end and exits with its init
            return
        if not fds:
            continue
        reply = socket.socket(fileno=fds[0])
        req = json.loads(msg)
        jdir = Path(req["dir"])
        cpu, mem, pids, rbps, wbps, dev = req["limits"]
        limits = ResolvedLimits(cpu, mem, pids, rbps, wbps, tuple(dev) if dev else None)
        try:
            cg.create(req["id"], limits)
        except CgroupError as e:
            _record_failure(jdir, cg, str(e), reply)
            continue
        if spare is None:
            spare = _Spare.make(zygote)  # the last one's job is still starting
        job = os.fsencode(jdir) + b"\0" + str(req["cap"]).encode()
        if not spare.hand(job, reply.fileno()):
            # It died (killed by hand?), perhaps with the zygote.
            zygote.ctl.close()
            zygote = _Zygote(cg, conf)
            spare = _Spare.make(zygote)
            if not spare.hand(job, reply.fileno()):
                error = "the job's supervisor could not be started"
                _record_failure(jdir, cg, error, reply)
                spare.chan.close()
        reply.close()
        if spare.chan.fileno() >= 0:
            running[spare.chan.fileno()] = (spare.chan, jdir)
            sel.register(spare.chan, selectors.EVENT_READ)
        if starting >= 0:
            sel.unregister(starting)
            os.close(starting)
        starting = spare.busy
        sel.register(starting, selectors.EVENT_READ)
        spare = None


def _record_reported(chan: socket.socket, jdir: Path, cg: CgroupBackend) -> None:
    """A supervisor reports its job's end: record it here, and answer "k" (the supervisor
    exits) or "n" (it records the end itself)."""
    try:
        msg, fds, _flags, _addr = socket.recv_fds(chan, 4096, 1)
    except OSError:
        return
    reply = socket.socket(fileno=fds[0]) if fds else None
    if not msg:
        return  # it died: the engine finds the job lost
    report = msg.decode(errors="replace")
    done = False
    try:
        # A job with processes still exiting (a stop kills them with init) is recorded by its
        # supervisor, which may wait for them: waiting here would stall every start.
        if report.startswith("F") or not cg.pids(jdir.name):
            record(jdir, cg, report, reply)
            done = True
    except Exception:
        traceback.print_exc()  # into spawner.log; the supervisor tries for itself
    finally:
        if reply is not None and not done:
            reply.close()
    try:
        chan.send(b"k" if done else b"n")
    except OSError:
        pass


def main() -> None:
    """Entry point of the fork server: ``python -c ... FD CONFIG_JSON``."""
    serve(socket.socket(fileno=int(sys.argv[1])), _backend(sys.argv[2]), sys.argv[2])


def _backend(conf: str) -> CgroupBackend:
    """The engine's cgroup backend, from its configuration as JSON."""
    c = json.loads(conf)
    cg = backend(c["version"], Path(c["root"]), c["parent"])
    cg.setup()
    return cg


# --------------------------------------------------------------------------- supervisor's end


def record_main() -> None:
    """A supervisor whose fork server is gone records its job's end here:
    ``python -I -c RECORDER CONF DIR REPORT [REPLY_FD]``."""
    cg = _backend(sys.argv[1])
    reply = socket.socket(fileno=int(sys.argv[4])) if len(sys.argv) > 4 else None
    jdir = Path(sys.argv[2])
    if not (jdir / STATUS_FILE).exists():  # else the fork server recorded it, then died
        record(jdir, cg, sys.argv[3], reply)


def record(jdir: Path, cg: CgroupBackend, report: str, reply: socket.socket | None) -> None:
    """Record a job's end from its supervisor's report: "X WSTATUS PID STARTED_AT CUT" (the
    command ran) or "F " and init's report (it could not start; the engine awaits ``reply``)."""
    kind, _, rest = report.partition(" ")
    if kind == "X":
        wstatus, pid, started_at, cut = rest.split(" ", 3)
        record_exit(jdir, cg, int(wstatus), cut or None, int(pid), float(started_at))
        return
    words = rest.split()
    if len(words) >= 3 and words[0] == "F" and words[2].isdigit():
        target = " ".join(words[3:])
        error = f"{words[1]} {target}: {os.strerror(int(words[2]))}".replace(" - ", " ")
    else:
        error = "the job's init died before starting the command"
    _record_failure(jdir, cg, error, reply)


def _record_failure(jdir: Path, cg: CgroupBackend, error: str, reply: socket.socket | None) -> None:
    """A job that never ran: its cgroup removed, its status recorded, the engine answered."""
    spec = json.loads((jdir / SPEC_FILE).read_bytes())
    try:
        cg.remove(spec["id"])
    except CgroupError:
        pass
    status = JobStatus(state=JobState.FAILED, error=error, ended_at=time.time(), **_base(spec))
    record_end(jdir, status)
    if reply is not None:
        _reply(reply, {"ok": False, "error": error})


def _base(req: dict[str, Any]) -> dict[str, Any]:
    """The fields of a job's status known before it started, from its spec.json."""
    return {
        "id": req["id"],
        "argv": tuple(req["argv"]),
        "owner": req.get("owner", ""),
        "created_at": req["created_at"],
        "limits": req["limits_public"],
    }


def record_exit(
    jdir: Path,
    cg: CgroupBackend,
    wstatus: int,
    cut: str | None,
    pid: int,
    started_at: float,
) -> None:
    """The final status of a job whose command ran: its wait status (-1 if init was killed),
    cgroup usage, OOM kills, and the cgroup removed."""
    spec = json.loads((jdir / SPEC_FILE).read_bytes())
    if wstatus < 0:
        # No report: init was SIGKILLed (a stop), and the kernel SIGKILLed all in its namespace.
        wstatus = signal.SIGKILL
    job_id = spec["id"]
    usage = cg.usage(job_id)
    oom = cg.oom_kills(job_id) > 0
    error = cut
    try:
        cg.remove(job_id)
    except CgroupError as e:
        error = f"{error}; {e}" if error else str(e)
    stopped = (jdir / STOP_FILE).exists()
    status = JobStatus(
        state=JobState.STOPPED if stopped else JobState.EXITED,
        pid=pid or None,
        exit_code=os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else None,
        signal=os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else None,
        oom_killed=oom,
        stopped=stopped,
        error=error,
        output_truncated=cut is not None,
        started_at=started_at,
        ended_at=time.time(),
        usage=Usage(
            cpu_seconds=usage.cpu_seconds,
            memory_peak_bytes=usage.memory_peak_bytes,
            io_read_bytes=usage.io_read_bytes,
            io_write_bytes=usage.io_write_bytes,
        ),
        **_base(spec),
    )
    record_end(jdir, status)


def _reply(reply: socket.socket, data: dict[str, Any], fds: Sequence[int] = ()) -> None:
    try:
        socket.send_fds(reply, [json.dumps(data).encode()], fds)
    except OSError:
        pass  # the engine went away; the job is recorded on disk all the same
    reply.close()


if __name__ == "__main__":
    main()
