"""Checked last: a TLS handshake left stalled since the suite began (the ``stalled`` fixture opens
it first) has been dropped by the server, which serves others all the while."""

from __future__ import annotations

from advkit import Stalled, health_call, wait_eof
from apiharness import ROOT

pytestmark = ROOT

# asyncio's default TLS handshake timeout, which tjobs keeps, plus room for a loaded machine.
HANDSHAKE_GUARD = 60.0 + 30.0


def test_stalled_handshake_is_dropped_by_the_server(stalled: Stalled) -> None:
    # The server's end closes (EOF) without our sending anything more: it timed the handshake out.
    assert wait_eof(stalled.sock, HANDSHAKE_GUARD, shut=False) == b""
    assert health_call(stalled.server.raw())
