"""Per-client quotas on what the server stores: jobs kept and their bytes on disk.

A client over a quota is refused new runs (RESOURCE_EXHAUSTED naming the flag) until it removes
jobs (``tjob rm``) or the retention does: nothing of a client's is deleted behind its back.
The check is at each Run, so jobs running then may still write up to ``--output-cap`` each:
a client's stored bytes stay under ``--client-disk`` plus ``--max-jobs`` times the output cap.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..units import size_text
from .limits import LimitExceeded

if TYPE_CHECKING:
    from ..job import Job


@dataclass(frozen=True)
class StoreQuota:
    """None is no quota. jobs: ``--client-jobs``; disk: bytes, ``--client-disk``."""

    jobs: int | None = None
    disk: int | None = None


def dir_bytes(path: Path, depth: int = 2) -> int:
    """Disk space the files of one job directory take (allocated blocks, not lengths), its
    execs' (``execs/N/``, issue 16) included."""
    total = 0
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
                    if depth and entry.is_dir(follow_symlinks=False):
                        total += dir_bytes(Path(entry.path), depth - 1)
                except OSError:
                    pass
    except OSError:
        pass
    return total


# A finished job's files no longer grow: their size is read once, not at every Run of its owner
# (a client with thousands of stored jobs would otherwise cost as many stats per Run). A running
# job's is read again once it is FRESH seconds old: a burst of Runs reads each directory once,
# and needs no thread at all. That does not loosen the bound above (a running job may write up
# to the output cap after any read); an end seen since a read makes it stale at once.
FRESH = 1.0
_sizes: weakref.WeakKeyDictionary[Job, tuple[float, int]] = weakref.WeakKeyDictionary()
_sizes_lock = threading.Lock()
_FOREVER = math.inf


def _known(job: Job, now: float) -> int | None:
    """The job's size if it need not be read again now."""
    with _sizes_lock:
        entry = _sizes.get(job)
    if entry is None:
        return None
    until, size = entry
    if until == _FOREVER or (now < until and job._final is None):
        return size
    return None


def job_bytes(job: Job) -> int:
    """What the job's files take; remembered once the job has ended, FRESH seconds before."""
    now = time.monotonic()
    known = _known(job, now)
    if known is not None:
        return known
    running = job.running  # before reading: an end after the read is not remembered too early
    size = dir_bytes(job.dir)
    with _sizes_lock:
        _sizes[job] = (now + FRESH if running else _FOREVER, size)
    return size


def check(quota: StoreQuota, mine: Sequence[Job], starting: int) -> None:
    """Raise :class:`LimitExceeded` if one more job would break a quota (blocking: stats)."""
    if quota.jobs is not None and len(mine) + starting >= quota.jobs:
        raise LimitExceeded(
            f"you have {len(mine) + starting} stored jobs, the most this server keeps for one "
            f"client (tjobs --client-jobs {quota.jobs}); remove finished ones with `tjob rm`"
        )
    if quota.disk is not None:
        used = sum(job_bytes(j) for j in mine)
        if used >= quota.disk:
            raise LimitExceeded(
                f"your jobs take {used / (1 << 20):.1f} MiB on the server's disk, the most it "
                f"keeps for one client (tjobs --client-disk {size_text(quota.disk)}); "
                "remove finished ones with `tjob rm`"
            )


async def check_async(quota: StoreQuota, mine: Sequence[Job], starting: int) -> None:
    """:func:`check` off the event loop when it has files to read."""
    now = time.monotonic()
    if quota.disk is None or all(_known(j, now) is not None for j in mine):
        check(quota, mine, starting)
    else:
        await asyncio.to_thread(check, quota, mine, starting)
