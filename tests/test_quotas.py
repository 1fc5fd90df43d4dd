"""The per-client disk quota's reads: a finished job's size is read once, a running job's at
most once a FRESH interval (a burst of Runs reads each directory once) and again as soon as
the job has ended."""

from __future__ import annotations

import asyncio

import pytest

from tjob import Engine, JobSpec
from tjob.api import quotas
from tjob.api.limits import LimitExceeded
from tjob.api.quotas import StoreQuota

pytestmark = pytest.mark.root

MIB = 1 << 20


def test_a_running_jobs_size_is_read_again_once_it_ends(engine: Engine) -> None:
    job = engine.start(JobSpec(["sleep", "1000"]))
    before = quotas.job_bytes(job)
    assert before < MIB
    (job.dir / "grown").write_bytes(b"x" * MIB)  # what the job might have written since
    assert quotas.job_bytes(job) == before  # read at most once a FRESH interval
    # A burst of Runs with every size known reads nothing: no thread, and the quota holds.
    asyncio.run(quotas.check_async(StoreQuota(disk=before + 4096), [job], 0))
    job.stop(0)
    after = quotas.job_bytes(job)  # ended: read again, then kept
    assert after >= MIB  # (the end spent the job's reserve: not before + MIB)
    with pytest.raises(LimitExceeded, match="--client-disk"):
        quotas.check(StoreQuota(disk=after), [job], 0)
    (job.dir / "grown").unlink()
    assert quotas.job_bytes(job) == after  # a finished job's files no longer change
