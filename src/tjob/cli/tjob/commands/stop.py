"""``tjob stop [-t GRACE] JOB...``: stop jobs (SIGTERM, the grace, SIGKILL); print each id."""

from __future__ import annotations

import argparse

from ..client import CALL_TIMEOUT, Client
from ..render import print_ids


def main(c: Client, args: argparse.Namespace) -> int:
    reqs = [(ref, c.pb.StopRequest(id=ref, grace_seconds=args.time)) for ref in args.jobs]
    # The server answers once the job has ended: after the grace, at worst.
    return print_ids(c.each("Stop", reqs, args.time + CALL_TIMEOUT))
