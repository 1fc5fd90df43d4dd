"""The fork server and what it forks: a supervisor per job, which forks the job's init.

The fork server is a fresh, single-threaded interpreter started once per engine, so forking is
safe even when the engine's process has threads (an asyncio server, a gRPC library). For each
request it forks a *supervisor*, in a session of its own, that outlives both the fork server and
the engine: it holds the job's output pipes, writes the log, and records the final status, as
containerd-shim and conmon do.

    supervisor (host namespaces, outside the job cgroup)
      └─ init: PID 1 of new PID/mount/net/UTS/IPC namespaces; reaps, forwards signals
           └─ the command: joins the job cgroup, drops privileges, then execs

Messages: engine -> fork server: one SEQPACKET datagram of JSON with the reply socket attached;
supervisor -> engine: one datagram of JSON on that socket, with pidfds of itself and of init.
init -> supervisor: short lines on a pipe ("S <pid>", "F <stage> <errno> <target>", "X <status>").
"""

from __future__ import annotations

import errno
import fcntl
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

from . import sandbox
from .cgroups import CgroupBackend, ResolvedLimits, backend
from .errors import CgroupError
from .logstore import HEADER, LogWriter
from .status import JobState, JobStatus, Usage

F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)

SPEC_FILE = "spec.json"
RUN_FILE = "run.json"
STATUS_FILE = "status.json"
LOG_FILE = "output.log"
STOP_FILE = "stop-requested"
RESERVE_FILE = "reserve"  # room kept for the final status should the disk fill up
RESERVE_SIZE = 16384


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


class _Spare:
    """A supervisor forked ahead of need, whose init has already built the job's namespaces:
    a request only has to hand it the job, which takes ~3 ms of forking and namespace set-up
    off each start."""

    def __init__(self, pid: int, chan: socket.socket, busy: int) -> None:
        self.pid, self.chan, self.busy = pid, chan, busy

    @classmethod
    def make(cls, server: socket.socket, cg: CgroupBackend) -> _Spare:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Closed by the supervisor once its job is running: the cue to build the next spare,
        # so that doing so does not compete with this job's start for the CPUs.
        busy_r, busy_w = os.pipe()
        pid = os.fork()
        if pid == 0:

            def spare() -> int:
                server.close()
                ours.close()
                os.close(busy_r)
                os.setsid()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                return spare_main(theirs, cg, busy_w)

            _child(spare)
        theirs.close()
        os.close(busy_w)
        return cls(pid, ours, busy_r)

    def hand(self, msg: bytes, reply_fd: int) -> bool:
        try:
            socket.send_fds(self.chan, [msg], [reply_fd])
            return True
        except OSError:
            return False
        finally:
            self.chan.close()


def serve(sock: socket.socket, cg: CgroupBackend) -> None:
    """Hand each request to a spare supervisor until the engine closes its end of ``sock``."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spare: _Spare | None = _Spare.make(sock, cg)
    starting = -1  # the busy pipe of the job last handed over, until it is running
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    while True:
        ready = {key.fd for key, _ in sel.select()}
        if starting in ready:
            sel.unregister(starting)
            os.close(starting)
            starting = -1
            if spare is None:
                spare = _Spare.make(sock, cg)
        if sock.fileno() not in ready:
            continue
        msg, fds, _flags, _addr = socket.recv_fds(sock, 65536, 1)
        if not msg:
            if spare is not None:
                spare.chan.close()  # the spare sees the end and exits with its init
            return
        if not fds:
            continue
        if spare is None or not spare.hand(msg, fds[0]):
            spare = _Spare.make(sock, cg)  # none ready, or it died (killed by hand?)
            if not spare.hand(msg, fds[0]):
                err = {"ok": False, "error": "the job's supervisor could not be started"}
                _reply(socket.socket(fileno=os.dup(fds[0])), err)
        os.close(fds[0])
        if starting >= 0:
            sel.unregister(starting)
            os.close(starting)
        starting = spare.busy
        sel.register(starting, selectors.EVENT_READ)
        spare = None


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


# --------------------------------------------------------------------------- supervisor


def spare_main(chan: socket.socket, cg: CgroupBackend, busy_w: int) -> int:
    """A spare supervisor: make the job's PID namespace and its init, then wait for a job."""
    rep_r, rep_w = os.pipe()
    to_init, init_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sandbox.unshare(sandbox.CLONE_NEWPID)
    init_pid = os.fork()
    if init_pid == 0:

        def init() -> int:
            chan.close()
            to_init.close()
            os.close(rep_r)
            os.close(busy_w)
            return run_init(init_end, rep_w, cg.root)

        _child(init)
    init_end.close()
    os.close(rep_w)
    init_pidfd = os.pidfd_open(init_pid)
    msg, fds, _flags, _addr = socket.recv_fds(chan, 65536, 1)
    chan.close()
    if not msg or not fds:
        to_init.close()  # init sees the end and exits
        os.waitpid(init_pid, 0)
        return 0
    jdir = Path(json.loads(msg)["dir"])
    req = json.loads((jdir / SPEC_FILE).read_bytes())
    supervise(req, socket.socket(fileno=fds[0]), cg, init_pid, init_pidfd, to_init, rep_r, busy_w)
    return 0


def make_reserve(jdir: Path) -> None:
    fd = os.open(jdir / RESERVE_FILE, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, RESERVE_SIZE)
    except OSError:
        pass  # no room even now: the status write below may fail, and the job is then lost
    finally:
        os.close(fd)


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


def _reply(reply: socket.socket, data: dict[str, Any], fds: Sequence[int] = ()) -> None:
    try:
        socket.send_fds(reply, [json.dumps(data).encode()], fds)
    except OSError:
        pass  # the engine went away; the job is recorded on disk all the same
    reply.close()


def supervise(
    req: dict[str, Any],
    reply: socket.socket,
    cg: CgroupBackend,
    init_pid: int,
    init_pidfd: int,
    to_init: socket.socket,
    rep_r: int,
    busy_w: int,
) -> None:
    """Run one job to its end: cgroup, output capture, final status."""
    jdir = Path(req["dir"])
    job_id: str = req["id"]
    base = {
        "id": job_id,
        "argv": tuple(req["argv"]),
        "owner": req.get("owner", ""),
        "created_at": req["created_at"],
        "limits": req["limits_public"],
    }
    log = LogWriter(str(jdir / LOG_FILE))
    make_reserve(jdir)
    reports = os.fdopen(rep_r, "rb", buffering=0)

    def fail(error: str, created: bool) -> None:
        os.close(busy_w)
        to_init.close()
        os.waitpid(init_pid, 0)
        os.close(init_pidfd)
        status = JobStatus(state=JobState.FAILED, error=error, ended_at=time.time(), **base)
        if created:
            try:
                cg.remove(job_id)
            except CgroupError:
                pass
        try:
            log.end(json.dumps(status.to_dict()).encode())
        except OSError:
            pass  # disk full: readers end on the status file instead
        log.close()
        write_json(jdir / STATUS_FILE, status.to_dict())
        _reply(reply, {"ok": False, "error": error})

    lim = req["limits"]
    try:
        cg.create(
            job_id,
            ResolvedLimits(
                lim["cpu_percent"],
                lim["memory_mb"],
                lim["pids"],
                lim["rbps"],
                lim["wbps"],
                tuple(lim["device"]) if lim["device"] else None,
            ),
        )
    except CgroupError as e:
        fail(str(e), created=False)
        return

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    for fd in (out_r, err_r):
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size: the default size still works
    job = {
        "dir": str(jdir),
        "hostname": req["hostname"],
        "procs": [os.path.relpath(p, cg.root) for p in cg.procs_files(job_id)],
    }
    try:
        socket.send_fds(to_init, [json.dumps(job).encode()], [out_w, err_w])
    except OSError:
        pass  # init is gone; its report (or its absence) says why
    for fd in (out_w, err_w):
        os.close(fd)
    to_init.close()
    first = reports.readline().decode().split()
    if not first or first[0] != "S":
        os.close(out_r)
        os.close(err_r)
        if first and first[0] == "F":
            stage, err, target = first[1], int(first[2]), " ".join(first[3:])
            fail(f"{stage} {target}: {os.strerror(err)}".replace(" - ", " "), created=True)
        else:
            fail("the job's init died before starting the command", created=True)
        return
    pid = int(first[1]) if len(first) > 1 and first[1].isdigit() else None
    started_at = time.time()
    self_pidfd = os.pidfd_open(os.getpid())
    _write_json(
        jdir / RUN_FILE,
        {"supervisor_pid": os.getpid(), "init_pid": init_pid, "pid": pid, "started_at": started_at},
    )
    _reply(
        reply,
        {"ok": True, "pid": pid, "started_at": started_at, "supervisor_pid": os.getpid()},
        [self_pidfd, init_pidfd],
    )
    os.close(self_pidfd)
    os.close(busy_w)

    capture = _Capture(log, int(req.get("output_cap") or 1 << 30), jdir / RESERVE_FILE)
    reported = _pump(capture, out_r, err_r, reports)
    os.waitpid(init_pid, 0)
    os.close(init_pidfd)
    # No report: init was SIGKILLed (a stop), and the kernel SIGKILLed all in its namespace.
    wstatus = signal.SIGKILL if reported is None else reported
    usage = cg.usage(job_id)
    oom = cg.oom_kills(job_id) > 0
    error = capture.cut
    try:
        cg.remove(job_id)
    except CgroupError as e:
        error = f"{error}; {e}" if error else str(e)
    stopped = (jdir / STOP_FILE).exists()
    status = JobStatus(
        state=JobState.STOPPED if stopped else JobState.EXITED,
        pid=pid,
        exit_code=os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else None,
        signal=os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else None,
        oom_killed=oom,
        stopped=stopped,
        error=error,
        output_truncated=capture.cut is not None,
        started_at=started_at,
        ended_at=time.time(),
        usage=Usage(
            cpu_seconds=usage.cpu_seconds,
            memory_peak_bytes=usage.memory_peak_bytes,
            io_read_bytes=usage.io_read_bytes,
            io_write_bytes=usage.io_write_bytes,
        ),
        **base,
    )
    try:
        log.end(json.dumps(status.to_dict()).encode())
    except OSError:
        pass  # disk full: followers end on the status file instead
    log.close()
    write_json(jdir / STATUS_FILE, status.to_dict())


class _Capture:
    """Moves output into the log until the cap or a write error; then marks the cut and
    drains the pipes into nowhere, so the job never blocks."""

    def __init__(self, log: LogWriter, cap: int, reserve: Path) -> None:
        self.log = log
        self.cap = cap
        self.reserve = reserve
        self.cut: str | None = None

    def take(self, stream: int, fd: int) -> bool:
        """Move what the pipe holds; False at its end."""
        if self.cut is None:
            room = self.cap - self.log.size - HEADER.size
            try:
                if room > 0:
                    return self.log.splice(stream, fd, min(room, PIPE_SIZE)) > 0
                self.cut = f"output cut at the {self.cap}-byte cap"
            except OSError as e:
                self.cut = f"output cut short: {e.strerror}"
                # The reserve makes room for the mark, the end frame and the status.
                self.reserve.unlink(missing_ok=True)
            try:
                self.log.truncate_mark()
            except OSError:
                pass
        try:
            return len(os.read(fd, PIPE_SIZE)) > 0
        except OSError:
            return False


def _pump(capture: _Capture, out_r: int, err_r: int, reports: Any) -> int | None:
    """Copy output into the log until both pipes close; return the command's wait status."""
    sel = selectors.DefaultSelector()
    sel.register(out_r, selectors.EVENT_READ, 1)
    sel.register(err_r, selectors.EVENT_READ, 2)
    sel.register(reports.fileno(), selectors.EVENT_READ, 0)
    open_pipes = 2
    wstatus: int | None = None
    while open_pipes or sel.get_map().get(reports.fileno()) is not None:
        for key, _ in sel.select():
            fd = key.fd
            if key.data == 0:
                line = reports.readline().decode().split()
                if line and line[0] == "X":
                    wstatus = int(line[1])
                else:
                    sel.unregister(fd)
                continue
            if not capture.take(key.data, fd):
                sel.unregister(fd)
                os.close(fd)
                open_pipes -= 1
    reports.close()
    sel.close()
    return wstatus


# --------------------------------------------------------------------------- init (PID 1)


def run_init(chan: socket.socket, rep_w: int, cgroup_root: Path) -> int:
    """PID 1 of the job: build the namespaces, wait for the job, start the command, reap."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    # If the supervisor dies, nothing records this job: take the whole namespace down with it.
    sandbox.prctl(sandbox.PR_SET_PDEATHSIG, signal.SIGKILL)
    # Opened now: the job's own /proc and /sys hide the host's (and its cgroupfs) once built.
    host_proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    cgroups_fd = os.open(cgroup_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sandbox.enter_job_namespaces()
    except OSError as e:
        os.write(rep_w, f"F namespaces {e.errno} -\n".encode())
        return 1
    msg, fds, _flags, _addr = socket.recv_fds(chan, 65536, 2)
    chan.close()
    if not msg or len(fds) != 2:
        return 0  # a spare that was never used
    job = json.loads(msg)
    out_w, err_w = fds
    req = json.loads((Path(job["dir"]) / SPEC_FILE).read_bytes())
    try:
        socket.sethostname(job["hostname"])
        procs = [os.open(p, os.O_WRONLY | os.O_CLOEXEC, dir_fd=cgroups_fd) for p in job["procs"]]
    except OSError as e:
        os.write(rep_w, f"F cgroup {e.errno} -\n".encode())
        return 1
    os.close(cgroups_fd)
    ex_r, ex_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(ex_r)
            os.close(rep_w)
            os.close(host_proc)
            _exec_command(req, procs, out_w, err_w, ex_w)
        finally:
            os._exit(127)
    for fd in (ex_w, out_w, err_w, *procs):
        os.close(fd)
    host_pid = _host_pid_of_child(host_proc)
    os.close(host_proc)
    failure = os.read(ex_r, 4096)
    os.close(ex_r)
    if failure:
        os.waitpid(child, 0)
        os.write(rep_w, b"F " + failure + b"\n")
        return 0

    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(child, sig)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    os.write(rep_w, f"S {host_pid or '-'}\n".encode())
    while True:
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            return 0
        if pid == child:
            os.write(rep_w, f"X {wstatus}\n".encode())
            return 0


def _host_pid_of_child(host_proc: int) -> int | None:
    """The command's pid as the host sees it, read through the host's /proc (opened before
    ours was mounted over it) while the command cannot have been reaped yet."""
    try:
        me = os.readlink("self", dir_fd=host_proc)
        fd = os.open(f"{me}/task/{me}/children", os.O_RDONLY, dir_fd=host_proc)
        try:
            text = os.read(fd, 4096).decode()
        finally:
            os.close(fd)
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _exec_command(req: dict[str, Any], procs: list[int], out_w: int, err_w: int, ex_w: int) -> None:
    """In the command's process: join the cgroup, drop privileges, exec. Never returns."""
    stage, target = "cgroup", "-"
    try:
        for fd in procs:
            os.write(fd, b"0")
            os.close(fd)
        stage, target = "setup", "-"
        # exec resets handled signals but keeps ignored ones (Python ignores SIGPIPE and
        # SIGXFSZ; the engine's caller may ignore others): a command starts with the defaults.
        for sig in range(1, signal.NSIG):
            if signal.getsignal(sig) == signal.SIG_IGN:
                try:
                    signal.signal(sig, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass  # 32 and 33 belong to glibc, which refuses to change them
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.setsid()
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        for fd in (null, out_w, err_w):
            if fd > 2:
                os.close(fd)
        uid, gid = req["uid"], req["gid"]
        if gid is not None:
            stage, target = "user", str(uid)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        sandbox.prctl(sandbox.PR_SET_NO_NEW_PRIVS, 1)
        stage, target = "chdir", req["cwd"]
        os.chdir(req["cwd"])
        stage, target = "exec", req["argv"][0]
        os.execvpe(req["argv"][0], req["argv"], req["env"])
    except OSError as e:
        code = e.errno or errno.EIO
        os.write(ex_w, f"{stage} {code} {_one_line(target)}".encode())
    except BaseException:
        os.write(ex_w, f"{stage} {errno.EIO} {_one_line(target)}".encode())


def _one_line(text: str) -> str:
    return text.replace("\n", " ").encode("utf-8", "replace").decode()[:200]


if __name__ == "__main__":
    main()
