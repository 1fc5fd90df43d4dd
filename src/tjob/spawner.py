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
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from . import sandbox
from .cgroups import CgroupBackend, ResolvedLimits, backend
from .errors import CgroupError
from .logstore import LogWriter
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


def serve(sock: socket.socket) -> None:
    """Fork a supervisor per request until the engine closes its end of ``sock``."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 1)
        except InterruptedError:
            continue
        if not msg:
            return
        if not fds:
            continue
        reply_fd = fds[0]
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                sock.close()
                os.setsid()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                jdir = Path(json.loads(msg)["dir"])
                supervise(json.loads((jdir / SPEC_FILE).read_bytes()), reply_fd)
                code = 0
            except BaseException:
                traceback.print_exc()  # into the engine's spawner.log
            finally:
                os._exit(code)
        os.close(reply_fd)


def main() -> None:
    # Import both backends once here, not in every forked supervisor.
    from .cgroups import v1, v2  # noqa: F401

    serve(socket.socket(fileno=int(sys.argv[1])))


# --------------------------------------------------------------------------- supervisor


def backend_for(req: dict[str, Any]) -> CgroupBackend:
    c = req["cgroup"]
    cg = backend(c["version"], Path(c["root"]), c["parent"])
    cg.setup()
    return cg


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


def _reply(reply: socket.socket, data: dict[str, Any], fds: list[int] = []) -> None:  # noqa: B006
    try:
        socket.send_fds(reply, [json.dumps(data).encode()], fds)
    except OSError:
        pass  # the engine went away; the job is recorded on disk all the same
    reply.close()


def supervise(req: dict[str, Any], reply_fd: int) -> None:
    reply = socket.socket(fileno=reply_fd)
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

    def fail(error: str, cg: CgroupBackend | None) -> None:
        status = JobStatus(state=JobState.FAILED, error=error, ended_at=time.time(), **base)
        if cg is not None:
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

    try:
        cg = backend_for(req)
        lim = req["limits"]
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
        fail(str(e), None)
        return

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    rep_r, rep_w = os.pipe()
    for fd in (out_r, err_r):
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size: the default size still works
    try:
        sandbox.unshare(sandbox.CLONE_NEWPID)
        init_pid = os.fork()
    except OSError as e:
        for fd in (out_r, out_w, err_r, err_w, rep_r, rep_w):
            os.close(fd)
        fail(f"cannot create the job's namespaces: {e.strerror}", cg)
        return
    if init_pid == 0:
        code = 1
        try:
            reply.close()
            log.close()
            os.close(out_r)
            os.close(err_r)
            os.close(rep_r)
            code = run_init(req, cg.procs_files(job_id), out_w, err_w, rep_w)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    for fd in (out_w, err_w, rep_w):
        os.close(fd)
    init_pidfd = os.pidfd_open(init_pid)
    reports = os.fdopen(rep_r, "rb", buffering=0)
    first = reports.readline().decode().split()
    if not first or first[0] != "S":
        _, wstatus = os.waitpid(init_pid, 0)
        os.close(out_r)
        os.close(err_r)
        os.close(init_pidfd)
        if first and first[0] == "F":
            stage, err, target = first[1], int(first[2]), " ".join(first[3:])
            fail(f"{stage} {target}: {os.strerror(err)}".replace("  ", " "), cg)
        else:
            fail(f"the job's init died before starting the command (wait status {wstatus})", cg)
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
    """Writes output frames until the cap or a write error; then marks the cut and drops."""

    def __init__(self, log: LogWriter, cap: int, reserve: Path) -> None:
        self.log = log
        self.cap = cap
        self.reserve = reserve
        self.cut: str | None = None

    def write(self, stream: int, data: bytes) -> None:
        if self.cut is not None:
            return
        room = self.cap - self.log.size
        try:
            if len(data) + 8 <= room:
                self.log.write(stream, data)
                return
            if room > 8:
                self.log.write(stream, data[: room - 8])
            self.cut = f"output cut at the {self.cap}-byte cap"
        except OSError as e:
            self.cut = f"output cut short: {e.strerror}"
            # The reserve makes room for the mark, the end frame and the status.
            self.reserve.unlink(missing_ok=True)
        try:
            self.log.truncate_mark()
        except OSError:
            pass


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
            try:
                data = os.read(fd, PIPE_SIZE)
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                data = b""
            if data:
                capture.write(key.data, data)
            else:
                sel.unregister(fd)
                os.close(fd)
                open_pipes -= 1
    reports.close()
    sel.close()
    return wstatus


# --------------------------------------------------------------------------- init (PID 1)


def run_init(
    req: dict[str, Any], procs_files: list[str], out_w: int, err_w: int, rep_w: int
) -> int:
    """PID 1 of the job: set up the namespaces, start the command, reap, report its end."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    # If the supervisor dies, nothing records this job: take the whole namespace down with it.
    sandbox.prctl(sandbox.PR_SET_PDEATHSIG, signal.SIGKILL)
    host_proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    # Opened now: the job's own /sys hides the cgroupfs once the namespaces are set up.
    procs = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in procs_files]
    try:
        sandbox.enter_job_namespaces(req["hostname"])
    except OSError as e:
        os.write(rep_w, f"F namespaces {e.errno} -\n".encode())
        return 1
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
        # Python ignores SIGPIPE and friends; an exec'd command must start with defaults.
        for sig in range(1, signal.NSIG):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError, RuntimeError):
                pass
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
