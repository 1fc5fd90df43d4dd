"""``tjob logs [--no-follow] [--stdout|--stderr] JOB``: a job's output, as bytes, from the start."""

from __future__ import annotations

import argparse

from ..client import Client
from ..render import copy_output


def main(c: Client, args: argparse.Namespace) -> int:
    pb = c.pb
    if args.stdout:
        streams = pb.STREAM_SELECT_STDOUT
    elif args.stderr:
        streams = pb.STREAM_SELECT_STDERR
    else:
        streams = pb.STREAM_SELECT_BOTH
    call = c.stream("Logs", pb.LogChunk)(
        pb.LogsRequest(id=args.job, follow=args.follow, streams=streams)
    )
    with c.streaming(call):
        copy_output(call)
    return 0
