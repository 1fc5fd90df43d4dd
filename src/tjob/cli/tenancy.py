"""tjobs' tenant flags (README: security model): a uid per client, each client's cgroup
ceilings, and the quotas on what the server stores for one client."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from tjob.cgroups.clients import ClientLimits
from tjob.cli import flags
from tjob.errors import InvalidSpec
from tjob.tenants import DEFAULT_RANGE, check_free, parse_range
from tjob.units import MIB, size_text

DEFAULT_CLIENT_JOBS = 10_000
DEFAULT_CLIENT_DISK = 10 << 30
PID_MAX_SHARE = 4  # --client-pids default: a quarter of the host's pid_max


@dataclass(frozen=True)
class Tenancy:
    """What the tenant flags decided: the engine's ``uid_range`` and ``clients``, the quotas."""

    uid_range: tuple[int, int] | None
    clients: ClientLimits
    client_jobs: int | None
    client_disk: int | None


def add_flags(p: argparse.ArgumentParser, flag: Callable[..., None]) -> None:
    first, last = DEFAULT_RANGE
    flag(
        p,
        "uid-range",
        dest="uid_range",
        default=None,
        metavar="FIRST-LAST",
        help="each client's jobs run as a uid and gid of its own from this range, allocated "
        "once and kept in the state dir; no account may use it "
        f"(default {first}-{last}, systemd's dynamic range)",
    )
    flag(
        p,
        "client-pids",
        dest="client_pids",
        type=flags.count(1 << 22),
        default=None,
        metavar="N",
        help="most processes and threads of one client's jobs together, also its jobs' "
        f"RLIMIT_NPROC (default pid_max/{PID_MAX_SHARE})",
    )
    flag(
        p,
        "client-mem",
        dest="client_mem",
        type=flags.size(MIB),
        default=None,
        metavar="MB",
        help="most memory of one client's jobs together, in MB or 4G (default: none)",
    )
    flag(
        p,
        "client-cpu",
        dest="client_cpu",
        type=flags.count(100 * 1024),
        default=None,
        metavar="PERCENT",
        help="most CPU of one client's jobs together, in percent of one CPU (default: none; "
        "clients always share the CPU equally when it is busy)",
    )
    flag(
        p,
        "client-jobs",
        dest="client_jobs",
        type=flags.count(1 << 30),
        default=DEFAULT_CLIENT_JOBS,
        metavar="N",
        help=f"most stored jobs (running or finished) per client; past it runs are refused "
        f"(default {DEFAULT_CLIENT_JOBS})",
    )
    flag(
        p,
        "client-disk",
        dest="client_disk",
        type=flags.size(minimum=4096),
        default=DEFAULT_CLIENT_DISK,
        metavar="SIZE",
        help="most disk one client's stored jobs (output and files) take; past it runs are "
        f"refused (default {size_text(DEFAULT_CLIENT_DISK)})",
    )


def decide(args: argparse.Namespace, job_user: str | int | None) -> Tenancy:
    """The flags' values; raise :class:`InvalidSpec` with a one-line reason."""
    if job_user is not None and args.uid_range is not None:
        raise InvalidSpec(
            "--job-user and --uid-range exclude each other (one account, or one per client)"
        )
    first, last = DEFAULT_RANGE
    uid_range = None if job_user is not None else parse_range(args.uid_range or f"{first}-{last}")
    if uid_range is not None:
        check_free(*uid_range)  # before anything starts (the engine checks again)
    pids = args.client_pids
    if pids is None:
        with open("/proc/sys/kernel/pid_max") as f:
            pids = max(1, int(f.read()) // PID_MAX_SHARE)
    clients = ClientLimits(pids=pids, memory_mb=args.client_mem, cpu_percent=args.client_cpu)
    return Tenancy(uid_range, clients, args.client_jobs, args.client_disk)


def describe(tenancy: Tenancy) -> str:
    """The client ceilings and quotas, for the start-up log."""
    c = tenancy.clients

    def shown(v: int | None, unit: str = "") -> str:
        return "none" if v is None else f"{v}{unit}"

    disk = "none" if tenancy.client_disk is None else size_text(tenancy.client_disk)
    return (
        f"per client: pids {shown(c.pids)}, mem {shown(c.memory_mb, 'MB')}, "
        f"cpu {shown(c.cpu_percent, '%')} (an equal share when busy); "
        f"stored jobs {shown(tenancy.client_jobs)}, disk {disk}"
    )


def job_account(tenancy: Tenancy, job_user: str | int | None) -> str:
    """How jobs run, for the start-up log line."""
    if tenancy.uid_range is None:
        return f"{job_user} (--job-user: one account for all clients)"
    first, last = tenancy.uid_range
    return f"a uid per client from {first}-{last}"
