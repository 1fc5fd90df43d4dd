"""The ``Events`` RPC: a caller's lifecycle events (admins: everyone's) as they happen, after
the kept ones since a time. A stream that falls behind gets a ``missed`` event with the count
instead of holding the server back (the engine's buffer per subscriber is bounded)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..errors import InvalidSpec
from ..events import Event, EventLog, matcher
from .convert import event_to_pb
from .tjob.v1 import tjob_pb2 as pb

if TYPE_CHECKING:
    from grpclib.server import Stream

    from .authz import Caller


async def serve(
    log: EventLog, caller: Caller, req: pb.EventsRequest, stream: Stream[Any, pb.Event]
) -> None:
    keep = matcher(list(req.filters))
    since = req.since if req.HasField("since") else None
    if since is not None and not math.isfinite(since):
        raise InvalidSpec(f"since must be a time, not {since}")

    def mine(e: Event) -> bool:
        return (caller.admin or e.owner == caller.name) and keep(e)

    sub, past = log.subscribe(since)
    try:
        last = 0
        for e in past:
            if mine(e):
                await stream.send_message(event_to_pb(e))
            last = e.seq
        while True:
            e = await sub.get()
            if sub.missed:
                missed, sub.missed = sub.missed, 0
                await stream.send_message(pb.Event(kind="missed", missed=missed, time=e.time))
            if e.seq > last and mine(e):
                await stream.send_message(event_to_pb(e))
    finally:
        log.unsubscribe(sub)
