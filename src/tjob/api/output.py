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
import struct
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

from h2.errors import ErrorCodes

from ..errors import InvalidSpec
from . import convert
from .tjob.v1 import tjob_pb2 as pb

if TYPE_CHECKING:
    from grpclib.server import Stream

    from ..follower import Follower

log = logging.getLogger("tjobs")

# Largest LogChunk payload: well under grpcio's default 4 MiB receive limit, big enough that
# per-message overhead does not matter for throughput.
MAX_CHUNK = 1 << 20
MIN_READ = 16 << 10
# Output all Logs calls together may hold between reading and handing it to the connection
# (protobuf and HTTP/2 framing copy each piece twice more on the way).
LOGS_BUDGET = 16 << 20


class View(TypedDict):
    tail: int | None
    since_ns: int | None
    until_ns: int | None


def view_from_pb(req: pb.LogsRequest) -> View:
    """The Follower's view (tail, since_ns, until_ns) a LogsRequest asks for; InvalidSpec if
    it is empty by construction (until before since). A since in the future is allowed: the
    view holds what the job writes from then on (as ``docker logs --since``)."""
    since = req.since_unix_nanos if req.HasField("since_unix_nanos") else None
    until = req.until_unix_nanos if req.HasField("until_unix_nanos") else None
    if since is not None and until is not None and until < since:
        raise InvalidSpec("until is before since: the view would be empty")
    tail = req.tail if req.HasField("tail") else None
    return View(tail=tail, since_ns=since, until_ns=until)


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
    follower: Follower,
    *,
    follow: bool,
    timestamps: bool = False,
    client: str,
    shares: OutputShares,
    stall_timeout: float,
    sent: Callable[[int], object] | None = None,
    within: bytes = b"",
) -> None:
    """Send what the job writes, within the client's share: one follower takes big reads
    (throughput), a thousand take small ones. ``sent`` is told the bytes of each chunk sent;
    ``within`` is the tag of the field that holds each LogChunk in the stream's message
    (``AttachReply.output``, ``ExecResponse.output``), empty when the LogChunk is the message."""
    shares.add(client)
    try:
        while True:
            chunks = follower.take(shares.share(client))
            if chunks is None or (not chunks and not follow):
                return
            for chunk in chunks:
                if chunk.truncated:
                    message = _nest(within, _TRUNCATED)
                else:
                    pbs = convert.stream_to_pb(chunk.stream)
                    message = encode_chunk(pbs, chunk.data, chunk.time_ns, timestamps, within)
                await _send(stream, message, stall_timeout)
                if sent is not None:
                    sent(len(chunk.data))
            if not chunks:
                await follower.wait_async()  # holding nothing while the job is quiet
    finally:
        shares.remove(client)


# The tags of LogChunk's fields (tjob.proto): stream (varint), data (bytes), time (varint).
_TAG_STREAM = b"\x08"
_TAG_DATA = b"\x12"
_TAG_TIME = b"\xf0\x01"  # field 30, varint
_GRPC_PREFIX = struct.Struct(">?I")
# The tag of field 1, length-delimited: where AttachReply and ExecResponse hold their output.
IN_FIELD_1 = b"\x0a"  # gRPC's message prefix: compressed flag, length


def encode_chunk(
    stream: int, data: bytes, time_ns: int, timestamps: bool, within: bytes = b""
) -> bytes:
    """A LogChunk of output as one gRPC message (prefix included), built with one copy of
    ``data``: the usual path (a protobuf message, its serialization, grpclib's prefix) copies
    it three times, which cost B2' about a tenth of the server's CPU per byte. The fields are
    tjob.proto's; tests parse the result with the generated class. ``within``: see
    send_output."""
    head = _TAG_STREAM + _varint(stream)
    if timestamps and time_ns > 0:
        head += _TAG_TIME + _varint(time_ns)
    head += _TAG_DATA + _varint(len(data))
    if within:
        head = within + _varint(len(head) + len(data)) + head
    return b"".join((_GRPC_PREFIX.pack(False, len(head) + len(data)), head, data))


def _nest(within: bytes, message: bytes) -> bytes:
    """``message`` (a serialized LogChunk) as one gRPC message, in the field ``within``."""
    if within:
        message = within + _varint(len(message)) + message
    return _GRPC_PREFIX.pack(False, len(message)) + message


_TRUNCATED = pb.LogChunk(truncated=True).SerializeToString()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


async def _send_encoded(stream: Stream[Any, Any], message: bytes) -> None:
    """grpclib's ``Stream.send_message`` for a message already encoded with its prefix (no
    SendMessage event is dispatched: tjobs listens to none)."""
    if not stream._send_initial_metadata_done:
        await stream.send_initial_metadata()
    await stream._stream.send_data(message)
    stream._send_message_done = True
    stream._messages_sent += 1
    connection = stream._stream.connection
    connection.messages_sent += 1
    connection.last_message_sent = time.monotonic()


async def _send(stream: Stream[Any, Any], message: bytes, stall_timeout: float) -> None:
    """Send ``message``; reset the stream if its peer stalls it for ``stall_timeout``.

    Stalled means the whole connection sent nothing for that long: a peer that reads none of
    its streams. A stream that only waits its turn while the connection moves data for its
    other streams (a busy client with many followers, B3) is not reset: HTTP/2 flow control
    is the peer's to pace. One timer per message, no task (a task per message was 3% of the
    server's time in a profile of B2')."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    connection = stream._stream.connection
    began = time.monotonic()
    timer: list[asyncio.TimerHandle] = []  # the one armed now
    stalled = False

    def check() -> None:
        nonlocal stalled
        idle = time.monotonic() - max(began, connection.last_data_sent or 0.0)
        if idle < stall_timeout:
            timer[0] = loop.call_later(stall_timeout - idle, check)
        else:
            stalled = True
            task.cancel()

    timer.append(loop.call_later(stall_timeout, check))
    try:
        await _send_encoded(stream, message)
    except asyncio.CancelledError:
        if not stalled:
            raise
        task.uncancel()
        # The peer took nothing for that long: reset the stream (RST_STREAM is not flow
        # controlled) and send no trailers, which would wait on the same peer.
        raw = stream._stream
        if raw.closable:
            raw.reset_nowait(ErrorCodes.CANCEL)
        stream._cancel_done = True
        raise Stalled from None
    finally:
        timer[0].cancel()
