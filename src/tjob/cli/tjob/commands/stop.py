"""``tjob stop [-t GRACE] (JOB...|--filter F...)``: stop jobs (SIGTERM, the grace, SIGKILL);
print each id."""

from __future__ import annotations

import argparse

from ..client import CALL_TIMEOUT, Client
from ..render import print_ids
from .ps import matching


def main(c: Client, args: argparse.Namespace) -> int:
    refs = list(args.jobs) + matching(c, args.filters, running=True)
    reqs = [(ref, c.pb.StopRequest(id=ref, grace_seconds=args.time)) for ref in refs]
    # The server answers once the job has ended: after the grace, at worst.
    return print_ids(c.each("Stop", reqs, args.time + CALL_TIMEOUT))
