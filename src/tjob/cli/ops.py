"""``tjobs``' operations flags: metrics endpoint, audit log, CRL, and reloading on SIGHUP or
when the CRL file changes. Kept apart from tjobs.py so its start-up reads as a list of steps."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tjob.api.audit import DEFAULT_KEEP, DEFAULT_MAX_SIZE
from tjob.errors import TjobError

if TYPE_CHECKING:
    from tjob.api.audit import AuditLog
    from tjob.api.metrics import Metrics
    from tjob.api.server import ApiServer
    from tjob.api.tls import ServerFiles

AUDIT_FILE = "audit.log"


def add_flags(p: argparse.ArgumentParser, flag: Callable[..., None]) -> None:
    """The operations flags (``flag`` declares ``--name`` and ``-name``)."""
    from tjob.cli import flags

    flag(
        p,
        "metrics",
        default=None,
        metavar="ADDR",
        help="serve Prometheus metrics over plain HTTP on ADDR: PORT or :PORT (localhost) or "
        "HOST:PORT (default off)",
    )
    flag(
        p,
        "audit-log",
        dest="audit_log",
        default=None,
        metavar="PATH",
        help=f"append one JSON line per run/stop/remove (and refusal) to PATH; '-' for stderr, "
        f"'off' for none (default STATE_DIR/{AUDIT_FILE})",
    )
    flag(
        p,
        "audit-max-size",
        dest="audit_max_size",
        type=flags.size(minimum=4096),
        default=DEFAULT_MAX_SIZE,
        metavar="SIZE",
        help="rotate the audit log at this size (default 64M)",
    )
    flag(
        p,
        "audit-keep",
        dest="audit_keep",
        type=int,
        default=DEFAULT_KEEP,
        metavar="N",
        help=f"rotated audit logs kept (default {DEFAULT_KEEP})",
    )
    flag(
        p,
        "crl",
        default=None,
        metavar="PATH",
        help="refuse client certificates this PEM CRL revokes, reloaded when it changes "
        "(default: the .crl next to --ca, if there is one; tjobs certs revoke writes it)",
    )


def metrics_addr(text: str) -> tuple[str, int]:
    """``9100`` / ``:9100`` (localhost) / ``HOST:PORT`` -> (host, port); ValueError if bad."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics {text!r} is not PORT or HOST:PORT (for example :9100)")
    host = host.strip("[]") or "localhost"
    return host, int(port)


def tls_files(args: argparse.Namespace) -> ServerFiles:
    """The server's certificate files; TjobError for a --crl that does not exist."""
    from tjob.api.certstore import crl_path
    from tjob.api.tls import ServerFiles

    if args.crl is not None and not os.path.exists(args.crl):
        raise TjobError(f"CRL {args.crl} not found")
    crl = Path(args.crl) if args.crl is not None else crl_path(args.ca)
    return ServerFiles(Path(args.ca), Path(args.cert), Path(args.key), crl)


def open_audit(args: argparse.Namespace) -> AuditLog | None:
    """The audit log the flags ask for; TjobError naming the file if it cannot be opened."""
    from tjob.api.audit import AuditLog

    where = args.audit_log
    if where == "off":
        return None
    if where == "-":
        return AuditLog(None)
    path = Path(where) if where else Path(args.state_dir) / AUDIT_FILE
    try:
        return AuditLog(path, max_size=args.audit_max_size, keep=max(0, args.audit_keep))
    except OSError as err:
        raise TjobError(f"cannot open the audit log {path}: {err.strerror or err}") from err


def start_metrics(args: argparse.Namespace, log: logging.Logger) -> Metrics | None:
    """The metrics, served on --metrics (None when off); TjobError if it cannot listen."""
    if args.metrics is None:
        return None
    from tjob.api.metrics import Metrics

    try:
        host, port = metrics_addr(args.metrics)
    except ValueError as err:
        raise TjobError(str(err)) from None
    metrics = Metrics()
    try:
        bound = metrics.serve(host, port)
    except OSError as err:
        raise TjobError(f"cannot serve metrics on {args.metrics}: {err.strerror or err}") from err
    log.info("metrics on http://%s:%d/metrics", *bound)
    return metrics


def warn_expiry(files: ServerFiles, log: logging.Logger) -> None:
    """Log a warning for the server certificate or CA if it expires soon."""
    from tjob.api.certstore import expiry_warnings

    for line in expiry_warnings({"server certificate": files.cert, "CA certificate": files.ca}):
        log.warning("%s", line)


def reload(api: ApiServer, log: logging.Logger) -> None:
    """Reload the certificates and CRL (SIGHUP, or the CRL changed), logging what happened."""
    try:
        done = api.reload()
    except TjobError as err:
        log.error("reload failed, keeping the previous certificates: %s", err)
        return
    except Exception:  # a bug: said in the log, and the server serves on
        log.exception("reload failed")
        return
    log.info(
        "reloaded the certificates (%d revoked; closed %d connections)",
        done.revoked,
        len(done.closed),
    )
    if api.files is not None:
        warn_expiry(api.files, log)


async def watch_crl(api: ApiServer, log: logging.Logger) -> None:
    """Reload when the CRL file changes: woken by inotify on its directory (``tjobs certs
    revoke`` replaces the file), so a revocation applies at once, without polling."""
    if api.files is None or api.files.crl is None:
        return
    from tjob.watch import Hub

    crl = api.files.crl
    hub = Hub()
    try:
        with hub.subscribe(str(crl.parent), asyncio.get_running_loop()) as changed:
            seen = _stamp(crl)
            while True:
                changed.clear()  # before looking: a change after this wakes the next wait
                now = _stamp(crl)
                if now != seen:
                    seen = now
                    reload(api, log)
                await changed.wait_async()
    finally:
        hub.close()


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size
