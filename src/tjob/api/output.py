"""Job output to Logs streams: a budget shared fairly between clients, and no stalled peer.

All Logs calls together read at most about ``LOGS_BUDGET`` bytes ahead of their peers. The
budget is split evenly between the clients streaming now, and each client's part evenly between
its streams, so a client with a hundred followers does not shrink another client's one. A
stream reads its share, then waits for the connection to take it: it holds nothing of anyone
else's while it waits (nothing is reserved from a common pool), so a peer that stops reading
stalls only itself. A stream that cannot hand its chunk to the connection for
``stall_timeout`` seconds is reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes

from . import convert
from .tjob.v1 import tjob_pb2 as pb

if TYPE_CHECKING:
    from grpclib.server import Stream

    from ..engine import Follower
    from ..execs import ExecFollower

log = logging.getLogger("tjobs")

# Largest LogChunk payload: well under grpcio's default 4 MiB receive limit, big enough that
# per-message overhead does not matter for throughput.
MAX_CHUNK = 1 << 20
MIN_READ = 16 << 10
# Output all Logs calls together may hold between reading and handing it to the connection
# (protobuf and HTTP/2 framing copy each piece twice more on the way).
LOGS_BUDGET = 16 << 20


class Stalled(Exception):
    """The peer took nothing for the stall timeout."""


class OutputShares:
    """How many bytes each Logs stream may read ahead: the budget split by client, then by
    stream."""

    def __init__(self, total: int = LOGS_BUDGET) -> None:
        self.total = total
        self.streams: Counter[str] = Counter()

    def share(self, client: str) -> int:
        per_client = self.total // max(1, len(self.streams))
        return max(MIN_READ, min(MAX_CHUNK, per_client // max(1, self.streams[client])))

    def add(self, client: str) -> None:
        self.streams[client] += 1

    def remove(self, client: str) -> None:
        self.streams[client] -= 1
        if not self.streams[client]:
            del self.streams[client]


async def send_output(
    stream: Stream[Any, Any],
    follower: Follower | ExecFollower,
    *,
    follow: bool,
    client: str,
    shares: OutputShares,
    stall_timeout: float,
    sent: Callable[[int], object] | None = None,
    wrap: Callable[[pb.LogChunk], Any] | None = None,
) -> None:
    """Send what the job writes, within the client's share: one follower takes big reads
    (throughput), a thousand take small ones. ``sent`` is told the bytes of each chunk sent;
    ``wrap`` makes each LogChunk the stream's message (Attach's AttachReply, Exec's)."""
    shares.add(client)
    try:
        while True:
            chunks = follower.take(shares.share(client))
            if chunks is None or (not chunks and not follow):
                return
            for chunk in chunks:
                if chunk.truncated:
                    msg = pb.LogChunk(truncated=True)
                else:
                    msg = pb.LogChunk(stream=convert.stream_to_pb(chunk.stream), data=chunk.data)
                await _send(stream, wrap(msg) if wrap else msg, stall_timeout)
                if sent is not None:
                    sent(len(chunk.data))
            if not chunks:
                await follower.wait_async()  # holding nothing while the job is quiet
    finally:
        shares.remove(client)


async def _send(stream: Stream[Any, Any], msg: Any, stall_timeout: float) -> None:
    try:
        await asyncio.wait_for(stream.send_message(msg), stall_timeout)
    except TimeoutError:
        # The peer took nothing for that long: reset the stream (RST_STREAM is not flow
        # controlled) and send no trailers, which would wait on the same peer.
        raw = stream._stream
        if raw.closable:
            raw.reset_nowait(ErrorCodes.CANCEL)
        stream._cancel_done = True
        raise Stalled from None
