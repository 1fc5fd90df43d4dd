"""``tjob wait JOB...``: wait for jobs to end, print each exit code, exit with the last one."""

from __future__ import annotations

import argparse

from ..client import Client
from ..errors import EXIT_ERROR, exit_code
from ..render import out


def main(c: Client, args: argparse.Namespace) -> int:
    reqs = [(ref, c.pb.JobRef(id=ref)) for ref in args.jobs]
    code, failed = 0, False
    for _ref, st in c.each("Wait", reqs, None):  # no deadline: a job may run for days
        if st is None:
            failed = True
            continue
        code = exit_code(st)
        out(str(code))
    return EXIT_ERROR if failed else code
