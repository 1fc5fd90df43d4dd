"""Connections under hostile clients: grpclib's server with per-connection and per-client guards.

grpclib spawns a handler task per HTTP/2 stream and cancels it when the client resets the
stream; h2 forgets a reset stream at once, so a client that opens and resets streams in a loop
(the "rapid reset" of CVE-2023-44487) keeps the advertised MAX_CONCURRENT_STREAMS while
cancelled handlers pile up without bound. A handler cancelled before its first step never runs
its ``finally`` either, so grpclib never releases its stream (the memory stays). Here, as in
grpc-go's fix, handlers alive per connection are counted until they have *finished*; at the
limit the connection stops being read and streams beyond it are refused (RST_STREAM
REFUSED_STREAM). As in Envoy, a connection whose client resets most of the streams it opens
(at least ``MIN_RESETS``), or that keeps opening streams past the limit, is closed with GOAWAY
ENHANCE_YOUR_CALM.

Connections are also counted per client identity and in all (``--client-conns``,
``--max-conns``): every call on a connection over a limit is answered RESOURCE_EXHAUSTED with
the limit's name, then the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpclib import server as gserver
from grpclib.config import Configuration
from grpclib.const import Status as Code
from grpclib.metadata import encode_grpc_message
from grpclib.protocol import H2Protocol
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from .limits import ServerLimits
from .logtext import shown
from .tls import identity_from_peercert

log = logging.getLogger("tjobs")

MIN_RESETS = 100  # resets a connection may make before its share of resets is judged
MAX_REFUSED = 100  # streams opened past the handler limit before the connection is closed
GOAWAY_CALM = b"too many streams reset or refused"
WINDOW = 1 << 20
REFUSED_GRACE = 2.0  # seconds a refused connection stays open for its first call's answer
NO_CLIENT_AUTH = (
    "the client certificate does not allow client authentication (extended key usage "
    "clientAuth); issue one with tjobs certs --client"
)


class _Conns:
    """Connections open now: in all and per client identity."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.total = 0
        self.by_client: Counter[str] = Counter()

    def open(self, name: str | None) -> str | None:
        """Count a new connection; the refusal message if it is over a limit."""
        lim = self.limits
        self.total += 1
        if name is not None:
            self.by_client[name] += 1
        if self.total > lim.max_conns:
            return (
                f"the server has {lim.max_conns} connections open, its limit "
                "(tjobs --max-conns); retry later"
            )
        if name is not None and self.by_client[name] > lim.client_conns:
            return (
                f"{name} already has {lim.client_conns} connections open, the most one client "
                "may have (tjobs --client-conns)"
            )
        return None

    def close(self, name: str | None) -> None:
        self.total -= 1
        if name is not None:
            self.by_client[name] -= 1
            if not self.by_client[name]:
                del self.by_client[name]


class _Protocol(H2Protocol):
    """One HTTP/2 connection: its client, its live handlers, its misbehaviour counts."""

    def __init__(self, server: GuardedServer, handler: _Handler) -> None:
        super().__init__(handler, server._config, server._h2_config)
        self.server = server
        self.guarded = handler
        handler.proto = self
        self.client: str | None = None
        self.who = "unknown peer"
        self.peer = "unknown peer"
        self.counted = False
        self.paused = False
        self.calm = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        _keepalive(transport)
        self.client = identity_from_peercert(transport.get_extra_info("peercert"))
        addr = transport.get_extra_info("peername")
        if addr:
            self.peer = f"{addr[0]}:{addr[1]}"
        self.who = f"{shown(self.client or '?')} ({self.peer})" if addr else "?"
        over = self.server.conns.open(self.client)
        self.counted = True
        if over is not None:
            self.guarded.refusal = (Code.RESOURCE_EXHAUSTED, over)
        elif not _client_auth(transport):
            self.guarded.refusal = (Code.UNAUTHENTICATED, NO_CLIENT_AUTH)
        if self.guarded.refusal is not None:
            # Closed after answering its first call, or after a moment if it makes none: an
            # idle connection over the limit must not keep its descriptor.
            loop = asyncio.get_running_loop()
            loop.call_later(REFUSED_GRACE, self.goaway, ErrorCodes.NO_ERROR, b"")
        h2c = self.connection._connection
        h2c.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self.server.limits.conn_streams})
        self.connection.flush()

    def serial(self) -> int | None:
        """The serial number of the client's certificate (None without one)."""
        # grpclib deletes the connection (and it its transport) once the peer has left.
        transport = getattr(getattr(self, "connection", None), "_transport", None)
        if transport is None or transport.is_closing():
            return None
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        return x509.load_der_x509_certificate(der).serial_number if der else None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.counted:
            self.counted = False
            self.server.conns.close(self.client)
        super().connection_lost(exc)

    def set_paused(self, paused: bool) -> None:
        """Stop reading the client while it has as many live handlers as it may have."""
        if paused == self.paused or self.connection._transport.is_closing():
            return
        self.paused = paused
        if paused:
            self.connection._transport.pause_reading()
        else:
            self.connection._transport.resume_reading()

    def goaway(self, error: ErrorCodes, why: bytes) -> None:
        """Tell the client to go (GOAWAY) and close the connection."""
        transport = self.connection._transport
        if transport.is_closing():
            return
        h2c = self.connection._connection
        h2c.close_connection(error_code=error, additional_data=why)
        transport.write(h2c.data_to_send())
        transport.close()  # writes what is buffered first


class _Handler(gserver.Handler):
    """grpclib's per-connection handler, with handlers counted until they have finished."""

    proto: _Protocol

    def __init__(self, server: GuardedServer) -> None:
        super().__init__(
            server._mapping, server._codec, server._status_details_codec, server.__dispatch__
        )
        # Twice what is advertised: a stream the client sees ended may still have its handler
        # finishing, and a client that opens the next one at once must not be refused.
        self.limit = 2 * server.limits.conn_streams
        self.refusal: tuple[Code, str] | None = None
        self.answered = False  # a call on a refused connection has been answered
        self.alive: set[asyncio.Task[None]] = set()
        self.opened = self.resets = self.refused = 0

    def accept(
        self,
        stream: Any,
        headers: Any,
        release_stream: Callable[[], Any],
    ) -> None:
        release = _once(release_stream)
        if len(self.alive) >= self.limit:
            self.refused += 1
            stream.reset_nowait(ErrorCodes.REFUSED_STREAM)
            release()
            self.proto.set_paused(True)  # until a handler finishes (only an abusive client)
            if self.refused > MAX_REFUSED:
                self._calm("opened %d streams past the limit of %d", self.refused, self.limit)
            return
        self.opened += 1
        if self.refusal is not None and self.answered:
            # One call has its answer (and the connection its GOAWAY): the rest cost nothing.
            stream.reset_nowait(ErrorCodes.REFUSED_STREAM)
            release()
            return
        if self.refusal is not None:
            self.answered = True
            coro = _refuse(stream, *self.refusal, self.proto)
            path = dict(headers).get(":path", "")
            self.proto.server.refused(self.proto.client, self.proto.peer, path, *self.refusal)
        else:
            coro = gserver.request_handler(
                self.mapping,
                stream,
                headers,
                self.codec,
                self.status_details_codec,
                self.dispatch,
                release,
            )
        task = self.loop.create_task(coro)
        self._tasks[stream] = task
        self.alive.add(task)
        task.add_done_callback(lambda t: self._done(t, stream, release))

    def _done(self, task: asyncio.Task[None], stream: Any, release: Callable[[], None]) -> None:
        release()  # a handler cancelled before its first step never ran its own release
        self.alive.discard(task)
        self._tasks.pop(stream, None)
        self._cancelled.discard(task)
        if len(self.alive) < self.limit:
            self.proto.set_paused(False)

    def cancel(self, stream: Any) -> None:
        task = self._tasks.pop(stream, None)
        if task is None or task.done():
            return
        task.cancel()
        self._cancelled.add(task)
        self.resets += 1
        if self.resets >= MIN_RESETS and 2 * self.resets >= self.opened:
            self._calm("reset %d of the %d streams it opened", self.resets, self.opened)

    def _calm(self, what: str, *args: int) -> None:
        if self.proto.calm:
            return
        self.proto.calm = True
        log.warning("closing the connection of %s: it " + what, self.proto.who, *args)
        self.proto.goaway(ErrorCodes.ENHANCE_YOUR_CALM, GOAWAY_CALM)


def _client_auth(transport: asyncio.BaseTransport) -> bool:
    """Whether the peer's certificate allows client authentication (extended key usage
    clientAuth): a server certificate from the same CA is no client identity."""
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return False
    known = _EKU_SEEN.get(der)
    if known is None:
        try:
            eku = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
                x509.ExtendedKeyUsage
            )
            known = ExtendedKeyUsageOID.CLIENT_AUTH in eku.value
        except (ValueError, x509.ExtensionNotFound):
            known = False
        if len(_EKU_SEEN) >= 1024:
            _EKU_SEEN.clear()
        _EKU_SEEN[der] = known
    return known


_EKU_SEEN: dict[bytes, bool] = {}  # verdicts by certificate: clients reconnect with the same one


def _ignore(*_args: object) -> None:
    pass


def _once(fn: Callable[[], Any]) -> Callable[[], None]:
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            fn()

    return call


async def _refuse(stream: Any, code: Code, message: str, proto: _Protocol) -> None:
    """Answer a call on a refused connection, then close the connection."""
    try:
        await gserver._abort(stream, 200, code, encode_grpc_message(message))
    finally:
        proto.goaway(ErrorCodes.NO_ERROR, b"")


# TCP keepalive on every connection: a peer gone without a word (its host died, a cable pulled)
# is noticed after KEEPALIVE_IDLE + KEEPALIVE_COUNT * KEEPALIVE_INTERVAL seconds (90), and its
# calls and their reservations end. In the kernel: grpclib's HTTP/2 pings stalled accepting
# when many connections were open.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 60, 10, 3


def _keepalive(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)


class GuardedServer(gserver.Server):
    """grpclib's Server with the guards above and a bounded TLS handshake."""

    def __init__(self, handlers: Collection[Any], limits: ServerLimits) -> None:
        # 1 MiB flow-control windows (grpclib's default is 4 MiB): what a client can push
        # before the server reads is bounded per connection; requests are small.
        window = Configuration(http2_connection_window_size=WINDOW, http2_stream_window_size=WINDOW)
        super().__init__(handlers, config=window)
        self.limits = limits
        self.conns = _Conns(limits)
        # Told of each call refused for its connection: (client, peer, :path, code, message).
        self.refused: Callable[[str | None, str, str, Code, str], None] = _ignore

    def close_revoked(self, serials: Collection[int]) -> list[str]:
        """Close (GOAWAY, then close) every connection whose client certificate has one of
        ``serials``; the clients closed, for the log. Their open streams end (UNAVAILABLE)."""
        closed = []
        for handler in list(self._handlers):
            proto = getattr(handler, "proto", None)
            if isinstance(proto, _Protocol) and proto.serial() in serials:
                # At once: a closing TLS transport would wait for the client's close_notify
                # (up to 30 s) with its streams still open.
                proto.connection._transport.abort()
                closed.append(proto.who)
        return closed

    def _protocol_factory(self) -> H2Protocol:
        self.__gc_step__()
        handler = _Handler(self)
        self._handlers.add(handler)
        return _Protocol(self, handler)

    async def start(  # type: ignore[override]
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        ssl: ssl.SSLContext | None = None,
        reuse_address: bool | None = None,
    ) -> None:
        """Listen like grpclib's start, with the handshake timeout of the limits (grpclib's
        own start leaves asyncio's 60 s)."""
        if self._server is not None:
            raise RuntimeError("Server is already started")
        if sock is not None:
            where: dict[str, Any] = {"sock": sock}
        else:
            where = {"host": host, "port": port}
        self._server = await self._loop.create_server(
            self._protocol_factory,
            **where,
            ssl=ssl,
            reuse_address=reuse_address,
            backlog=128,
            ssl_handshake_timeout=self.limits.handshake_timeout if ssl is not None else None,
        )
        self._server_closed_fut = self._loop.create_future()
