"""What the engine reads of processes: pidfds and ``/proc``.

A job's supervisor and init are known by pidfds (a pid may be recycled; a pidfd may not);
re-adoption checks in ``/proc`` that a recorded pid is still the process it was.
"""

from __future__ import annotations

import os
import select
import signal

from .protocol import SUPERVISOR_ARGV, ZYGOTE_ARGV, RunInfo


def readable(fd: int, timeout: float = 0.0) -> bool:
    """True once the process behind a pidfd has exited (waiting up to ``timeout`` seconds).
    poll, not select: a server with many connections has descriptors above select's 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


def boot_time() -> float:
    """When the machine booted (``btime`` of /proc/stat, in seconds since the epoch)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("/proc/stat has no btime")


def init_pidfd(run: RunInfo) -> int:
    """A pidfd of the supervisor's init, or -1. A pid whose parent is the (live) supervisor
    cannot have been recycled: the supervisor has not reaped it."""
    try:
        fd = os.pidfd_open(run.init_pid)
    except OSError:
        return -1
    if parent_of(run.init_pid) != run.supervisor_pid:
        os.close(fd)
        return -1
    return fd


def parent_of(pid: int) -> int:
    """The parent pid of ``pid``, or -1 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def is_supervisor(pid: int, job_id: str, job_dir: str) -> bool:
    """Whether ``pid`` (from the job's run.json) is the supervisor of job ``job_id``.

    It must live in our PID namespace, which no process of a job (they are in the job's own)
    can be in, whatever it writes in its argv; and its command line must be one of:

    - the mark ``tjob-shim supervisor ID`` (protocol.SUPERVISOR_ARGV);
    - the fallback recorder it execs to record its job's end when the launcher is gone:
      ``python -I -c <...record_main()> CONF DIR REPORT``, for this job's directory;
    - a supervisor of a release before the mark: the zygote's argv it was forked with
      (``tjob-shim zygote CTL ROOT PYTHON <...record_main()> CONF``), so jobs running across
      an upgrade are adopted, not recorded lost.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
        same_ns = os.stat(f"/proc/{pid}/ns/pid").st_ino == os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return False
    if not same_ns:
        return False
    if words[:3] == [*SUPERVISOR_ARGV, job_id.encode()]:
        return True
    recorder = b"record_main()"
    if len(words) > 5 and words[1:3] == [b"-I", b"-c"] and recorder in words[3]:
        return words[5] == os.fsencode(job_dir)
    return len(words) > 5 and words[1] == ZYGOTE_ARGV[1] and recorder in words[5]


def children(pid: int) -> list[int]:
    """The live children of ``pid`` (for diagnostics; a scan of /proc where the kernel has no
    ``children`` file)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        pass
    except OSError:
        return []
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return kids


def supervisors() -> dict[str, int]:
    """Job id -> pid of every supervisor in our PID namespace that carries the mark
    ``tjob-shim supervisor ID`` (a scan of /proc: for jobs whose run.json is gone or damaged)."""
    found: dict[str, int] = {}
    prefix = b"\0".join(SUPERVISOR_ARGV) + b"\0"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if cmdline.startswith(prefix):
            job_id = cmdline[len(prefix) :].split(b"\0", 1)[0].decode(errors="replace")
            if job_id and is_supervisor(int(entry), job_id, ""):
                found[job_id] = int(entry)
    return found


LAUNCHER_MARK = b"--state-dir="  # the launcher's last argument: which state directory is its


def end_stale_launchers(state_dir: str) -> int:
    """Kill the launchers an earlier engine of ``state_dir`` left behind, and wait until they
    are gone; how many there were. A launcher outlives its engine only while stalled (it exits
    when the engine's end of its socket closes), and a stalled one may still hold a start the
    dead engine sent: once it is gone, no supervisor can take a job the new engine has not."""
    mark = LAUNCHER_MARK + os.fsencode(state_dir)
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                words = f.read().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        if words[-1] != mark or words[1:3] != [b"-I", b"-c"] or b"launcher" not in words[3]:
            continue
        try:
            fd = os.pidfd_open(int(entry))
        except OSError:
            continue
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            poller.poll(10_000)  # SIGKILL ends even a stopped process
            killed += 1
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)
    return killed
