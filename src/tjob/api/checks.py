"""Requests checked against the server's policy before the engine sees them: a Run's
:class:`JobSpec` (limits under the caps, name, labels, timeout), Stop's grace, a Stats
request's interval and ids; and the wording of a Run refused over a running-job limit.

Pure: a request and the policy in, a value or :class:`InvalidSpec` out.
"""

from __future__ import annotations

import math

from ..errors import InvalidSpec
from ..naming import check_labels, check_name, check_timeout
from ..queue import NoRoom
from ..spec import DEFAULT_GRACE, JobSpec
from . import convert
from .answers import QuotaExceeded
from .policy import CAP_FLAGS, Policy
from .stats import SAMPLE_FLOOR
from .tjob.v1 import tjob_pb2 as pb

MAX_IDS = 1000  # ids in one Stats request
MAX_GRACE = 24 * 3600.0
DEFAULT_INTERVAL = 1.0
MIN_INTERVAL, MAX_INTERVAL = SAMPLE_FLOOR, 3600.0


def run_spec(req: pb.RunRequest, policy: Policy, owner: str, *, places_jobs: bool) -> JobSpec:
    """The job a Run asks for, run by ``owner``; ``places_jobs``: the server is a gateway
    (issue 18), which alone can honour a node constraint."""
    limits = convert.limits_from_pb(req.limits)
    if limits.device is not None:
        raise InvalidSpec("the throttled device is chosen by the server (tjobs --mnt)")
    limits.validate()
    over = limits.exceeding(policy.caps, CAP_FLAGS)
    if over:
        raise InvalidSpec("; ".join(over))
    if req.name:
        check_name(req.name)
    if req.node:  # Cluster (issue 18): a placement constraint only a gateway can honour
        check_name(req.node)
        if not places_jobs:
            raise InvalidSpec("--node needs a tjobs gateway: this server runs jobs itself")
    spec = JobSpec(
        argv=tuple(req.argv),
        env=dict(req.env),
        cwd=req.workdir or "/",
        user=policy.job_user,
        owner=owner,
        limits=limits,
        volumes=tuple(convert.volume_from_pb(v) for v in req.volumes),
        request_id=req.request_id,
        name=req.name,
        labels=dict(check_labels(req.labels)),
        timeout=timeout(req, policy),
        stdin=req.stdin,
        tty=req.tty,
        tty_size=(req.tty_size.rows, req.tty_size.cols)
        if req.tty_size.rows or req.tty_size.cols
        else None,
        node=req.node,
    )
    return spec.validate()


def timeout(req: pb.RunRequest, policy: Policy) -> float | None:
    """A Run's timeout: the one it asks for, under the server's cap, else the server's."""
    p = policy
    if not req.HasField("timeout_seconds"):
        return p.default_timeout or p.max_timeout
    seconds = check_timeout(req.timeout_seconds)
    if p.max_timeout is not None and seconds is not None and seconds > p.max_timeout:
        raise InvalidSpec(
            f"timeout {seconds:g}s is above the server's cap of {p.max_timeout:g}s "
            "(tjobs --max-timeout)"
        )
    return seconds


def grace(req: pb.StopRequest) -> float:
    """A Stop's grace period (default 10 s)."""
    seconds = req.grace_seconds if req.HasField("grace_seconds") else DEFAULT_GRACE
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_GRACE:
        raise InvalidSpec(f"grace must be 0 to {MAX_GRACE:.0f} seconds, not {seconds}")
    return seconds


def stats_interval(req: pb.StatsRequest) -> float:
    """A Stats request's sampling interval (default 1 s); its ids, at most ``MAX_IDS``."""
    interval = req.interval_seconds or DEFAULT_INTERVAL
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise InvalidSpec(
            f"interval must be {MIN_INTERVAL} to {MAX_INTERVAL:.0f} seconds, not {interval}"
        )
    if len(req.ids) > MAX_IDS:
        raise InvalidSpec(f"{len(req.ids)} ids: a Stats request takes at most {MAX_IDS}")
    return interval


def no_room(e: NoRoom) -> QuotaExceeded:
    """The refusal of a Run over a running-job limit, saying which (unless it queues).
    The engine's caps are the policy's (tjobs makes it with max_running, and max_jobs
    as its owner_max_running); admins are capped for their own jobs."""
    if e.scope == "owner":
        return QuotaExceeded(
            f"you have {e.running} running jobs, the most this server allows one client "
            f"(tjobs --max-jobs {e.limit}); stop or wait for one first, or run with --queue"
        )
    return QuotaExceeded(
        f"{e.running} jobs are running on this server, the most it allows "
        f"(tjobs --max-running {e.limit}); run with --queue to wait for a slot"
    )
