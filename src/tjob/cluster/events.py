"""The gateway's lifecycle events: each node's event stream, merged and numbered again, served
to ``Events`` callers as a node's own :class:`tjob.events.EventLog` serves them (the same
bounded buffer per subscriber; the servicer filters by owner). Kept in memory only: the last
KEEP events, so ``since`` reaches back that far, and not past a gateway restart."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time

from ..api.tjob.v1 import tjob_pb2 as pb
from ..events import KEEP, Event, Subscription
from ..status import JobStatus


class GatewayEvents:
    """Used on the gateway's event loop only."""

    def __init__(self) -> None:
        self._recent: collections.deque[Event] = collections.deque(maxlen=KEEP)
        self._seq = 0
        self._subs: set[Subscription] = set()

    def relay(self, msg: pb.Event) -> None:
        """A node's event, as this gateway's."""
        if msg.kind == "missed":  # the gateway fell behind that node: its resync catches up
            return
        self._emit(
            Event(
                0,
                msg.time,
                msg.kind,
                msg.id,
                msg.owner,
                msg.name,
                dict(msg.labels),
                msg.exit_code if msg.HasField("exit_code") else None,
                msg.signal if msg.HasField("signal") else None,
                msg.error or None,
            )
        )

    def lost(self, st: JobStatus) -> None:
        """A running job whose node left the cluster."""
        when = time.time()
        self._emit(
            Event(0, when, "lost", st.id, st.owner, st.name, dict(st.labels), error=st.error)
        )

    def _emit(self, event: Event) -> None:
        self._seq += 1
        event = dataclasses.replace(event, seq=self._seq)
        self._recent.append(event)
        for sub in self._subs:
            sub._put(event)

    def subscribe(self, since: float | None) -> tuple[Subscription, list[Event]]:
        sub = Subscription(asyncio.get_running_loop())
        past = [e for e in self._recent if since is not None and e.time >= since]
        self._subs.add(sub)
        return sub, past

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
