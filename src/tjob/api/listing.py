"""Listings in pages, each reply well under a client's 4 MiB receive limit.

A page holds at most ``MAX_PAGE`` jobs, newest first, and each carries a bounded prefix of its
argv (``ARGV_PREFIX`` characters, ``argv_truncated`` set when cut): twenty jobs with 240 kB
command lines can no longer make another client's listing too big to receive. ``Status`` of
one job still carries its whole argv. The page token is the (created_at, id) of the last job
sent: the next page starts after it, so jobs started or removed in between neither repeat nor
shift the pages (Kubernetes' ``limit``/``continue``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import InvalidSpec
from ..filters import matcher, parse_all
from . import convert
from .tjob.v1 import tjob_pb2 as pb

if TYPE_CHECKING:
    from ..engine import Job

MAX_PAGE = 500  # jobs per List reply (and its default)
ARGV_PREFIX = 1024  # characters of argv a listing carries per job


def argv_prefix(argv: Sequence[str]) -> tuple[list[str], bool]:
    """The first arguments of ``argv`` up to ARGV_PREFIX characters, and whether it was cut."""
    out: list[str] = []
    left = ARGV_PREFIX
    for arg in argv:
        if len(arg) > left:
            out.append(arg[:left])
            return out, True
        out.append(arg)
        left -= len(arg)
    return out, False


def shorten(msg: pb.JobStatus | pb.JobStats) -> None:
    """Cut a listing entry's argv to its prefix (in place)."""
    short, cut = argv_prefix(msg.argv)
    if cut:
        del msg.argv[:]
        msg.argv.extend(short)
        if isinstance(msg, pb.JobStatus):
            msg.argv_truncated = True


def page(jobs: Sequence[Job], req: pb.ListRequest) -> pb.ListResponse:
    """One page of ``jobs`` (any order) answering ``req``."""
    want = convert.state_from_pb(req.state)
    keep = matcher(parse_all(req.filters))
    size = min(req.limit or MAX_PAGE, MAX_PAGE)
    after = _parse_token(req.page_token) if req.page_token else None
    ordered = sorted(jobs, key=lambda j: (j.created_at, j.id), reverse=True)
    out: list[pb.JobStatus] = []
    last: Job | None = None
    more = False
    for job in ordered:
        if after is not None and (job.created_at, job.id) >= after:
            continue
        # No live usage in listings: reading it for every running job is what made List slow.
        st = job.status(usage=False)
        if (want is not None and st.state is not want) or not keep(st):
            continue
        if len(out) == size:
            more = True
            break
        msg = convert.status_to_pb(st)
        shorten(msg)
        out.append(msg)
        last = job
    token = f"{last.created_at!r}/{last.id}" if more and last is not None else ""
    return pb.ListResponse(jobs=out, next_page_token=token)


def _parse_token(token: str) -> tuple[float, str]:
    when, sep, job_id = token.partition("/")
    try:
        if not sep or len(job_id) > 64:
            raise ValueError
        return float(when), job_id
    except ValueError:
        raise InvalidSpec(
            "page_token is not one this server gave (pass next_page_token as it came)"
        ) from None
