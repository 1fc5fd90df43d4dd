"""Start-up: the jobs an earlier engine left in the state directory, running ones included.

Each job in the store is found finished (its row or its ``status.json`` says so), running
(its supervisor is alive: the engine takes over its pidfds and watches it), or lost (no
supervisor, no recorded end: recorded lost now, by the engine's end step).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from .ends import Ends
from .job import Job
from .jobdir import RUN_FILE
from .procs import init_pidfd, is_supervisor
from .protocol import ProtocolError, decode_run
from .spec import JobSpec
from .status import JobFacts
from .store import Store


def load(store: Store, ends: Ends, make: Callable[[JobFacts, JobSpec], Job]) -> Iterator[Job]:
    """Every job of the store that is still there, each settled or adopted."""
    for rec in store.records():
        facts = rec.facts
        spec = JobSpec(argv=facts.argv, cwd=rec.cwd, user=rec.user, owner=facts.owner)
        job = make(facts, spec)
        if rec.status is not None and not job.dir.exists():
            store.remove(facts.id)  # a removal cut short
            continue
        if rec.status is not None:
            job._settle(rec.status)
        elif job._final_status() is not None:
            ends.settle(job)  # recorded while no engine ran: its row now
        else:
            _adopt(job, ends)
        yield job


def _adopt(job: Job, ends: Ends) -> None:
    try:
        run = decode_run((job.dir / RUN_FILE).read_bytes())
        sup = os.pidfd_open(run.supervisor_pid)
    except (OSError, ProtocolError):
        ends.settle(job)
        return
    if not is_supervisor(run.supervisor_pid, job.id, str(job.dir)):
        os.close(sup)
        ends.settle(job)
        return
    job._attach(run.pid, run.started_at, sup, init_pidfd(run))
    ends.watch(job)
