"""``tjob attach [--no-stdin] [--detach-keys KEYS] JOB``: a session with a running job."""

from __future__ import annotations

import argparse
import os

from .. import terminal
from ..client import Client
from ..render import warn
from ..session import Options, attach


def main(c: Client, args: argparse.Namespace) -> int:
    tty = args.stdin and os.isatty(0)
    keys = terminal.parse_detach_keys(
        terminal.DEFAULT_DETACH_KEYS if args.detach_keys is None else args.detach_keys
    )
    code = attach(c, Options(args.job, stdin=args.stdin, tty=tty, detach_keys=keys))
    if code is None:
        warn(f"detached from job {args.job} (it runs on; tjob attach {args.job} to come back)")
        return 0
    return code
