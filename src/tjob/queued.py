"""The engine's queued jobs: queue one, start one when the dispatcher says, cancel one, and
queue again at start-up what an earlier engine left queued (:mod:`tjob.queue` decides when).

A queued job is a :class:`~tjob.job.Job` with a gate and no directory; its spec is a row of
the store's ``queue`` table. Its start is an ordinary start with the job's id (the ``jobs``
row written, then the ``queue`` row deleted: a crash between leaves it started, and the next
engine drops the leftover queue row). A cancelled or unstartable one gets a directory with its
final status, like every finished job.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import time
from functools import partial
from typing import TYPE_CHECKING, Protocol

from .adopt import NEVER_STARTED
from .errors import EngineClosed, TjobError
from .flows import drive
from .jobdir import RUN_FILE, SPEC_FILE, create_file
from .prepare import EngineState, check
from .queue import Gate, spec_from_dict, spec_to_dict
from .recorder import record_end
from .spec import JobSpec
from .status import JobFacts, JobState, JobStatus

if TYPE_CHECKING:
    from .events import EventLog
    from .flows import Flow
    from .index import JobIndex
    from .job import Job
    from .queue import Dispatcher


class QueuingEngine(EngineState, Protocol):
    """What the queued jobs use of the engine (:class:`tjob.engine.Engine` is one)."""

    events: EventLog
    _index: JobIndex[Job]
    _queue: Dispatcher

    def _make_job(self, facts: JobFacts, spec: JobSpec) -> Job: ...

    def _start_flow(self, spec: JobSpec, queued: Job | None = None) -> Flow[Job]: ...

    def _started_by(self, job_id: str) -> Job: ...


CANCELLED = "cancelled while queued: it never ran"


def enqueue(engine: QueuingEngine, spec: JobSpec) -> Job:
    """Validate and record ``spec`` as queued; the dispatcher starts it when there is room.
    A spec with the request id of an earlier start or enqueue of its owner's returns that job
    (its request id is recorded with the queue row, in the same commit)."""
    limits = check(engine, spec)
    if spec.request_id:
        known = engine._store.by_request(spec.owner, spec.request_id)
        if known is not None:
            return engine._started_by(known)
    job_id = secrets.token_hex(16)
    created_at = time.time()
    job = _queued_job(engine, job_id, created_at, spec, limits)
    engine._names.take(spec.owner, spec.name, job_id)
    try:
        engine._store.enqueue(job_id, spec.owner, created_at, spec_to_dict(spec))
    except BaseException:
        engine._names.release(spec.owner, spec.name, job_id)
        raise
    engine._index.add(job)
    engine.events.emit("queued", job.status(), created_at)  # before the dispatcher sees it
    engine._queue.add(job_id, spec.owner)
    return job


def _queued_job(
    engine: QueuingEngine, job_id: str, created_at: float, spec: JobSpec, limits: object
) -> Job:
    from .prepare import resolve_limits
    from .spec import Limits

    assert isinstance(limits, Limits)
    timeout = spec.timeout if spec.timeout is not None else engine.default_timeout
    facts = JobFacts(
        job_id,
        tuple(spec.argv),
        spec.owner,
        created_at,
        resolve_limits(limits, limits.device or engine.device),
        spec.name,
        dict(spec.labels),
        timeout,
        spec.request_id,
    )
    job = engine._make_job(facts, spec)
    job._gate = Gate()
    job._cancel = partial(cancel, engine, job)
    return job


def start(engine: QueuingEngine, job: Job) -> None:
    """Start a queued job (the dispatcher's thread); a refusal is its failed end."""
    assert job._gate is not None
    try:
        drive(engine._start_flow(job.spec, job))
    except EngineClosed:
        return  # still in the queue table: the next engine starts it
    except Exception as e:  # a refusal (InvalidSpec: its user is gone) or a failure
        with contextlib.suppress(Exception):
            _record_unstarted(engine, job, JobState.FAILED, str(e) or type(e).__name__)
        engine._queue.ended(job.id)
    job._gate.release()


def cancel(engine: QueuingEngine, job: Job) -> JobStatus | None:
    """Take ``job`` out of the queue and record it cancelled; None if it is starting."""
    if not engine._queue.remove(job.id, job.owner):
        return None
    status = _record_unstarted(engine, job, JobState.CANCELLED, CANCELLED)
    assert job._gate is not None
    job._gate.release()
    return status


def _record_unstarted(engine: QueuingEngine, job: Job, state: JobState, error: str) -> JobStatus:
    """A job that never ran: its row, directory and final status, as every finished job's."""
    status = JobStatus.of(
        job.facts, state, stopped=state is JobState.CANCELLED, error=error, ended_at=time.time()
    )
    store = engine._store
    with contextlib.suppress(TjobError):  # a row the failed start wrote already
        store.add(job.facts, job.spec.cwd, job.spec.user)
    job.dir.mkdir(mode=0o700, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        create_file(job.dir / SPEC_FILE, json.dumps(job.facts.to_dict()).encode())
    record_end(job.dir, status)
    store.finish(job.id, status)
    store.dequeue(job.id)
    job._settle(status)
    engine.events.emit(state.value, status, status.ended_at or time.time())
    return status


def _started(engine: QueuingEngine, job_id: str) -> bool:
    """Whether a queued job's start got under way. One the last engine was starting when it
    died, that never ran (recorded lost, or failed as never taken, no run.json), is forgotten,
    to be queued again."""
    try:
        job = engine._index.get(job_id)
    except LookupError:
        return False
    st = job.status(usage=False)
    unstarted = st.state is JobState.LOST or (
        st.state is JobState.FAILED and st.error == NEVER_STARTED
    )
    if not unstarted or st.started_at is not None or (job.dir / RUN_FILE).exists():
        return True
    engine._index.discard(job_id)
    engine._names.release(job.owner, job.name, job_id)
    shutil.rmtree(job.dir, ignore_errors=True)
    engine._store.remove(job_id)
    return False


def load(engine: QueuingEngine) -> None:
    """Queue again, in order, what an earlier engine left queued."""
    for job_id, created_at, d in engine._store.queued():
        if _started(engine, job_id):
            engine._store.dequeue(job_id)  # the queue row outlived a crash
            continue
        spec = spec_from_dict(d)
        try:
            limits = spec.limits.merged(engine.defaults)
            job = _queued_job(engine, job_id, created_at, spec, limits)
        except (TjobError, ValueError, TypeError):
            engine._store.dequeue(job_id)  # unreadable: nothing can start it
            continue
        with contextlib.suppress(TjobError):
            engine._names.take(spec.owner, spec.name, job_id)
        if spec.request_id:  # a start cut short forgot it with its row (_started)
            engine._store.remember_request(spec.owner, spec.request_id, job_id)
        engine._index.add(job)
        engine._queue.add(job_id, spec.owner)
