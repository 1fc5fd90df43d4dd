"""The fork server, and the Python ends of each job's supervisor.

The fork server is a fresh, single-threaded interpreter started once per engine, so forking is
safe even when the engine's process has threads (an asyncio server, a gRPC library). It keeps
one *spare* supervisor forked ahead of need, in a session of its own, whose init has already
built the job's namespaces; a request only hands it the job. The supervisor outlives both the
fork server and the engine: it holds the job's output pipes, writes the log, and records the
final status, as containerd-shim and conmon do.

From the fork until the job is over the supervisor and its init run C (``_shim.c``: the
process tree, the namespaces, the output capture), so they do not copy the Python heap they
share with this process. Then the supervisor returns here to record the end: cgroup usage, the
cgroup's removal, the final status.

Messages: engine -> fork server: one SEQPACKET datagram ``DIR\0CAP`` with the reply socket
attached; supervisor -> engine: one datagram of JSON on that socket, with pidfds of itself and
of init.
"""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import _shim
from .cgroups import CgroupBackend, backend
from .errors import CgroupError
from .jobdir import SPEC_FILE, STATUS_FILE, STOP_FILE, record_end
from .status import JobState, JobStatus, Usage

# --------------------------------------------------------------------------- fork server


def _child(body: Callable[[], int]) -> NoReturn:
    """The whole life of a forked child: it never returns into its parent's code."""
    code = 1
    try:
        code = body()
    except BaseException:
        traceback.print_exc()  # into the engine's spawner.log
    finally:
        os._exit(code)


class _Zygote:
    """A child of the fork server that forks the spares, in C: the fork server itself forks
    once, so it does not copy (fault on) every page it touches after each fork."""

    def __init__(self, cg: CgroupBackend) -> None:
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if os.fork() == 0:
            _child(lambda: finish(_shim.zygote(theirs.fileno(), str(cg.root)), cg))
        theirs.close()


class _Spare:
    """A supervisor forked ahead of need, whose init has already built the job's namespaces:
    a request only has to hand it the job, which takes ~3 ms of forking and namespace set-up
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


def serve(sock: socket.socket, cg: CgroupBackend) -> None:
    """Hand each request to a spare supervisor, and record the ends its supervisors report,
    until the engine closes its end of ``sock``."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    zygote = _Zygote(cg)
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
        if spare is None:
            spare = _Spare.make(zygote)  # the last one's job is still starting
        if not spare.hand(msg, fds[0]):
            # It died (killed by hand?), perhaps with the zygote.
            zygote.ctl.close()
            zygote = _Zygote(cg)
            spare = _Spare.make(zygote)
            if not spare.hand(msg, fds[0]):
                err = {"ok": False, "error": "the job's supervisor could not be started"}
                _reply(socket.socket(fileno=os.dup(fds[0])), err)
                spare.chan.close()
        os.close(fds[0])
        if spare.chan.fileno() >= 0:
            running[spare.chan.fileno()] = (spare.chan, Path(os.fsdecode(msg.split(b"\0")[0])))
            sel.register(spare.chan, selectors.EVENT_READ)
        if starting >= 0:
            sel.unregister(starting)
            os.close(starting)
        starting = spare.busy
        sel.register(starting, selectors.EVENT_READ)
        spare = None


def _record_reported(chan: socket.socket, jdir: Path, cg: CgroupBackend) -> None:
    """A supervisor reports its job's end ("WSTATUS PID STARTED_AT CUT"): record it here, and
    answer "k" (the supervisor exits) or "n" (it records the end itself)."""
    try:
        report = chan.recv(1024).decode()
    except OSError:
        return
    if not report:
        return  # it died, or failed to start the job and records that itself
    done = False
    try:
        if not cg.pids(jdir.name):  # else waiting for them to go would stall every start
            wstatus, pid, started_at, cut = report.split(" ", 3)
            record_exit(jdir, cg, int(wstatus), cut or None, int(pid), float(started_at))
            done = True
    except Exception:
        traceback.print_exc()  # into spawner.log; the supervisor tries for itself
    try:
        chan.send(b"k" if done else b"n")
    except OSError:
        pass


def main() -> None:
    """Entry point of the fork server: ``python -c ... FD CONFIG_JSON``."""
    from .cgroups import v1, v2  # noqa: F401  (imported once here, not in every supervisor)

    conf = json.loads(sys.argv[2])
    cg = backend(conf["version"], Path(conf["root"]), conf["parent"])
    cg.setup()
    # Every supervisor and init is a fork of this process: keep the collector away from the
    # objects they inherit, so its passes do not copy those pages into each of them.
    gc.collect()
    gc.freeze()
    serve(socket.socket(fileno=int(sys.argv[1])), cg)


# --------------------------------------------------------------------------- supervisor's end


def finish(result: tuple[Any, ...], cg: CgroupBackend) -> int:
    """In a supervisor back from ``_shim.supervise``: record how the job ended."""
    jdir = Path(os.fsdecode(result[1]))
    if result[0] == "failed":
        _, _, line, reply_fd = result
        words = line.decode(errors="replace").split()
        if words and words[0] == "F" and len(words) >= 3 and words[2].isdigit():
            target = " ".join(words[3:])
            error = f"{words[1]} {target}: {os.strerror(int(words[2]))}".replace(" - ", " ")
        else:
            error = "the job's init died before starting the command"
        _remove(cg, jdir.name)
        req = json.loads((jdir / SPEC_FILE).read_bytes())
        status = JobStatus(state=JobState.FAILED, error=error, ended_at=time.time(), **_base(req))
        record_end(jdir, status)
        _reply(socket.socket(fileno=reply_fd), {"ok": False, "error": error})
    elif not (jdir / STATUS_FILE).exists():  # else the fork server recorded it, then died
        record_exit(jdir, cg, *result[2:])
    return 0


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
    jdir: Path, cg: CgroupBackend, wstatus: int, cut: str | None, pid: int, started_at: float
) -> None:
    """The final status of a job whose command ran: its wait status (-1 if init was killed),
    cgroup usage, OOM kills, and the cgroup removed."""
    req = json.loads((jdir / SPEC_FILE).read_bytes())
    if wstatus < 0:
        # No report: init was SIGKILLed (a stop), and the kernel SIGKILLed all in its namespace.
        wstatus = signal.SIGKILL
    job_id = req["id"]
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
        **_base(req),
    )
    record_end(jdir, status)


def _remove(cg: CgroupBackend, job_id: str) -> None:
    try:
        cg.remove(job_id)
    except CgroupError:
        pass


def _reply(reply: socket.socket, data: dict[str, Any], fds: Sequence[int] = ()) -> None:
    try:
        socket.send_fds(reply, [json.dumps(data).encode()], fds)
    except OSError:
        pass  # the engine went away; the job is recorded on disk all the same
    reply.close()


if __name__ == "__main__":
    main()
