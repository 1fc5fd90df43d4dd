"""Loopback ports for servers the tests start as processes."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback TCP port free at the time of asking (the caller's server binds it later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
