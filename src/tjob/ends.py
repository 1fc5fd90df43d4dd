"""The engine's end step: what it does once a job's supervisor is gone.

Run when a supervisor's pidfd fires (on the watcher's thread), when a start fails, and for
each job found at start-up; never as a side effect of reading a job. A job whose end was
recorded (``status.json``) gets its store row; one whose supervisor vanished without
recording it is killed and recorded as lost by the :class:`~tjob.recorder.Recorder`. Either
way the job's pidfds are closed. Each job is settled once, whoever gets there first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial

from .errors import CgroupError
from .job import Job
from .procs import readable
from .recorder import LOST_ERROR, Recorder
from .status import JobState, JobStatus
from .store import Store
from .watch import Hub

# How long a supervisor whose job's end is recorded may take to exit (a guard against hangs:
# it exits as soon as the launcher has removed the cgroup and answered it).
SUPERVISOR_EXIT = 5.0


class Ends:
    def __init__(self, hub: Hub, store: Store, recorder: Recorder) -> None:
        self._hub = hub
        self._store = store
        self._recorder = recorder
        self.on_end: Callable[[Job], None] | None = None  # the queue's count (issue 15)

    def watch(self, job: Job) -> None:
        """Settle ``job`` when its supervisor exits (at once if it has)."""
        self._hub.on_exit(job._sup_pidfd, partial(self._on_exit, job))

    def _on_exit(self, job: Job) -> None:
        self.settle(job)

    def settle(self, job: Job, error: str = LOST_ERROR) -> JobStatus:
        """Record in the store the end the launcher recorded, or record the job lost with
        ``error``; close its pidfds. Idempotent."""
        with job._lock:
            final = job._final
            if job._settled and final is not None:
                return final
            final = job._final_status()
            if final is None:
                final = self._recorder.reported(job.dir)  # left while no launcher ran
            if final is None:
                job._kill()
                final = self._recorder.lost(job.dir, job.facts, job.pid, job.started_at, error)
            elif final.state is not JobState.DAMAGED:  # damage is not an end: no row for it
                self._store.finish(job.id, final)
                # The launcher removes it after status.json is in place: if it died between
                # the two, that falls here (the supervisor, and so the job, has exited).
                if job._cg.left(job.cgroup):
                    with contextlib.suppress(CgroupError):
                        job._cg.remove(job.cgroup)
            job._settle(final)
        if self.on_end is not None:
            self.on_end(job)
        return final

    def settle_exited(self, jobs: list[Job]) -> None:
        """Settle now every job whose supervisor has exited (the watcher's thread may not have
        got there yet): a caller counting what the engine holds sees a settled engine. A job
        whose end is recorded has its supervisor waited for: the launcher removes the job's
        cgroup after ``status.json`` is in place (its waiter is woken first), then lets the
        supervisor exit."""
        for job in jobs:
            with job._lock:
                fd = job._sup_pidfd
                if fd < 0 or job._settled:
                    continue
                if readable(fd, SUPERVISOR_EXIT if job._final_status() is not None else 0):
                    self.settle(job)

    def forget(self, job: Job) -> None:
        """The job is being removed, or the engine closed: close its pidfds, record nothing."""
        with job._lock:
            job._settled = True
            job._release()
