"""``tjobs``'s start-up: its flags checked and made into the server's parts (the policy, the TLS
context, the engine). A problem the operator can fix is a :class:`Refusal`, printed as one line.

Imports are made where they are needed: ``tjobs certs`` and ``tjobs -h`` load none of this.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import ssl

    from tjob.api.policy import Policy
    from tjob.api.tls import ServerFiles
    from tjob.engine import Engine
    from tjob.spec import Limits
    from tjob.volumes import Declared

EXIT_REFUSED = 1


class Refusal(Exception):
    """A start-up problem the operator can fix; printed as one line."""


def fail(message: str) -> NoReturn:
    raise Refusal(message)


def parse_host(text: str) -> tuple[str | None, int]:
    """``localhost:8080`` / ``[::1]:8080`` / ``:8080`` -> (host or None for all, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        fail(f"--host {text!r} is not HOST:PORT (for example localhost:8080)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or None, int(port)


def policy(args: argparse.Namespace) -> Policy:
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
        fail(f"bad limit flag: {err}")
    for over in defaults.exceeding(caps):
        fail(f"a default is above its cap: {over.replace('server', 'flag')}")
    if args.max_timeout and args.default_timeout and args.default_timeout > args.max_timeout:
        fail("--default-timeout is above --max-timeout")
    if args.max_jobs < 1:
        fail(f"--max-jobs must be at least 1, not {args.max_jobs}")
    if not args.client_rate > 0:
        fail(f"--client-rate must be above 0, not {args.client_rate}")
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
        fail(str(err))
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
        fail(f"--job-user {name!r}: no such user on this host")
    return name


def tls(args: argparse.Namespace) -> tuple[ssl.SSLContext, ServerFiles]:
    from tjob.api import tls
    from tjob.cli import ops
    from tjob.errors import TjobError

    for path, what in (
        (args.ca, "CA certificate"),
        (args.cert, "server certificate"),
        (args.key, "server key"),
    ):
        if not os.path.exists(path):
            fail(f"{what} {path} not found (create the files with `tjobs certs`)")
    try:
        files = ops.tls_files(args)
        return tls.server_context(files.ca, files.cert, files.key, files.crl), files
    except TjobError as err:
        fail(str(err))


def engine(args: argparse.Namespace, policy: Policy) -> Engine:
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
        fail(f"cannot manage jobs: {err}")
    except OSError as err:
        fail(f"cannot manage jobs in {args.state_dir}: {err.strerror or err}")


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
