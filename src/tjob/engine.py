"""The library face: an Engine starts and finds jobs (:class:`~tjob.job.Job`).

The engine itself never forks: a launcher (:mod:`tjob.launcher`) started once per engine makes
each job's cgroup and hands the job to a spare supervisor (``tjob-shim``) that outlives the
engine. What the engine knows of a job it reads back from the job's directory
(``state_dir/jobs/<id>``), waking on inotify and pidfds through one shared watcher thread, so
any number of sync or async readers cost no thread each.

The async methods never make a blocking call on the event loop: each operation's decisions are
written once as a flow (:mod:`tjob.flows`); the sync face runs its blocking steps in place, the
async face in a thread (one hop per batch of them) or as a wait on an event. Reads of a job's
small files and cgroup counters (page cache, kernel memory) are not blocking steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from . import adopt, cgroups, jail, queued
from . import volumes as tjob_volumes
from .blanks import Blanks
from .cgroups import ClientLimits
from .deadlines import Deadlines
from .devices import check_block_device, device_of
from .diagnostics import Diagnostics, diagnose
from .ends import Ends
from .errors import InvalidSpec, JobNotFound, JobRunning, TjobError
from .events import EventLog, end_kind
from .execs import Execs
from .flows import Flow, Step, blocking, drive, drive_async
from .follower import Follower
from .index import JobIndex
from .job import Job, stop_together
from .jobdir import STOP_FILE
from .launcher_client import NO_ANSWER, LauncherClient, Reply
from .logstore import Chunk
from .names import Names
from .naming import check_timeout
from .prepare import Prepared, make_durable, prepare
from .queue import Dispatcher, Gate
from .recorder import Recorder
from .spec import DEFAULT_GRACE, DEFAULT_LIMITS, JobSpec, Limits
from .statedir import StateDir
from .status import JobFacts
from .store import Store
from .tenants import Tenants
from .watch import Hub

__all__ = ["Chunk", "Diagnostics", "Engine", "Follower", "Job"]


class Engine:
    r"""Starts and tracks jobs. Needs root: it writes cgroups and creates namespaces.

    state_dir: where job records and output live (made mode 0700).
    cgroup_root: the cgroup filesystem; v2 when it is a unified hierarchy, else v1.
    cgroup_parent: the cgroup (in each hierarchy) that holds one child per owner, which holds
        one per job (``<parent>/<owner>/<job>``).
    defaults: limits for fields a job leaves unset.
    device: ``MAJ:MIN`` to throttle disk I/O on; default: the disk holding ``/``.
    hide: host paths jobs must not see, besides ``jail.DEFAULT_HIDE`` and the state directory.
    seccomp: the jobs' seccomp profile (Docker's JSON format); ``"unconfined"`` for none.
    clients: ceilings of each owner's cgroup, all its jobs together (default: none).
    uid_range: ``(first, last)``: a job with ``user=None`` runs as a uid of its own owner's,
        allocated from this range (recorded in the state directory); None: as the engine's user.
    volumes: host directories jobs may ask for by name (:mod:`tjob.volumes`): a path (writable,
        a directory per client) or a ``volumes.Declared`` (path, mode ro/rw/shared).
    durable: a started job's record and files are on the disk (fsync) before start() returns,
    so it survives a power cut; False keeps them only across a crash of the processes.
    caps: the most a job may ask for, per field (None: only the sanity bounds); a spec over a
        cap raises :class:`InvalidSpec` naming the field and the cap.
    default_timeout: the timeout of jobs that set none (None: no timeout).
    timeout_grace: seconds between SIGTERM and SIGKILL when a job's timeout passes.
    max_running / owner_max_running: when :meth:`enqueue`\ d jobs start: while fewer than
        this many run on the engine / for their owner (None: no limit).

    One engine per state directory at a time (a lock file enforces it). Jobs keep running
    after :meth:`close`; a later engine on the same state directory finds them again.
    """

    def __init__(
        self,
        state_dir: str | Path = "/var/lib/tjob",
        *,
        cgroup_root: str | Path = "/sys/fs/cgroup",
        cgroup_parent: str = "tjob",
        defaults: Limits = DEFAULT_LIMITS,
        device: str | None = None,
        output_cap: int = 1 << 30,
        hide: Sequence[str] = (),
        seccomp: str | Path | None = jail.DEFAULT_PROFILE,
        clients: ClientLimits | None = None,
        uid_range: tuple[int, int] | None = None,
        volumes: Mapping[str, tjob_volumes.Declared | str] | None = None,
        durable: bool = True,
        caps: Limits | None = None,
        default_timeout: float | None = None,
        timeout_grace: float = DEFAULT_GRACE,
        max_running: int | None = None,
        owner_max_running: int | None = None,
    ) -> None:
        self._closed = False
        self.durable = durable
        if output_cap <= 0:
            raise InvalidSpec("output_cap must be positive")
        self.output_cap = output_cap
        self._index: JobIndex[Job] = JobIndex()
        self.state_dir = Path(state_dir).absolute()
        self.jobs_dir = self.state_dir / "jobs"
        self.defaults = defaults.merged(DEFAULT_LIMITS).validate()
        self.caps = caps.validate() if caps is not None else None
        self.default_timeout = check_timeout(default_timeout)
        self.timeout_grace = timeout_grace
        self._names = Names()
        self._deadlines: Deadlines[Job] = Deadlines(lambda job: job._time_out(timeout_grace))
        if device is None:
            device = defaults.device
        dev = check_block_device(device) if device else device_of("/")
        self.device = f"{dev[0]}:{dev[1]}" if dev else None
        self._cg = cgroups.detect(Path(cgroup_root), cgroup_parent, clients)
        # The jail (jail.py): checked once here, so that a bad profile or kernel fails now.
        hidden = [*jail.DEFAULT_HIDE, str(self.state_dir), *hide]
        self._jail = jail.settings(hidden, seccomp)
        self.volumes = tjob_volumes.check_declared(volumes or {})
        if self.volumes:
            self._jail = "\n".join([self._jail, *tjob_volumes.settings(self.volumes)])
        self._hidden = [os.path.realpath(p) for p in hidden]
        jail.check(self._jail)
        self._cg.setup()
        self._state = StateDir(self.state_dir)
        self._store = Store(self.state_dir / "jobs.db", durable)
        self._tenants = None
        if uid_range:
            try:
                given = self._store.client_uid_span()
                self._tenants = Tenants(*uid_range, self._store.client_uid, given)
            except TjobError:
                self._store.close()
                self._state.release()  # a refused start leaves the state dir free
                raise
        self._hub = Hub()
        store = self._store
        self._ends = Ends(self._hub, store, Recorder(self._cg, lambda st: store.finish(st.id, st)))
        self._queue = Dispatcher(self._start_queued, max_running, owner_max_running)
        self.events = EventLog(store)
        self._ends.on_end = self._ended
        self._execs = Execs(None, self._hub, output_cap)  # its launcher once there is one
        for job in adopt.load(self._store, self._ends, self._make_job, self.jobs_dir):
            self._index.add(job)
            self._names.take(job.owner, job.name, job.id)
            self._watch_deadline(job)  # one that passed while no engine ran: stopped now
            self._queue.running(job.id, job.owner, _settled(job), recorded=_recorded(job))
        self._launcher = LauncherClient(self.state_dir, self._cg, self._jail, durable)
        self._execs.launcher = self._launcher
        self._blanks = Blanks(self.jobs_dir)
        queued.load(self)  # the dispatcher may start them at once: after the launcher

    @property
    def cgroup_version(self) -> int:
        return self._cg.version

    def _make_job(self, facts: JobFacts, spec: JobSpec) -> Job:
        job = Job(facts, spec, self.jobs_dir / facts.id, self._cg, self._hub)
        job._execs = self._execs
        return job

    # ---------------------------------------------------------------- start

    def _prepare_and_send(
        self, spec: JobSpec, queued: Job | None = None
    ) -> tuple[Prepared, socket.socket, str | None]:
        """Every blocking step of a start before the supervisor's answer, as one batch; with
        why the job's files could not be made durable, if they could not (a queued job was
        acknowledged when queued: it runs whatever the disk says)."""
        prepared = prepare(self, spec, queued)
        sock = self._launcher.send(prepared.request)
        # While the launcher and the supervisor start it: the disk's waits overlap theirs.
        unsynced = make_durable(prepared, self._store, self.jobs_dir) if self.durable else None
        if queued is not None:
            # Once it is on its way: a crash before this leaves a queue row beside the job's,
            # and the next engine queues it again if it never ran (queued.load).
            self._store.dequeue(prepared.facts.id)
        return prepared, sock, unsynced if queued is None else None

    def _finish(self, job: Job, reply: Reply) -> str | None:
        """Attach the job from the supervisor's answer; the error if it did not start. The
        caller watches for its end once the start is said (the end's event comes after)."""
        if reply.pending is not None:
            # No answer in time (a stalled launcher?): the job may still start, so it is not
            # reported lost. It is "starting" until the answer comes, then becomes what
            # really happened (a stop asked meanwhile is applied then).
            job._confirmation = Gate()
            self.events.emit("starting", job.status(usage=False), time.time())
            pending = reply.pending
            self._hub.on_exit(pending.fileno(), lambda: self._late(job, pending))
            return None
        answer = reply.answer()
        if answer.ok and len(reply.fds) == 2:
            job._attach(answer.pid, answer.started_at, reply.fds[0], reply.fds[1])
            return None
        for fd in reply.fds:
            os.close(fd)
        return answer.error or "start failed"

    def _late(self, job: Job, sock: socket.socket) -> None:
        """The answer to a start that timed out has come (on the watcher's thread)."""
        try:
            error = self._finish(job, LauncherClient.late_reply(sock))
            if error is not None:
                self._ends.settle(job, self._who_died(error))
                return
            if job._sup_pidfd >= 0 and (job.dir / STOP_FILE).exists():
                job._kill()  # stopped while it was starting
            else:
                self._started(job)  # its timeout runs from now, and events say it
            self._ends.watch(job)
        finally:
            if job._confirmation is not None:
                job._confirmation.release()  # no longer "starting"; its followers begin

    def _started_by(self, job_id: str) -> Job:
        """The job an earlier start with the same request id made."""
        try:
            return self._index.get(job_id)
        except JobNotFound:
            raise TjobError("a start with this request id is still under way; retry") from None

    def _who_died(self, error: str) -> str:
        """A start nobody answered: name the process that died (a blocking step)."""
        if error != NO_ANSWER:
            return error
        who = "launcher" if self._launcher.died(1.0) else "job's supervisor"
        return f"the {who} died before the job started"

    def _start_flow(
        self, spec: JobSpec, queued: Job | None = None, capped: bool = False
    ) -> Flow[Job]:
        if spec.request_id and queued is None:
            known = yield blocking(lambda: self._store.by_request(spec.owner, spec.request_id))
            if known is not None:
                return self._started_by(known)
        # A capped start holds its slot from here (no wait between the check and the count).
        reserved = self._queue.reserve(spec.owner) if capped else None
        attached: Job | None = None  # started, its end not watched yet
        try:
            prepared, sock, unsynced = yield blocking(lambda: self._prepare_and_send(spec, queued))
            reply = yield Step(
                lambda: LauncherClient.receive(sock), lambda: LauncherClient.receive_async(sock)
            )
            if queued is None:
                job = self._make_job(prepared.facts, prepared.spec)
            else:
                job = queued
                job.facts, job.limits = prepared.facts, prepared.facts.limits
            error = self._finish(job, reply)
            if error is None and reply.pending is None:
                attached = job
            if error is not None:
                # The launcher recorded the failure before answering, or nobody did: the end step.
                yield blocking(lambda: self._ends.settle(job, self._who_died(error)))
            elif unsynced is not None:
                # Not to be acknowledged (a power cut could lose it): killed, its end recorded.
                yield blocking(job._kill)
        except BaseException:
            if attached is not None:
                self._ends.watch(attached)  # its end is recorded all the same
            if reserved is not None:
                self._queue.ended(reserved)  # the slot is free again
            raise
        self._index.add(job)
        self._queue.running(job.id, job.owner, _settled(job), reserved, _recorded(job))
        if attached is not None:
            if unsynced is None:
                self._started(job)
            self._ends.watch(job)  # after the start is said: the end's event never comes first
        if unsynced is not None and error is None:
            raise TjobError(unsynced)
        return job

    def _started(self, job: Job) -> None:
        """The job's command runs: its deadline is watched, and the event said."""
        self._watch_deadline(job)
        self.events.emit("started", job.status(usage=False), job.started_at or time.time())

    def _ended(self, job: Job) -> None:
        """The end step of a job ran: free its slot, say how it ended."""
        self._queue.ended(job.id)
        final = job._final
        if final is not None:
            self.events.emit(end_kind(final), final, final.ended_at or time.time())

    # ---------------------------------------------------------------- queue

    def enqueue(self, spec: JobSpec) -> Job:
        """Queue ``spec``: it starts once fewer than ``max_running`` jobs run, and fewer than
        ``owner_max_running`` of its owner's, first in first out per owner, round robin
        between owners. Returns the job in state ``queued`` (or already started)."""
        return queued.enqueue(self, spec)

    async def enqueue_async(self, spec: JobSpec) -> Job:
        """Like :meth:`enqueue` (its record is written from a thread)."""
        return await asyncio.to_thread(queued.enqueue, self, spec)

    def _start_queued(self, job_id: str) -> None:
        queued.start(self, self._index.get(job_id))

    def running_count(self, owner: str | None = None) -> int:
        """Jobs running (or starting) on this engine, or ``owner``'s."""
        return self._queue.running_count(owner)

    def queued_count(self, owner: str | None = None) -> int:
        return self._queue.queued_count(owner)

    def has_room(self, owner: str) -> bool:
        """Nothing is queued and ``owner``'s job would start at once."""
        return self._queue.has_room(owner)

    def _watch_deadline(self, job: Job) -> None:
        timeout = job.facts.timeout
        if timeout is not None and job.started_at is not None and job.running:
            self._deadlines.add(job, job.started_at + timeout)

    def start(self, spec: JobSpec, *, capped: bool = False) -> Job:
        """Start ``spec`` and return once the command has been exec'd (or failed to be).

        A command that cannot start gives a job in state ``failed`` with the reason in
        ``status().error``; invalid specs raise :class:`InvalidSpec` and create nothing.
        ``capped``: only if fewer than ``max_running`` jobs run, and fewer than
        ``owner_max_running`` of its owner's (else :class:`tjob.queue.NoRoom`), counting it
        as running from the check on, as queued starts are.
        """
        return drive(self._start_flow(spec, capped=capped))

    async def start_async(self, spec: JobSpec, *, capped: bool = False) -> Job:
        """Like :meth:`start`, awaiting the supervisor's answer instead of blocking."""
        return await drive_async(self._start_flow(spec, capped=capped))

    # ---------------------------------------------------------------- lookup

    def get(self, job_id: str) -> Job:
        """The job with this id, or the only one whose id starts with it (O(log n))."""
        return self._index.get(job_id)

    def find(self, owner: str, name: str) -> Job | None:
        """The job of ``owner`` named ``name`` (not removed), if any."""
        job_id = self._names.get(owner, name)
        if job_id is None:
            return None
        try:
            return self._index.get(job_id)
        except JobNotFound:
            return None

    def jobs(self) -> list[Job]:
        """Every job this engine knows, newest first."""
        return sorted(self._index.all(), key=lambda j: j.created_at, reverse=True)

    # ---------------------------------------------------------------- removal

    def remove(self, job_id: str) -> None:
        """Forget a finished job: its record, its output and its directory."""
        job = self.get(job_id)
        if not job.status().state.finished:
            raise JobRunning(f"job {job.short_id} is still running; stop it first")
        self._index.discard(job.id)
        self._names.release(job.owner, job.name, job.id)
        self._ends.forget(job)
        self._queue.ended(job.id)  # its end step may not have run yet: forget ends it
        self.events.emit("removed", job.status(usage=False), time.time())
        # Files first: they are what fills a disk, and the record needs room to be deleted.
        shutil.rmtree(job.dir, ignore_errors=True)
        self._store.remove(job.id)

    def prune(self, older_than: float) -> list[str]:
        """Remove finished jobs that ended more than ``older_than`` seconds ago."""
        # Ends recorded whose row the end step has not written yet (their supervisor exiting):
        # written now, so that their age is measured like every other's.
        for job in self._index.all():
            if job._final is not None and not job._settled:
                self._ends.settle(job)
        ended = set(self._store.expired(older_than))
        removed = []
        for job_id in sorted(ended):
            with contextlib.suppress(JobNotFound, TjobError):
                self.remove(job_id)
                removed.append(job_id)
        return removed

    # ---------------------------------------------------------------- diagnostics

    def diagnostics(self) -> Diagnostics:
        """What the engine holds now (helper processes, watches, job cgroups), after settling
        any job whose supervisor has exited."""
        self._ends.settle_exited(self._index.all())
        return diagnose(self._launcher.pid, self._hub, self._cg)

    # ---------------------------------------------------------------- close

    def close(self, stop_jobs: bool = False, grace: float = 10.0) -> None:
        """Stop the launcher and release resources.

        Running jobs keep running (a later engine re-adopts them) unless ``stop_jobs``.
        """
        if self._closed:
            return
        if stop_jobs:
            self._queue.close()  # none starts now; the queued ones are cancelled
            for job in self.jobs():
                if job.queued:
                    job.stop(0)
            stop_together([j for j in self.jobs() if not j.status().state.finished], grace)
        self._closed = True
        self._queue.close()
        self._deadlines.close()
        self._launcher.close()
        self._execs.close()
        self._hub.close()  # after this, no end step runs
        for job in self._index.all():
            self._ends.forget(job)
        self.events.close()
        self._store.close()
        self._blanks.close()
        self._state.release()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settled(job: Job) -> Callable[[], bool]:
    return lambda: job._settled


def _recorded(job: Job) -> Callable[[], bool]:
    return lambda: not job.running  # its end is recorded (status.json): its processes are gone
