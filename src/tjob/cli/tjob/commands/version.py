"""``tjob version`` (and ``tjob --version``): the client's version, then the server's.

The server's comes from the ``tjob-version`` key of the initial metadata of its answer to a
health check (``grpc.health.v1.Health/Check``, served by every tjobs next to the job service):
any RPC would carry it, and this one changes nothing and needs no authorization. A server that
does not send the key is reported as not saying. An unreachable server still gets the client's
version printed first, then the one-line error and a non-zero exit.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..render import escape, out

if TYPE_CHECKING:
    from ..client import Client

VERSION_KEY = "tjob-version"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
TIMEOUT = 10.0  # seconds: a guard against a server that accepts and never answers


def client_version() -> str:
    """The installed distribution's version (pyproject's), or ``unknown`` outside one."""
    from importlib import metadata

    try:
        return metadata.version("tjob")
    except metadata.PackageNotFoundError:
        return "unknown"


def standalone(args: argparse.Namespace) -> int:
    out(f"Client: tjob {client_version()}")
    from ..client import Client
    from ..settings import resolve

    resolve(args)
    client = Client(args)
    try:
        version = server_version(client)
    finally:
        client.close()
    host = escape(args.host)
    if version is None:
        out(f"Server: tjobs at {host} (it does not report its version)")
    else:
        out(f"Server: tjobs {escape(version)} at {host}")
    return 0


def server_version(client: Client) -> str | None:
    """The ``tjob-version`` the server sends with its health-check answer, None if none."""
    check = client.channel.unary_unary(
        HEALTH_CHECK,
        request_serializer=_raw,
        response_deserializer=_raw,
    )
    try:
        # An empty HealthCheckRequest asks about the whole server.
        _reply, call = check.with_call(b"", timeout=TIMEOUT)
    except client.grpc.RpcError as err:
        raise client.error(err) from None
    for key, value in call.initial_metadata() or ():
        if key == VERSION_KEY:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return None


def _raw(data: bytes) -> bytes:
    return data
