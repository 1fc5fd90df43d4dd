"""The launcher: makes each job's cgroup, hands the job to a spare supervisor, and records
how each job ended. It forks nothing itself.

The launcher is a fresh, single-threaded interpreter started once per engine
(:mod:`tjob.launcher_client`). It starts one *zygote* (``tjob-shim``, a small C program built
from ``shim/``), which keeps one spare supervisor forked ahead of need, in a session of its
own, whose init has already built the job's namespaces; a request only hands the spare its job.
The supervisor outlives both the launcher and the engine: it holds the job's output pipes and
writes the log, as containerd-shim and conmon do. When the job is over it reports here, and the
launcher, warm, records the end (:mod:`tjob.recorder`). A supervisor whose launcher is gone
(the engine closed or died) leaves its report in the job's directory for the next engine
(supervisors of earlier releases exec :func:`record_main` instead).

Messages (all in the protocol package): engine -> launcher: a ``StartRequest`` with the reply socket
attached; launcher -> supervisor: a ``Handoff`` with that socket; supervisor -> engine: a
``StartReply`` on it, with pidfds of itself and of init; supervisor -> launcher: an
``EndReport``, answered ``ACK_RECORDED`` or ``ACK_DECLINED``.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from .cgroups import CgroupBackend, ClientLimits, backend
from .errors import CgroupError
from .jobdir import STATUS_FILE
from .protocol import (
    ACK_DECLINED,
    ACK_RECORDED,
    EXEC_REQUEST,
    NO_STDIO,
    REPORT_EXITED,
    SPARE_REQUEST,
    ZYGOTE_ARGV,
    ExecRequest,
    Exited,
    Handoff,
    StartReply,
    decode_end_report,
    decode_request,
    encode_handoff,
    encode_start_reply,
)
from .recorder import Recorder
from .status import ResolvedLimits

# --------------------------------------------------------------------------- launcher


SHIM = Path(__file__).with_name("tjob-shim")
RECORDER = (
    f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r}); "
    "from tjob.launcher import record_main; record_main()"
)


class _Zygote:
    """The C process that forks the spares (``tjob-shim zygote``)."""

    def __init__(self, cg: CgroupBackend, conf: str) -> None:
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Reaped by the kernel (SIGCHLD is ignored here); stderr is the engine's launcher.log.
        ctl = str(theirs.fileno())
        # The jail's settings (jail.py), if any: the zygote's last argument, not in the
        # configuration its supervisors hand to the recorder.
        c = json.loads(conf)
        jail = c.pop("jail", None)
        conf = json.dumps(c)
        subprocess.Popen(
            [str(SHIM), ZYGOTE_ARGV[1].decode(), ctl, str(cg.root), sys.executable, RECORDER, conf]
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
            socket.send_fds(zygote.ctl, [SPARE_REQUEST], [theirs.fileno(), busy_w])
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


def serve(sock: socket.socket, rec: Recorder, conf: str) -> None:
    """Hand each request to a spare supervisor, and record the ends its supervisors report,
    until the engine closes its end of ``sock``."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cg = rec.cg
    zygote = _Zygote(cg, conf)
    spare: _Spare | None = _Spare.make(zygote)
    starting = -1  # the busy pipe of the job last handed over, until it is running
    running: dict[int, tuple[socket.socket, Path, str]] = {}  # channels of handed-over jobs
    last: tuple[str, ResolvedLimits] | None = None  # the cgroup and limits of the last start
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
            chan, jdir, name = running.pop(fd)
            with chan:
                _record_reported(chan, jdir, name, rec)
            if last is not None:
                cg.make_spare(*last)
        if sock.fileno() not in ready:
            continue
        msg, fds, _flags, _addr = socket.recv_fds(sock, 65536, 2)
        if not msg:
            if spare is not None:
                spare.chan.close()  # the spare sees the end and exits with its init
            cg.drop_spare()
            return
        if not fds:
            continue
        req = decode_request(msg)
        if isinstance(req, ExecRequest):
            zygote = _exec(zygote, cg, conf, req, fds)
            continue
        for fd in fds[1:]:
            os.close(fd)
        reply = socket.socket(fileno=fds[0])
        jdir = Path(req.dir)
        cpu, mem, pids, rbps, wbps, dev = req.limits
        limits = ResolvedLimits(cpu, mem, pids, rbps, wbps, f"{dev[0]}:{dev[1]}" if dev else None)
        try:
            cg.create(req.cgroup, limits)
        except CgroupError as e:
            _record_failure(jdir, rec, str(e), reply)
            continue
        if spare is None:
            spare = _Spare.make(zygote)  # the last one's job is still starting
        job = encode_handoff(Handoff(os.fsencode(jdir), req.cap, req.stdio or NO_STDIO))
        if not spare.hand(job, reply.fileno()):
            # It died (killed by hand?), perhaps with the zygote.
            zygote.ctl.close()
            zygote = _Zygote(cg, conf)
            spare = _Spare.make(zygote)
            if not spare.hand(job, reply.fileno()):
                error = "the job's supervisor could not be started"
                _record_failure(jdir, rec, error, reply)
                spare.chan.close()
        reply.close()
        if spare.chan.fileno() >= 0:
            running[spare.chan.fileno()] = (spare.chan, jdir, req.cgroup)
            sel.register(spare.chan, selectors.EVENT_READ)
        if starting >= 0:
            sel.unregister(starting)
            os.close(starting)
        starting = spare.busy
        sel.register(starting, selectors.EVENT_READ)
        spare = None
        # The next start's cgroup is made ahead (v1): once an end is recorded, when a short
        # job's start no longer runs on the other CPU; at once if other jobs run.
        last = (req.cgroup, limits)
        if len(running) > 1:
            cg.make_spare(*last)


def _exec(
    zygote: _Zygote, cg: CgroupBackend, conf: str, req: ExecRequest, fds: list[int]
) -> _Zygote:
    """Have the zygote fork an exec supervisor (issue 16), with the engine's reply socket and
    the job's init's pidfd; nothing to record: the exec supervisor writes its own end. A
    zygote that is gone is started again, once; if that fails too, the reply socket closes
    unanswered. Returns the zygote in use."""
    msg = EXEC_REQUEST + encode_handoff(
        Handoff(os.fsencode(req.dir), req.cap, req.stdio or NO_STDIO)
    )
    try:
        if len(fds) == 2:
            try:
                socket.send_fds(zygote.ctl, [msg], fds)
            except OSError:
                zygote.ctl.close()
                zygote = _Zygote(cg, conf)
                with contextlib.suppress(OSError):
                    socket.send_fds(zygote.ctl, [msg], fds)
    finally:
        for fd in fds:
            os.close(fd)
    return zygote


def _record_reported(chan: socket.socket, jdir: Path, name: str, rec: Recorder) -> None:
    """A supervisor reports its job's end: record it here, and answer ACK_RECORDED (the
    supervisor exits) or ACK_DECLINED (it records the end itself)."""
    try:
        msg, fds, _flags, _addr = socket.recv_fds(chan, 4096, 1)
    except OSError:
        return
    reply = socket.socket(fileno=fds[0]) if fds else None
    if not msg:
        return  # it died: the engine finds the job lost
    done = False
    after: list[Callable[[], None]] = []  # run once status.json is in place (its waiter woken)
    rec.after = after
    try:
        # A job with processes still exiting (a stop kills them with init) is recorded by its
        # supervisor, which may wait for them: waiting here would stall every start.
        if not msg.startswith(REPORT_EXITED.encode()) or not rec.cg.pids(name):
            record(jdir, rec, msg, reply)
            done = True
    except Exception:
        traceback.print_exc()  # into launcher.log; the supervisor tries for itself
    finally:
        rec.after = None
        if reply is not None and not done:
            reply.close()
    for step in after:
        try:
            step()
        except FileNotFoundError:
            pass  # the job was removed meanwhile
        except OSError:
            traceback.print_exc()
    # Last: the supervisor finishes status.json (jobdir.write_final), then exits: the job's
    # end is durable and its cgroup gone once it has.
    try:
        chan.send(ACK_RECORDED if done else ACK_DECLINED)
    except OSError:
        pass


def main() -> None:
    """Entry point of the launcher: ``python -c ... FD``, its configuration (JSON) on stdin."""
    conf = sys.stdin.read()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # what it starts gets no stdin
    os.close(null)
    serve(socket.socket(fileno=int(sys.argv[1])), Recorder(_backend(conf)), conf)


def _backend(conf: str) -> CgroupBackend:
    """The engine's cgroup backend, from its configuration as JSON."""
    c = json.loads(conf)
    clients = ClientLimits.from_dict(c.get("clients") or {})
    cg = backend(c["version"], Path(c["root"]), c["parent"], clients)
    cg.setup()
    return cg


# --------------------------------------------------------------------------- supervisor's end


def record_main() -> None:
    """A supervisor of an earlier release whose launcher is gone records its job's end here:
    ``python -I -c RECORDER CONF DIR REPORT [REPLY_FD]``."""
    rec = Recorder(_backend(sys.argv[1]))
    reply = socket.socket(fileno=int(sys.argv[4])) if len(sys.argv) > 4 else None
    jdir = Path(sys.argv[2])
    if not (jdir / STATUS_FILE).exists():  # else the launcher recorded it, then died
        record(jdir, rec, os.fsencode(sys.argv[3]), reply)


def record(jdir: Path, rec: Recorder, report: bytes, reply: socket.socket | None) -> None:
    """Record a job's end from its supervisor's ``EndReport``: the command ran and exited, or
    it could not start (the engine then awaits ``reply``)."""
    end = decode_end_report(report)
    if isinstance(end, Exited):
        rec.report(jdir, report)
        return
    _record_failure(jdir, rec, end.message(), reply)


def _record_failure(jdir: Path, rec: Recorder, error: str, reply: socket.socket | None) -> None:
    """A job that never ran: its end recorded, then the engine answered."""
    rec.failed(jdir, error)
    if reply is not None:
        _reply(reply, encode_start_reply(StartReply(False, error=error)))


def _reply(reply: socket.socket, data: bytes, fds: Sequence[int] = ()) -> None:
    try:
        socket.send_fds(reply, [data], fds)
    except OSError:
        pass  # the engine went away; the job is recorded on disk all the same
    reply.close()


if __name__ == "__main__":
    main()
