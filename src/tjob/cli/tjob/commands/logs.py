"""``tjob logs [--no-follow] [--stdout|--stderr] [--tail N] [--since T] [--until T] [-t] JOB``:
a job's output, as bytes, from its first byte or from where the view begins."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..client import Client
from ..logtime import stamp
from ..render import copy_output, warn, write_bytes

if TYPE_CHECKING:
    from tjob.api.tjob.v1 import tjob_pb2 as pb


def main(c: Client, args: argparse.Namespace) -> int:
    pb = c.pb
    if args.stdout:
        streams = pb.STREAM_SELECT_STDOUT
    elif args.stderr:
        streams = pb.STREAM_SELECT_STDERR
    else:
        streams = pb.STREAM_SELECT_BOTH
    req = pb.LogsRequest(
        id=args.job, follow=args.follow, streams=streams, timestamps=args.timestamps
    )
    if args.tail is not None:
        req.tail = args.tail
    if args.since is not None:
        req.since_unix_nanos = args.since
    if args.until is not None:
        req.until_unix_nanos = args.until
    call = c.stream("Logs", pb.LogChunk)(req)
    with c.streaming(call):
        if args.timestamps:
            copy_stamped(call)
        else:
            copy_output(call)
    return 0


def copy_stamped(chunks: Iterable[pb.LogChunk]) -> None:
    """Like copy_output, with each line begun by the time its bytes were read (a line split
    over chunks gets the time of its first bytes; lines of logs kept before times were, none)."""
    at_start = {1: True, 2: True}  # per output fd: whether the next byte begins a line
    for chunk in chunks:
        if chunk.truncated:
            warn("the rest of this job's output was not kept (output cap, full disk or damage)")
            continue
        fd = 2 if chunk.stream == 2 else 1
        prefix = stamp(chunk.time_unix_nanos) + b" " if chunk.time_unix_nanos else b""
        data, pos, out = chunk.data, 0, []
        while pos < len(data):
            nl = data.find(b"\n", pos)
            end = len(data) if nl < 0 else nl + 1
            if at_start[fd] and prefix:
                out.append(prefix)
            out.append(data[pos:end])
            at_start[fd] = nl >= 0
            pos = end
        write_bytes(fd, b"".join(out))
