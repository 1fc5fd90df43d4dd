"""``tjob kill [-s SIGNAL] [--all] JOB...``: a signal to each job's command, as ``docker kill``
(default SIGKILL); the job is not marked stopped. Print each id signalled."""

from __future__ import annotations

import argparse

from ..client import Client
from ..render import print_ids


def main(c: Client, args: argparse.Namespace) -> int:
    sig = args.signal.name  # parsed (and so checked) before any call
    reqs = [(ref, c.pb.SignalRequest(id=ref, signal=sig, all=args.all)) for ref in args.jobs]
    return print_ids(c.each("Signal", reqs))
