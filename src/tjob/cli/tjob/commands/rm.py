"""``tjob rm (JOB...|--filter F...)``: remove finished jobs, their record and their output;
print each id (with filters: the finished jobs that match)."""

from __future__ import annotations

import argparse

from ..client import Client
from ..render import print_ids
from .ps import matching


def main(c: Client, args: argparse.Namespace) -> int:
    refs = list(args.jobs) + matching(c, args.filters, running=False)
    reqs = [(ref, c.pb.JobRef(id=ref)) for ref in refs]
    return print_ids(c.each("Remove", reqs))
