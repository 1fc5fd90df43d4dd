"""``tjobs`` serving: the API server over the engine, until SIGTERM or SIGINT; SIGHUP reloads
the config file and the certificates; finished jobs past their retention are pruned.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from tjob.cli import startup
from tjob.cli.startup import fail, parse_host

if TYPE_CHECKING:
    import logging
    import ssl

    from tjob.api.policy import Policy
    from tjob.api.tls import ServerFiles
    from tjob.cli import service
    from tjob.engine import Engine
    from tjob.spec import Limits


def serve(args: argparse.Namespace) -> int:
    parse_host(args.host)  # refuse a bad address before anything else
    policy = startup.policy(args)
    if os.geteuid() != 0:
        fail("must run as root for cgroups and namespaces (sudo tjobs)")
    tls_ctx, files = startup.tls(args)

    import logging

    from tjob.cli import logfmt

    logfmt.install(args.log_format)
    # A flood of one kind of line (a full descriptor table fails each accept and open alike;
    # a client refused in a loop) is one line per interval, not one per attempt.
    from tjob.api.logtext import RepeatFilter

    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())

    # The engine (and its fork server) only once the cheap checks have passed.
    engine = startup.engine(args, policy)
    # Every connection is a descriptor: the usual soft limit of 1024 would let a thousand
    # stalled handshakes lock clients out. (After the fork server starts: jobs keep the usual.)
    import resource

    from tjob.api.limits import FD_RESERVE

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = policy.limits.fds_needed()
    if need > hard:
        engine.close()
        fail(
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
        fail(str(err))
    servicer = getattr(args, "service", None)  # a cluster node's servicer (tjobs node)
    api = ApiServer(
        engine, policy, tls[0], files=tls[1], metrics=metrics, audit=audit, **servicer or {}
    )
    try:
        await api.start(host, port)
    except OSError as err:
        why = "address already in use" if err.errno == errno.EADDRINUSE else err.strerror or err
        fail(f"cannot listen on {args.host}: {why}")

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


def _limits_text(d: Limits) -> str:
    return f"cpu {d.cpu_percent}% mem {d.memory_mb}MB pids {d.pids} rbps {d.rbps} wbps {d.wbps}"
