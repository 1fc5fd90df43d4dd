"""``tjobs``: the API server (``sudo tjobs``), and ``tjobs certs`` to create its certificates.

Flags keep the Go prototype's single-dash spellings (``-mnt 254:0``) beside the GNU ones
(``--mnt 254:0``). The limit flags are the server's caps and also the defaults of jobs that ask
for none. Start-up refusals are one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import logging
    import ssl

    from tjob.api.server import Policy
    from tjob.engine import Engine

PROG = "tjobs"
DEFAULT_HOST = "localhost:8080"
EXIT_REFUSED = 1


class Refusal(Exception):
    """A start-up problem the operator can fix; printed as one line."""


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs: object) -> None:
    """Declare ``--name`` and the seed's ``-name``."""
    parser.add_argument(f"--{name}", f"-{name}", **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
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
    _flag(p, "cpu", type=int, default=20, help="max cpu percentage of one CPU (default 20)")
    _flag(p, "mem", type=int, default=20, help="max memory in MB, swap included (default 20)")
    _flag(p, "rbps", type=int, default=20971520, help="max reads in bytes/sec (default 20971520)")
    _flag(p, "wbps", type=int, default=20971520, help="max writes in bytes/sec (default 20971520)")
    _flag(p, "pids", type=int, default=512, help="max processes per job (default 512)")
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
        default="nobody",
        metavar="USER",
        help="account jobs run as (default nobody; root only when asked)",
    )
    _flag(
        p,
        "output-cap",
        dest="output_cap",
        type=_size,
        default=1 << 30,
        metavar="SIZE",
        help="most output kept per job, e.g. 512M or 2G; past it the job runs on and readers "
        "see a truncation mark (default 1G)",
    )
    _flag(
        p,
        "retention",
        type=_duration,
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
    return p


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _duration(text: str) -> float:
    """``90`` / ``90s`` / ``15m`` / ``12h`` / ``7d`` / ``2w`` -> seconds."""
    t = text.strip().lower()
    unit = t[-1:] if t[-1:].isalpha() else ""
    try:
        value = float(t[: len(t) - len(unit)]) * _UNITS[unit]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 12h or 7d") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _size(text: str) -> int:
    """``1048576`` / ``512M`` / ``2G`` -> bytes."""
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = t[-1:] if t[-1:].isalpha() else ""
    try:
        value = int(float(t[: len(t) - len(unit)]) * _SIZES[unit])
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 512M or 1G") from None
    if value < 4096:
        raise argparse.ArgumentTypeError(f"{text!r} is too small (at least 4K)")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["certs"]:
        return _certs(args_list[1:])
    args = build_parser().parse_args(args_list)
    try:
        return _serve(args)
    except Refusal as err:
        _say(str(err))
        return EXIT_REFUSED
    except KeyboardInterrupt:  # Ctrl+C during start-up, before the signal handlers exist
        return 130


def _certs(argv: list[str]) -> int:
    from tjob.cli import certs

    parser = argparse.ArgumentParser(prog=f"{PROG} certs", allow_abbrev=False)
    certs.add_arguments(parser)
    return certs.run(parser.parse_args(argv))


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _fail(message: str) -> NoReturn:
    raise Refusal(message)


# --- start-up -----------------------------------------------------------------------------------


def parse_host(text: str) -> tuple[str | None, int]:
    """``localhost:8080`` / ``[::1]:8080`` / ``:8080`` -> (host or None for all, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        _fail(f"--host {text!r} is not HOST:PORT (for example localhost:8080)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or None, int(port)


def _policy(args: argparse.Namespace) -> Policy:
    from tjob.api.server import Policy
    from tjob.errors import InvalidSpec
    from tjob.spec import Limits

    caps = Limits(
        cpu_percent=args.cpu, memory_mb=args.mem, pids=args.pids, rbps=args.rbps, wbps=args.wbps
    )
    try:
        caps.validate()
    except InvalidSpec as err:
        _fail(f"bad limit flag: {err}")
    if args.max_jobs < 1:
        _fail(f"--max-jobs must be at least 1, not {args.max_jobs}")
    return Policy(
        caps=caps,
        admins=frozenset(args.admin),
        job_user=_job_user(args.job_user),
        max_jobs=args.max_jobs,
    )


def _job_user(name: str) -> str | int:
    import pwd

    try:
        if name.isdigit():
            pwd.getpwuid(int(name))
            return int(name)
        pwd.getpwnam(name)
    except KeyError:
        _fail(f"--job-user {name!r}: no such user on this host")
    return name


def _tls(args: argparse.Namespace) -> ssl.SSLContext:
    from tjob.api import tls
    from tjob.errors import TjobError

    for path, what in (
        (args.ca, "CA certificate"),
        (args.cert, "server certificate"),
        (args.key, "server key"),
    ):
        if not os.path.exists(path):
            _fail(f"{what} {path} not found (create the files with `tjobs certs`)")
    try:
        return tls.server_context(args.ca, args.cert, args.key)
    except TjobError as err:
        _fail(str(err))


def _engine(args: argparse.Namespace, policy: Policy) -> Engine:
    from tjob.devices import check_block_device
    from tjob.engine import Engine
    from tjob.errors import TjobError

    try:
        if args.mnt is not None:
            check_block_device(args.mnt)
        # The jail hides the certificates' directories (the server's key) from every job.
        certs = {os.path.dirname(os.path.abspath(p)) for p in (args.ca, args.cert, args.key)}
        certs.discard("/")
        return Engine(
            args.state_dir,
            defaults=policy.caps,
            device=args.mnt,
            output_cap=args.output_cap,
            hide=[*sorted(certs), *args.hide],
            seccomp=_seccomp(args.seccomp),
        )
    except TjobError as err:
        _fail(f"cannot manage jobs: {err}")
    except OSError as err:
        _fail(f"cannot manage jobs in {args.state_dir}: {err.strerror or err}")


def _seccomp(flag: str | None) -> str:
    from tjob import jail

    return str(jail.DEFAULT_PROFILE) if flag is None else flag


def _serve(args: argparse.Namespace) -> int:
    parse_host(args.host)  # refuse a bad address before anything else
    policy = _policy(args)
    if os.geteuid() != 0:
        _fail("must run as root for cgroups and namespaces (sudo tjobs)")
    tls_ctx = _tls(args)

    import logging

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%Y/%m/%d %H:%M:%S",
    )
    # grpclib logs every client cancellation at INFO; those are routine here.
    logging.getLogger("grpclib").setLevel(logging.WARNING)

    # The engine (and its fork server) only once the cheap checks have passed.
    engine = _engine(args, policy)
    # Every connection is a descriptor: the usual soft limit of 1024 would let a thousand
    # stalled handshakes lock clients out. (After the fork server starts: jobs keep the usual.)
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import asyncio

        return asyncio.run(_run(engine, policy, tls_ctx, args))
    finally:
        engine.close(stop_jobs=args.stop_on_exit)


async def _run(
    engine: Engine, policy: Policy, tls_ctx: ssl.SSLContext, args: argparse.Namespace
) -> int:
    import asyncio
    import errno
    import logging
    import signal

    from tjob.api.server import ApiServer

    log = logging.getLogger("tjobs")
    host, port = parse_host(args.host)
    api = ApiServer(engine, policy, tls_ctx)
    try:
        await api.start(host, port)
    except OSError as err:
        why = "address already in use" if err.errno == errno.EADDRINUSE else err.strerror or err
        _fail(f"cannot listen on {args.host}: {why}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    caps = policy.caps
    log.info(
        "listen on %s (cgroup v%s, device %s; caps cpu %d%% mem %dMB pids %d rbps %d wbps %d; "
        "max %d running jobs per client; jobs run as %s; admins: %s)",
        args.host,
        engine.cgroup_version,
        engine.device or "none (no disk throttling)",
        caps.cpu_percent,
        caps.memory_mb,
        caps.pids,
        caps.rbps,
        caps.wbps,
        policy.max_jobs,
        policy.job_user,
        ", ".join(sorted(policy.admins)) or "none",
    )
    if args.seccomp == "unconfined":
        log.warning("jobs run without a seccomp filter (--seccomp unconfined)")
    elif args.seccomp is not None:
        log.info("jobs' seccomp profile: %s", args.seccomp)
    pruner = asyncio.create_task(_prune(engine, args.retention, log))
    await stop.wait()
    log.info("shutting down")
    pruner.cancel()
    await api.shutdown()
    running = sum(1 for j in engine.jobs() if not j.status().state.finished)
    if args.stop_on_exit:
        log.info("stopping %d running jobs (--stop-on-exit)", running)
    else:
        log.info("stopped; %d running jobs keep running (tjobs re-adopts them on restart)", running)
    return 0


async def _prune(engine: Engine, retention: float, log: logging.Logger) -> None:
    """Remove jobs past their retention now and then (at most hourly, at least as often as
    the retention itself)."""
    import asyncio

    while True:
        removed = await asyncio.to_thread(engine.prune, retention)
        if removed:
            log.info("removed %d finished jobs older than the retention", len(removed))
        await asyncio.sleep(min(retention, 3600.0))


if __name__ == "__main__":
    sys.exit(main())
