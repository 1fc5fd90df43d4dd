"""What the engine reads of processes: pidfds and ``/proc``.

A job's supervisor and init are known by pidfds (a pid may be recycled; a pidfd may not);
re-adoption checks in ``/proc`` that a recorded pid is still the process it was.
"""

from __future__ import annotations

import os
import select
from typing import Any


def readable(fd: int) -> bool:
    """True once the process behind a pidfd has exited (no waiting). poll, not select:
    a server with many connections has descriptors above select's 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def child_pidfd(run: dict[str, Any], key: str) -> int:
    """A pidfd of the supervisor's child recorded under ``key``, or -1. A pid whose parent is
    the (live) supervisor cannot have been recycled: the supervisor has not reaped it."""
    try:
        fd = os.pidfd_open(run[key])
    except (OSError, KeyError):
        return -1
    try:
        with open(f"/proc/{run[key]}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        ppid = -1
    if ppid != run["supervisor_pid"]:
        os.close(fd)
        return -1
    return fd


def is_supervisor(pid: int) -> bool:
    # Its argv holds the fallback recorder's source, which names the launcher's module (or,
    # for a supervisor started before the launcher was renamed, the fork server's).
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
            return b"tjob.launcher" in cmdline or b"tjob.spawner" in cmdline
    except OSError:
        return False


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
