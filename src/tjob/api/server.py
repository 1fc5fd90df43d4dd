"""The API server: the JobService plus health checking (``grpc.health.v1``) and server
reflection, so ``grpcurl`` and probes work, on one grpclib server over mutual TLS; started,
reloaded (certificates, CRL) and shut down here.

Served by grpclib (asyncio) because it takes a standard ``ssl.SSLContext``, which is what
enforces TLS 1.3 only (grpcio's server cannot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING

from grpclib.const import Status as Code
from grpclib.events import SendInitialMetadata, listen
from grpclib.health.check import ServiceStatus
from grpclib.health.service import Health
from grpclib.reflection.service import ServerReflection

from ..errors import TjobError
from . import h2fixes
from .audit import AuditLog, method_of
from .conn import GuardedServer
from .metrics import Metrics
from .observe import Outcome
from .policy import Policy
from .service import JobService
from .tls import ServerFiles, reload_context

if TYPE_CHECKING:
    from ..engine import Engine

log = logging.getLogger("tjobs")
h2fixes.install()
SWITCH_INTERVAL = 0.001  # seconds; see ApiServer.start


@dataclass(frozen=True)
class Reloaded:
    """What a reload did: revoked serials known now, connections closed."""

    revoked: int
    closed: list[str]


class ApiServer:
    """The servicer plus health and reflection on one grpclib server over mutual TLS.

    Create and use it inside the event loop that serves it.
    """

    def __init__(
        self,
        engine: Engine,
        policy: Policy,
        tls: ssl.SSLContext,
        *,
        files: ServerFiles | None = None,
        metrics: Metrics | None = None,
        audit: AuditLog | None = None,
        service: type[JobService] = JobService,
    ) -> None:
        """``files``: where ``tls`` was loaded from, for :meth:`reload`; ``service``: the
        servicer (a cluster node's or gateway's subclass, issue 18)."""
        self.service = service(engine, policy, metrics=metrics, audit=audit)
        self._engine = engine
        self._tls = tls
        self.files = files
        self.metrics = metrics
        self.audit = audit
        self._health = ServiceStatus()
        self._health.set(True)
        health = Health({self.service: [self._health]})
        handlers = ServerReflection.extend([self.service, health])
        self._server = GuardedServer(handlers, policy.limits)
        self._server.refused = self._refused_conn
        listen(self._server, SendInitialMetadata, _send_version)
        self._started = False
        self._stopped = False

    async def start(
        self, host: str | None = None, port: int | None = None, *, sock: socket.socket | None = None
    ) -> None:
        """Listen on ``host:port`` (host None: every interface) or on a bound ``sock``."""
        # The engine's blocking steps run in threads (starts, stops, end steps): a thread busy
        # in Python keeps the GIL for up to the switch interval each time the event loop wants
        # it back (5 ms by default, several times per call). 1 ms keeps the loop's answers
        # prompt while many starts and stops are under way (bench B10).
        sys.setswitchinterval(SWITCH_INTERVAL)
        if sock is not None:
            await self._server.start(sock=sock, ssl=self._tls)
        else:
            await self._server.start(host, port, ssl=self._tls, reuse_address=True)
        self._started = True
        if self.metrics is not None:
            self.metrics.watch(asyncio.get_running_loop(), self.service.jobs_now)
            for job in self._engine.jobs():  # re-adopted jobs end here too
                self.service.observe.count_end(job)

    def reload(self) -> Reloaded:
        """Reload the certificate, key, CA and CRL from ``files`` (SIGHUP, or the CRL file
        changed) and close the connections of clients whose certificate is now revoked.

        Connections made from now on see the new files; open streams of other clients go on.
        A bad file keeps the old credentials and is reported (TjobError).
        """
        if self.files is None:
            raise TjobError("this server was not given its certificate files; cannot reload")
        revoked = reload_context(self._tls, self.files)
        closed = self._server.close_revoked(revoked) if revoked else []
        for who in closed:
            log.info("closed the connection of %s: its certificate is revoked", who)
        return Reloaded(revoked=len(revoked), closed=closed)

    def _refused_conn(self, client: str | None, peer: str, path: str, code: Code, why: str) -> None:
        """A call refused for its connection (conn.py): metrics and audit see it too."""
        out = Outcome(peer=peer, identity=client, code=code, reason=why)
        self.service.observe.record(method_of(path), out)

    async def shutdown(self, timeout: float = 3.0) -> None:
        """Stop serving: health says NOT_SERVING, streams end, calls in flight get ``timeout``."""
        if self._stopped or not self._started:
            return
        self._stopped = True
        self._health.set(False)
        await self.service.close(timeout)
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), timeout)


# --- helpers ------------------------------------------------------------------------------------


def _version() -> str:
    try:
        return metadata.version("tjob")
    except metadata.PackageNotFoundError:
        return "unknown"


VERSION = _version()


async def _send_version(event: SendInitialMetadata) -> None:
    """Every reply says which tjobs answered (``tjob version`` reads it)."""
    event.metadata["tjob-version"] = VERSION
