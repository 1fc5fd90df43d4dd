"""Two fixes to the HTTP/2 stack under grpclib, installed once by the server (process-wide).

Both are small and keep the libraries' behaviour; each says what it fixes and why it matters
here. They touch private names of grpclib 0.4 and hyperframe 6: ``tests/test_h2fixes.py``
fails if those change under them.
"""

from __future__ import annotations

import binascii
import itertools
from typing import Any

import hyperframe.frame
from grpclib.protocol import EventsProcessor


def install() -> None:
    _cheap_frame_reprs()
    _fair_window_updates()


def _cheap_frame_reprs() -> None:
    """h2 formats ``repr(frame)`` of every frame it receives for a trace log line, whether or
    not anything logs it, and hyperframe's repr hex-encodes a frame's whole body to show its
    first 10 bytes: a 16 KiB DATA frame cost a 32 KiB string (7% of the event loop's time
    under B9's flood of large requests). Only what is shown is encoded now (same text)."""

    def raw_data_repr(data: bytes | memoryview | None) -> str:
        if not data:
            return "None"
        r = binascii.hexlify(bytes(data[:11])).decode("ascii")
        return "<hex:" + (r[:20] + "..." if len(r) > 20 else r) + ">"

    def data_body_repr(self: hyperframe.frame.DataFrame) -> str:
        return raw_data_repr(self.data)

    hyperframe.frame._raw_data_repr = raw_data_repr
    hyperframe.frame.DataFrame._body_repr = data_body_repr  # type: ignore[method-assign,assignment]


def _fair_window_updates() -> None:
    """A connection-wide WINDOW_UPDATE wakes every stream of the connection, and grpclib wakes
    them in the order they were opened: the first ones take the new window and the last ones
    wait again, for ever while the peer is slower than the server. With a thousand followers
    on twenty connections (B3) the last of each connection stalled for the stall timeout and
    were reset. The wake-up now starts one stream further along each time (round robin)."""
    turns = itertools.count()

    def process_window_updated(self: EventsProcessor, event: Any) -> None:
        if event.stream_id != 0:
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.window_updated.set()
            return
        streams = list(self.streams.values())
        if streams:
            start = next(turns) % len(streams)
            for stream in streams[start:] + streams[:start]:
                stream.window_updated.set()

    EventsProcessor.process_window_updated = process_window_updated  # type: ignore[method-assign]
