"""Start-up: the jobs an earlier engine left in the state directory, running ones included.

Each job in the store is found finished (its row or its ``status.json`` says so), running
(its supervisor is alive: the engine takes over its pidfds and watches it), or lost (no
supervisor, no recorded end: recorded lost now, by the engine's end step).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

from .ends import Ends
from .job import Job
from .jobdir import RUN_FILE
from .procs import child_pidfd, is_supervisor
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
        run = json.loads((job.dir / RUN_FILE).read_bytes())
        sup = os.pidfd_open(run["supervisor_pid"])
    except (OSError, ValueError, KeyError):
        ends.settle(job)
        return
    if not is_supervisor(run["supervisor_pid"]):
        os.close(sup)
        ends.settle(job)
        return
    job._attach(run.get("pid"), run["started_at"], sup, child_pidfd(run, "init_pid"))
    ends.watch(job)
