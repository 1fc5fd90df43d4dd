"""``tjobs``' flags: the server's address and files, job defaults and caps, client limits,
the jail and the lifecycle settings (the flags of :mod:`tjob.cli.tenancy` and
:mod:`tjob.cli.ops` join them here).

Flags keep the Go prototype's single-dash spellings (``-mnt 254:0``) beside the GNU ones
(``--mnt 254:0``).
"""

from __future__ import annotations

import argparse

PROG = "tjobs"
DEFAULT_HOST = "localhost:8080"


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs: object) -> None:
    """Declare ``--name`` and the seed's ``-name``."""
    parser.add_argument(f"--{name}", f"-{name}", **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    from tjob.cli import flags
    from tjob.spec import DEFAULT_OUTPUT_CAP
    from tjob.units import size_text

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Serve the tjob gRPC API over mutual TLS 1.3 (run as root).",
        epilog="Certificates: `tjobs certs -h` creates the CA, server and client files in .tjob/.",
        allow_abbrev=False,
    )
    _flag(
        p,
        "host",
        default=DEFAULT_HOST,
        metavar="HOST:PORT",
        help=f"address to listen on (default {DEFAULT_HOST}; ':PORT' for every interface)",
    )
    _flag(p, "ca", default=".tjob/ca.crt", help="CA cert file (default .tjob/ca.crt)")
    _flag(p, "cert", default=".tjob/svc.crt", help="server cert file (default .tjob/svc.crt)")
    _flag(p, "key", default=".tjob/svc.key", help="server key file (default .tjob/svc.key)")
    _limit_flags(p)
    _flag(
        p,
        "mnt",
        metavar="MAJ:MIN",
        default=None,
        help="MAJ:MIN block device to throttle (default: the disk holding /, see lsblk)",
    )
    _flag(
        p,
        "state-dir",
        dest="state_dir",
        default="/var/lib/tjob",
        help="job records and logs (default /var/lib/tjob)",
    )
    _flag(
        p,
        "admin",
        action="append",
        default=[],
        metavar="NAME",
        help="client identity (certificate CN) that may see and control every job; repeatable",
    )
    _flag(
        p,
        "job-user",
        dest="job_user",
        default=None,
        metavar="USER",
        help="one account all clients' jobs run as (weaker: they can reach each other's "
        "files, sockets and per-uid limits); default: a uid per client (--uid-range)",
    )
    _flag(
        p,
        "output-cap",
        dest="output_cap",
        type=flags.size(minimum=4096),
        default=DEFAULT_OUTPUT_CAP,
        metavar="SIZE",
        help="most output kept per job, e.g. 512M or 2G; past it the job runs on and readers "
        f"see a truncation mark (default {size_text(DEFAULT_OUTPUT_CAP)})",
    )
    _flag(
        p,
        "retention",
        type=flags.duration(),
        default=7 * 86400,
        metavar="DURATION",
        help="remove finished jobs and their output this long after they end, e.g. 12h, 7d "
        "(default 7d)",
    )
    _flag(
        p,
        "stop-on-exit",
        dest="stop_on_exit",
        action="store_true",
        help="stop every running job when tjobs shuts down (default: they keep running and a "
        "restarted tjobs re-adopts them)",
    )
    _flag(
        p,
        "max-jobs",
        dest="max_jobs",
        type=int,
        default=64,
        metavar="N",
        help="most running jobs per client identity (default 64)",
    )
    _client_limit_flags(p)
    _jail_flags(p)
    _lifecycle_flags(p)
    from tjob.cli import tenancy

    tenancy.add_flags(p, _flag)
    from tjob.cli import ops

    ops.add_flags(p, _flag)
    return p


def _jail_flags(p: argparse.ArgumentParser) -> None:
    """What jobs may see of the host and which system calls they may make (README: security)."""
    _flag(
        p,
        "hide",
        action="append",
        default=[],
        metavar="PATH",
        help="host path jobs must not see (an empty directory or file is shown instead); "
        "repeatable, adds to the defaults: /home /root /boot /srv /mnt /media /etc/tjob "
        "/var/lib/tjob, the state dir and the certificates' directories",
    )
    _flag(
        p,
        "seccomp",
        default=None,
        metavar="PATH",
        help="seccomp profile for jobs, in Docker's JSON format (default: tjob's own, "
        "src/tjob/seccomp.json); 'unconfined' for none",
    )
    _flag(
        p,
        "volume",
        action="append",
        default=[],
        metavar="NAME=PATH[:ro|:shared]",
        help="a host directory jobs may mount by name (tjob run -v NAME:/TARGET); repeatable. "
        "Writable with a directory of its own per client (PATH/<client>, owned by the job's "
        "uid), :ro read-only, :shared writable and shared by all clients",
    )


def _lifecycle_flags(p: argparse.ArgumentParser) -> None:
    """Caps apart from the defaults, and timeouts (issue 15)."""
    from tjob.cli import flags
    from tjob.units import MIB

    for name, kind, what in (
        ("max-cpu", flags.count(1 << 20), "percent of one CPU (default: all CPUs)"),
        ("max-mem", flags.size(MIB), "memory in MB or 64G (default: the host's memory)"),
        ("max-pids", flags.count(1 << 22), "processes (default: the kernel's pid_max)"),
        ("max-rbps", flags.size(), "disk reads per second (default: no cap)"),
        ("max-wbps", flags.size(), "disk writes per second (default: no cap)"),
    ):
        _flag(
            p,
            name,
            dest=name.replace("-", "_"),
            type=kind,
            default=None,
            help=f"the most a job may ask for: {what}",
        )
    _flag(
        p,
        "max-running",
        dest="max_running",
        type=flags.count(1 << 20),
        default=None,
        metavar="N",
        help="most jobs running at once, all clients together (default: no limit)",
    )
    _flag(
        p,
        "max-queued",
        dest="max_queued",
        type=flags.count(1 << 20),
        default=1000,
        metavar="N",
        help="most queued jobs per client (default 1000)",
    )
    _flag(
        p,
        "no-fsync",
        dest="no_fsync",
        action="store_true",
        help="answer a Run without waiting on the disk: faster starts; a job's record survives "
        "a crash of tjobs, not a power cut (default: every answer is on the disk first)",
    )
    _flag(
        p,
        "queue",
        action="store_true",
        help="over a running-job limit, queue a job rather than refuse it (as tjob run --queue)",
    )
    for name, what in (
        ("max-timeout", "the longest timeout a job may ask for; jobs asking none get it"),
        ("default-timeout", "the timeout of jobs that ask for none (default: none)"),
    ):
        _flag(
            p,
            name,
            dest=name.replace("-", "_"),
            type=flags.duration(),
            default=None,
            metavar="DURATION",
            help=f"{what}, e.g. 30m, 12h",
        )


def _limit_flags(p: argparse.ArgumentParser) -> None:
    """The job limits: the server's caps, and the defaults of jobs that ask for none."""
    from tjob.cli import flags
    from tjob.spec import DEFAULT_LIMITS
    from tjob.units import MIB

    d = DEFAULT_LIMITS
    _flag(
        p,
        "cpu",
        type=int,
        default=d.cpu_percent,
        help=f"max cpu percentage of one CPU (default {d.cpu_percent})",
    )
    _flag(
        p,
        "mem",
        type=flags.size(MIB),
        default=d.memory_mb,
        metavar="MB",
        help=f"max memory in MB (or 512M, 1G), swap included (default {d.memory_mb})",
    )
    for name, what, rate in (("rbps", "reads", d.rbps), ("wbps", "writes", d.wbps)):
        text = f"max {what} in bytes/sec (or 20M; default {rate})"
        _flag(p, name, type=flags.size(), default=rate, metavar="BYTES", help=text)
    _flag(p, "pids", type=int, default=d.pids, help=f"max processes per job (default {d.pids})")


def _client_limit_flags(p: argparse.ArgumentParser) -> None:
    """What one client may hold of the server (README: security model); defaults are
    ServerLimits'."""
    from tjob.api.limits import ServerLimits
    from tjob.cli import flags

    d = ServerLimits()
    for name, default, what in (
        ("max-conns", d.max_conns, "connections open at once, all clients together"),
        ("client-conns", d.client_conns, "connections open at once per client"),
        ("client-calls", d.client_calls, "calls in flight per client"),
        ("client-follows", d.client_follows, "Logs calls in flight per client"),
        ("max-follows", d.max_follows, "Logs calls in flight, all clients together"),
        ("client-stats", d.client_stats, "Stats calls in flight per client"),
    ):
        _flag(
            p,
            name,
            dest=name.replace("-", "_"),
            type=flags.count(1 << 20),
            default=default,
            metavar="N",
            help=f"most {what} (default {default})",
        )
    _flag(
        p,
        "client-rate",
        dest="client_rate",
        type=float,
        default=d.client_rate,
        metavar="PER_SEC",
        help=f"calls per second per client, sustained; twice that at once "
        f"(default {d.client_rate:g})",
    )
    _flag(
        p,
        "stall-timeout",
        dest="stall_timeout",
        type=flags.duration(),
        default=d.stall_timeout,
        metavar="DURATION",
        help=f"reset a Logs stream whose client reads nothing for this long "
        f"(default {d.stall_timeout:g}s)",
    )
