"""``tjob stats [--no-stream] [JOB...]``: live resource use, one table per sample."""

from __future__ import annotations

import argparse
import sys

from ..client import Client
from ..render import out, stats_table

CLEAR = "\x1b[H\x1b[J"  # cursor home, erase below: redraw in place


def main(c: Client, args: argparse.Namespace) -> int:
    pb = c.pb
    req = pb.StatsRequest(ids=args.jobs, stream=not args.no_stream, interval_seconds=1.0)
    call = c.stream("Stats", pb.StatsResponse)(req)
    # A terminal gets docker's redraw in place; a pipe gets one table per sample.
    clear = CLEAR if sys.stdout.isatty() and not args.no_stream else ""
    with c.streaming(call):
        for sample in call:
            out(clear + stats_table(sample.jobs))
    return 0
