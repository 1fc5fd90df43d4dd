"""Kernel calls that isolate a job: namespaces, mounts, loopback, hostname, no_new_privs.

Python 3.11 has no ``os.unshare``, so these go through libc with ctypes. Each function raises
``OSError`` with the errno, so the caller can report which step failed.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REC = 16384
MS_PRIVATE = 1 << 18

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]


def _fail(what: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        raise _fail("unshare")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    src = source.encode() if source else None
    fs = fstype.encode() if fstype else None
    opts = data.encode() if data else None
    if _libc.mount(src, target.encode(), fs, flags, opts) != 0:
        raise _fail(f"mount {target}")


def prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        raise _fail("prctl")


def isolate_mounts() -> None:
    """Private mount tree (nothing propagates back to the host), then a /proc of this PID ns,
    a read-only /sys of this network namespace (which also hides the host's cgroupfs), and a
    /tmp and /dev/shm of the job's own, so jobs (all of one account) cannot reach each other's
    scratch files. Their pages count against the job's memory limit."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for scratch in ("/tmp", "/dev/shm"):
        if os.path.isdir(scratch):
            mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")


def loopback_up() -> None:
    """A new network namespace has only ``lo``, and it starts down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def allow_unprivileged_ping() -> None:
    """Let any group use ICMP echo sockets in this (job-only) network namespace."""
    try:
        with open("/proc/sys/net/ipv4/ping_group_range", "w") as f:
            f.write("0 2147483647")
    except OSError:
        pass  # best effort: ping as root still works with raw sockets


def enter_job_namespaces() -> None:
    """Run in the job's PID 1: new mount, network, UTS and IPC namespaces, set up for a job.

    Open anything needed from the host's /proc or /sys before this call."""
    unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC)
    isolate_mounts()
    loopback_up()
    allow_unprivileged_ping()
