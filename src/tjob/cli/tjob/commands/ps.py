"""``tjob ps [-q|--json] [--filter F]... [JOB...]``: the status of the given jobs, or of all the
caller's (those matching the filters, which the server applies)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from ..client import Client, status
from ..errors import EXIT_ERROR
from ..render import out, ps_table, short_id

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tjob.status import JobStatus


def main(c: Client, args: argparse.Namespace) -> int:
    failed = False
    if args.jobs:
        reqs = [(ref, c.pb.JobRef(id=ref)) for ref in args.jobs]
        found = list(c.each("Status", reqs))
        statuses = [st for _ref, st in found if st is not None]
        failed = len(statuses) < len(found)
        if not statuses:
            return EXIT_ERROR
    else:
        statuses = list_jobs(c, args.filters)
    if args.quiet:
        for st in statuses:
            out(short_id(st.id))
    elif args.json:
        import json

        # ensure_ascii: control characters and all non-ASCII as \u escapes, one safe text.
        out(json.dumps([st.to_dict() for st in statuses], indent=2))
    else:
        out(ps_table(statuses, time.time()))
    return EXIT_ERROR if failed else 0


def list_jobs(c: Client, filters: Sequence[str] = ()) -> list[JobStatus]:
    """Every job the caller may see that matches ``filters``, newest first (the server
    filters, and answers in pages)."""
    statuses: list[JobStatus] = []
    token = ""
    while True:
        req = c.pb.ListRequest(page_token=token, filters=filters)
        listing = c.call("List", c.pb.ListResponse, req)
        statuses += [status(m) for m in listing.jobs]
        token = listing.next_page_token
        if not token:
            return statuses


def matching(c: Client, filters: Sequence[str], *, running: bool) -> list[str]:
    """Ids of the jobs matching ``filters`` (none given: none) that are running, or finished."""
    if not filters:
        return []
    return [st.id for st in list_jobs(c, filters) if st.state.finished is not running]
