"""``tjobs``: the API server (``sudo tjobs``), and ``tjobs certs`` to create its certificates.

Flags keep the Go prototype's single-dash spellings (``-mnt 254:0``) beside the GNU ones
(``--mnt 254:0``). The limit flags are the defaults of jobs that ask for none; the ``--max-*``
flags are the caps a job may ask up to (default: what the host has). Start-up refusals are
one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import logging
    import ssl

    from tjob.api.policy import Policy
    from tjob.api.tls import ServerFiles
    from tjob.cli import service
    from tjob.engine import Engine
    from tjob.spec import Limits
    from tjob.volumes import Declared

from tjob.cli.tjobsargs import PROG, build_parser

EXIT_REFUSED = 1


class Refusal(Exception):
    """A start-up problem the operator can fix; printed as one line."""


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["certs"]:
        return _certs(args_list[1:])
    if args_list[:1] in (["node"], ["gateway"]):  # the cluster (issue 18): tjob[cluster]
        from tjob.cluster import cli

        return cli.main(args_list[0], args_list[1:])
    from tjob.cli import config, service

    parser = build_parser()
    service.add_flags(parser)
    if args_list[:1] == ["config"]:
        return config.command(parser, args_list[1:])
    if args_list[:1] == ["install-service"]:
        return _install_service(args_list[1:])
    service.claim_notify_socket()
    try:
        args, path = config.parse(parser, args_list)
        args.reloader = service.Reloader(parser, args_list, path, args)
        return _serve(args)
    except config.ConfigError as err:
        _say(str(err))
        return EXIT_REFUSED
    except Refusal as err:
        _say(str(err))
        return EXIT_REFUSED
    except KeyboardInterrupt:  # Ctrl+C during start-up, before the signal handlers exist
        return 130


def _certs(argv: list[str]) -> int:
    from tjob.cli import certs

    if argv[:1] in (["list"], ["revoke"]):
        return certs.manage(argv)
    parser = argparse.ArgumentParser(prog=f"{PROG} certs", allow_abbrev=False)
    certs.add_arguments(parser)
    return certs.run(parser.parse_args(argv))


def _install_service(argv: list[str]) -> int:
    from tjob.cli import install

    parser = argparse.ArgumentParser(prog=f"{PROG} install-service", allow_abbrev=False)
    install.add_arguments(parser)
    return install.run(parser.parse_args(argv))


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
    from tjob.api.limits import ServerLimits
    from tjob.api.policy import Policy
    from tjob.errors import InvalidSpec
    from tjob.spec import Limits

    defaults = Limits(
        cpu_percent=args.cpu, memory_mb=args.mem, pids=args.pids, rbps=args.rbps, wbps=args.wbps
    )
    caps = _caps(args)
    try:
        defaults.validate()
        caps.validate()
    except InvalidSpec as err:
        _fail(f"bad limit flag: {err}")
    for over in defaults.exceeding(caps):
        _fail(f"a default is above its cap: {over.replace('server', 'flag')}")
    if args.max_timeout and args.default_timeout and args.default_timeout > args.max_timeout:
        _fail("--default-timeout is above --max-timeout")
    if args.max_jobs < 1:
        _fail(f"--max-jobs must be at least 1, not {args.max_jobs}")
    if not args.client_rate > 0:
        _fail(f"--client-rate must be above 0, not {args.client_rate}")
    limits = ServerLimits(
        max_conns=args.max_conns,
        client_conns=args.client_conns,
        client_calls=args.client_calls,
        client_follows=args.client_follows,
        max_follows=args.max_follows,
        client_stats=args.client_stats,
        client_rate=args.client_rate,
        client_burst=max(1, int(2 * args.client_rate)),
        stall_timeout=args.stall_timeout,
    )
    from tjob.api.quotas import StoreQuota
    from tjob.cli import tenancy

    job_user = None if args.job_user is None else _job_user(args.job_user)
    try:
        # Kept on args for the engine and the start-up log line.
        args.tenancy = ten = tenancy.decide(args, job_user)
    except InvalidSpec as err:
        _fail(str(err))
    return Policy(
        caps=caps,
        admins=frozenset(args.admin),
        job_user=job_user,
        max_jobs=args.max_jobs,
        limits=limits,
        store=StoreQuota(jobs=ten.client_jobs, disk=ten.client_disk),
        defaults=defaults,
        max_timeout=args.max_timeout,
        default_timeout=args.default_timeout,
        queue=args.queue,
        max_running=args.max_running,
        max_queued=args.max_queued,
    )


def _limits_text(d: Limits) -> str:
    return f"cpu {d.cpu_percent}% mem {d.memory_mb}MB pids {d.pids} rbps {d.rbps} wbps {d.wbps}"


def _caps(args: argparse.Namespace) -> Limits:
    """``--max-*``, each defaulting to what the host has."""
    from tjob.host import host_caps
    from tjob.spec import Limits

    host = host_caps()
    return Limits(
        cpu_percent=args.max_cpu or host.cpu_percent,
        memory_mb=args.max_mem or host.memory_mb,
        pids=args.max_pids or host.pids,
        rbps=args.max_rbps or host.rbps,
        wbps=args.max_wbps or host.wbps,
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


def _tls(args: argparse.Namespace) -> tuple[ssl.SSLContext, ServerFiles]:
    from tjob.api import tls
    from tjob.cli import ops
    from tjob.errors import TjobError

    for path, what in (
        (args.ca, "CA certificate"),
        (args.cert, "server certificate"),
        (args.key, "server key"),
    ):
        if not os.path.exists(path):
            _fail(f"{what} {path} not found (create the files with `tjobs certs`)")
    try:
        files = ops.tls_files(args)
        return tls.server_context(files.ca, files.cert, files.key, files.crl), files
    except TjobError as err:
        _fail(str(err))


def _engine(args: argparse.Namespace, policy: Policy) -> Engine:
    import logging

    from tjob.cgroups.delegate import place
    from tjob.devices import check_block_device
    from tjob.engine import Engine
    from tjob.errors import TjobError

    try:
        if args.mnt is not None:
            check_block_device(args.mnt)
        placement = place(Path("/sys/fs/cgroup"), args.cgroup_parent)
        if placement.note:
            logging.getLogger("tjobs").warning("%s", placement.note)
        ten = args.tenancy
        engine = Engine(
            args.state_dir,
            defaults=policy.defaults or policy.caps,
            device=args.mnt,
            output_cap=args.output_cap,
            cgroup_parent=placement.parent,
            hide=[*_cert_dirs(args), *args.hide],
            seccomp=_seccomp(args.seccomp),
            clients=ten.clients,
            uid_range=ten.uid_range,
            volumes=_volumes(args.volume),
            max_running=policy.max_running,
            owner_max_running=policy.max_jobs,
            durable=not args.no_fsync,
        )
        try:
            placement.settle()
        except TjobError:
            engine.close()
            raise
        return engine
    except TjobError as err:
        _fail(f"cannot manage jobs: {err}")
    except OSError as err:
        _fail(f"cannot manage jobs in {args.state_dir}: {err.strerror or err}")


def _cert_dirs(args: argparse.Namespace) -> list[str]:
    """The certificates' directories (the server's key is there): hidden from every job."""
    dirs = {os.path.dirname(os.path.abspath(p)) for p in (args.ca, args.cert, args.key)}
    dirs.discard("/")
    return sorted(dirs)


def _volumes(flags: list[str]) -> dict[str, Declared]:
    from tjob.volumes import VolumeError, parse_declaration

    out: dict[str, Declared] = {}
    for flag in flags:
        name, decl = parse_declaration(flag)
        if name in out:
            raise VolumeError(f"volume {name} is declared twice")
        out[name] = decl
    return out


def _seccomp(flag: str | None) -> str:
    from tjob import jail

    return str(jail.DEFAULT_PROFILE) if flag is None else flag


def _serve(args: argparse.Namespace) -> int:
    parse_host(args.host)  # refuse a bad address before anything else
    policy = _policy(args)
    if os.geteuid() != 0:
        _fail("must run as root for cgroups and namespaces (sudo tjobs)")
    tls_ctx, files = _tls(args)

    import logging

    from tjob.cli import logfmt

    logfmt.install(args.log_format)
    # A flood of one kind of line (a full descriptor table fails each accept and open alike;
    # a client refused in a loop) is one line per interval, not one per attempt.
    from tjob.api.logtext import RepeatFilter

    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())

    # The engine (and its fork server) only once the cheap checks have passed.
    engine = _engine(args, policy)
    # Every connection is a descriptor: the usual soft limit of 1024 would let a thousand
    # stalled handshakes lock clients out. (After the fork server starts: jobs keep the usual.)
    import resource

    from tjob.api.limits import FD_RESERVE

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = policy.limits.fds_needed()
    if need > hard:
        engine.close()
        _fail(
            f"the limits need up to {need} descriptors (--max-conns + --max-follows + "
            f"{FD_RESERVE} for jobs), more than the {hard} this process may open "
            "(ulimit -Hn); lower them or raise the limit"
        )
    try:
        import asyncio

        return asyncio.run(_run(engine, policy, (tls_ctx, files), args))
    finally:
        engine.close(stop_jobs=args.stop_on_exit)


async def _run(
    engine: Engine,
    policy: Policy,
    tls: tuple[ssl.SSLContext, ServerFiles],
    args: argparse.Namespace,
) -> int:
    import asyncio
    import errno
    import logging
    import signal

    from tjob.api.logtext import shown
    from tjob.api.server import ApiServer
    from tjob.cli import ops, tenancy
    from tjob.errors import TjobError

    log = logging.getLogger("tjobs")
    host, port = parse_host(args.host)
    try:
        audit, metrics = ops.open_audit(args), ops.start_metrics(args, log)
    except TjobError as err:
        _fail(str(err))
    servicer = getattr(args, "service", None)  # a cluster node's servicer (tjobs node)
    api = ApiServer(
        engine, policy, tls[0], files=tls[1], metrics=metrics, audit=audit, **servicer or {}
    )
    try:
        await api.start(host, port)
    except OSError as err:
        why = "address already in use" if err.errno == errno.EADDRINUSE else err.strerror or err
        _fail(f"cannot listen on {args.host}: {why}")

    from tjob.cli import logfmt, service

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGHUP: re-read the config file, and reload the certificates and the CRL.
    reloader: service.Reloader | None = getattr(args, "reloader", None)
    if reloader is not None:
        reloader.add(lambda new: logfmt.install(new.log_format), keys=["log-format"])
        reloader.add(lambda new: ops.reload(api, log))
        loop.add_signal_handler(signal.SIGHUP, _reload, reloader)
    else:
        loop.add_signal_handler(signal.SIGHUP, ops.reload, api, log)
    ops.warn_expiry(tls[1], log)
    crl_watch = asyncio.create_task(ops.watch_crl(api, log))
    caps = policy.caps
    log.info(
        "listen on %s (cgroup v%s, device %s; defaults %s; caps cpu %d%% mem %dMB pids %d "
        "rbps %d wbps %d; "
        "max %d running jobs per client; jobs run as %s; admins: %s)",
        args.host,
        engine.cgroup_version,
        engine.device or "none (no disk throttling)",
        _limits_text(policy.defaults or caps),
        caps.cpu_percent,
        caps.memory_mb,
        caps.pids,
        caps.rbps,
        caps.wbps,
        policy.max_jobs,
        tenancy.job_account(args.tenancy, policy.job_user),
        ", ".join(shown(a) for a in sorted(policy.admins)) or "none",
    )
    lim = policy.limits
    log.info(
        "limits: %d connections (%d per client), per client %d calls, %d Logs, %d Stats, "
        "%g calls/s; %d Logs in all; stalled Logs reset after %gs",
        lim.max_conns,
        lim.client_conns,
        lim.client_calls,
        lim.client_follows,
        lim.client_stats,
        lim.client_rate,
        lim.max_follows,
        lim.stall_timeout,
    )
    log.info("%s", tenancy.describe(args.tenancy))
    if args.seccomp == "unconfined":
        log.warning("jobs run without a seccomp filter (--seccomp unconfined)")
    elif args.seccomp is not None:
        log.info("jobs' seccomp profile: %s", args.seccomp)
    if args.volume:
        log.info("volumes: %s", ", ".join(args.volume))
    service.notify(f"READY=1\nSTATUS=listening on {args.host}")
    pruner = asyncio.create_task(_prune(engine, args.retention, log))
    await stop.wait()
    service.notify("STOPPING=1")
    log.info("shutting down")
    pruner.cancel()
    crl_watch.cancel()
    await api.shutdown()
    for done in (metrics, audit):
        if done is not None:
            done.close()
    running = engine.running_count()
    if args.stop_on_exit:
        log.info("stopping %d running jobs (--stop-on-exit)", running)
    else:
        log.info("stopped; %d running jobs keep running (tjobs re-adopts them on restart)", running)
    return 0


def _reload(reloader: service.Reloader) -> None:
    from tjob.cli import service

    service.notify("RELOADING=1")
    reloader.reload()
    service.notify("READY=1")


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
