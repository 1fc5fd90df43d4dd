"""``tjob rm JOB...``: remove finished jobs, their record and their output; print each id."""

from __future__ import annotations

import argparse

from ..client import Client
from ..render import print_ids


def main(c: Client, args: argparse.Namespace) -> int:
    reqs = [(ref, c.pb.JobRef(id=ref)) for ref in args.jobs]
    return print_ids(c.each("Remove", reqs))
