"""Stats samples: each job's cgroup read once per ``SAMPLE_FLOOR`` and shared by every stream.

However many Stats streams watch a job, and at whatever interval, its cgroup files are read at
most once per floor: a stream takes the shared sample if it is fresh enough. Streams per client
are capped by the quota (``--client-stats``); the interval itself has the same floor.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..status import JobState, JobStatus
from . import convert
from .listing import shorten
from .tjob.v1 import tjob_pb2 as pb

if TYPE_CHECKING:
    from ..engine import Job

SAMPLE_FLOOR = 0.2  # seconds: the shortest interval, and the age a shared sample may have
MAX_STATS_JOBS = 1000  # jobs in one reply (the newest)

Sample = tuple[float, JobStatus]  # (monotonic time of the reading, the status read)


class Sampler:
    """The latest reading of each job, shared."""

    def __init__(self, floor: float = SAMPLE_FLOOR) -> None:
        self.floor = floor
        self._latest: dict[str, Sample] = {}

    def sample(self, job: Job) -> Sample:
        now = time.monotonic()
        hit = self._latest.get(job.id)
        if hit is not None and now - hit[0] < self.floor:
            return hit
        fresh = (now, job.status())
        self._latest[job.id] = fresh
        if len(self._latest) > 2 * MAX_STATS_JOBS:  # forget what nobody has asked for lately
            self._latest = {k: v for k, v in self._latest.items() if now - v[0] < 10 * self.floor}
        return fresh


def stats(job: Job, now: Sample, before: Sample | None) -> pb.JobStats:
    """The wire form of one job's sample; CPU percent over the time since ``before``."""
    at, st = now
    percent = 0.0
    if before is not None and st.state is JobState.RUNNING and at > before[0]:
        cpu, cpu_before = st.usage.cpu_seconds or 0.0, before[1].usage.cpu_seconds or 0.0
        percent = max(0.0, (cpu - cpu_before) / (at - before[0]) * 100.0)
    usage = st.usage
    msg = pb.JobStats(
        id=job.id,
        argv=st.argv,
        cpu_percent=percent,
        memory_bytes=usage.memory_current_bytes or 0,
        memory_limit_bytes=convert.memory_limit_bytes(st.limits),
        pids=usage.pids_current or 0,
        io_read_bytes=usage.io_read_bytes or 0,
        io_write_bytes=usage.io_write_bytes or 0,
        state=convert.state_to_pb(st.state),
    )
    shorten(msg)
    return msg
