"""The gRPC servicer (``tjob.v1.JobService``): translates RPCs into engine calls, and nothing
more. Every job access goes through the guard; what a request may ask is :mod:`.checks`'s, how
a failure is answered :mod:`.answers`'s."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grpclib.const import Status as Code
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.server import Stream

from ..errors import InvalidSpec, JobFinished
from ..naming import parse_signal
from ..queue import NoRoom
from ..spec import JobSpec
from ..status import JobState, JobStatus
from . import checks, convert, eventstream, listing, quotas, stats
from .answers import (
    SHUTTING_DOWN,
    QuotaExceeded,
    ShuttingDown,
    answer,
    expected,
    peer,
    read_next,
    read_request,
)
from .audit import AuditLog, argv_field, clip
from .authz import Caller, Guard
from .limits import ClientQuota
from .logtext import shown, shown_argv
from .metrics import Metrics
from .observe import Observer, Outcome, note
from .output import IN_FIELD_1, OutputShares, Stalled, send_output, view_from_pb
from .policy import Policy
from .session import Session
from .stats import MAX_STATS_JOBS, Sampler
from .tjob.v1 import tjob_pb2 as pb
from .tjob.v1.tjob_grpc import JobServiceBase

if TYPE_CHECKING:
    from ..engine import Engine
    from ..execs import Exec as Execd  # `Exec` is the RPC's name here
    from ..follower import Follower
    from ..job import Job
    from ..status import Stream as Streams

log = logging.getLogger("tjobs")

QUEUE_REPLY_WAIT = 1.0  # seconds a queued Run waits to answer "running" if it starts at once


@dataclass
class _Calls:
    """RPC handler tasks in flight, so shutdown can end streams and wait for the rest."""

    streams: set[asyncio.Task[Any]] = field(default_factory=set)
    unary: set[asyncio.Task[Any]] = field(default_factory=set)


class JobService(JobServiceBase):
    """``tjob.v1.JobService`` over an :class:`Engine`; every job access goes through the guard."""

    # A follower that ends itself when a request without follow has what there was (a
    # gateway's, reading a node's stream: issue 18); the engine's end at the job's end only.
    followers_end_themselves = False

    def __init__(
        self,
        engine: Engine,
        policy: Policy,
        *,
        metrics: Metrics | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._engine = engine
        self.policy = policy
        self.observe = Observer(metrics, audit)
        self.guard = Guard(engine, policy.admins)
        self._calls = _Calls()
        self._starting: collections.Counter[str] = collections.Counter()
        self._quota = ClientQuota(policy.limits)
        self._shares = OutputShares()
        self._session = Session(self._shares, policy.limits.stall_timeout)
        self._sampler = Sampler()
        self.closing = False

    # --- the RPCs -------------------------------------------------------------------------------

    async def Run(self, stream: Stream[pb.RunRequest, pb.JobStatus]) -> None:
        with self._rpc("run", stream) as caller:
            req = await read_request(stream, pb.RunRequest, self._receiving(caller))
            note(argv=argv_field(req.argv), env_keys=sorted(req.env)[:256])
            places_jobs = getattr(self._engine, "places_jobs", False)
            spec = checks.run_spec(req, self.policy, caller.name, places_jobs=places_jobs)
            # Before the running-job cap: nothing may wait between that check and the count.
            mine = [j for j in self._engine.jobs() if j.owner == caller.name]
            await quotas.check_async(self.policy.store, mine, self._starting[caller.name])
            if req.queue or self.policy.queue:
                await self._queue(caller, spec, stream)
                return
            self._starting[caller.name] += 1  # counts until start returns: concurrent Runs
            began = time.monotonic()
            try:
                # Capped: the engine counts it as running from the check on, so that neither
                # a concurrent Run nor a queued start can take the same slot. Shielded: a
                # client gone mid-start does not leave its job started but unindexed.
                start = self._engine.start_async(spec, capped=True)
                job = await asyncio.shield(start)
            except NoRoom as e:
                raise checks.no_room(e) from None
            finally:
                self._starting[caller.name] -= 1
                if not self._starting[caller.name]:
                    del self._starting[caller.name]
            note(job=job.id)
            self.observe.started(job, time.monotonic() - began)
            st = job.status(usage=False)  # a job just started has used nothing yet
            log.info("run %s %s %s: %s", caller, job.short_id, shown_argv(spec.argv), _outcome(st))
            await stream.send_message(convert.status_to_pb(st))

    async def Stop(self, stream: Stream[pb.StopRequest, pb.JobStatus]) -> None:
        with self._rpc("stop", stream) as caller:
            req = await read_request(stream, pb.StopRequest, self._receiving(caller))
            grace = checks.grace(req)
            note(job=clip(req.id))
            job = self.guard.job(caller, req.id)
            note(job=job.id)
            was_running = job.running
            st = await job.stop_async(grace)
            if was_running:
                log.info("stop %s %s grace %gs: %s", caller, job.short_id, grace, _outcome(st))
            await stream.send_message(convert.status_to_pb(st))

    async def Status(self, stream: Stream[pb.JobRef, pb.JobStatus]) -> None:
        with self._rpc("status", stream) as caller:
            req = await read_request(stream, pb.JobRef, self._receiving(caller))
            job = self.guard.job(caller, req.id)
            await stream.send_message(convert.status_to_pb(job.status()))

    async def List(self, stream: Stream[pb.ListRequest, pb.ListResponse]) -> None:
        with self._rpc("list", stream) as caller:
            req = await read_request(stream, pb.ListRequest, self._receiving(caller))
            await stream.send_message(listing.page(self.guard.jobs(caller), req))

    async def Wait(self, stream: Stream[pb.JobRef, pb.JobStatus]) -> None:
        with self._rpc("wait", stream, streaming=True) as caller:
            req = await read_request(stream, pb.JobRef, self._receiving(caller))
            job = self.guard.job(caller, req.id)
            st = await job.wait_async()
            await stream.send_message(convert.status_to_pb(st))

    async def Logs(self, stream: Stream[pb.LogsRequest, pb.LogChunk]) -> None:
        with self._rpc("logs", stream, streaming=True, logs=True) as caller:
            req = await read_request(stream, pb.LogsRequest, self._receiving(caller))
            streams = convert.select_from_pb(req.streams)  # bad requests first, then lookups
            view_from_pb(req)
            job = self.guard.job(caller, req.id)
            await job.started_async()  # a queued job's output begins with its start
            loop = asyncio.get_running_loop()
            with (
                self._follower(job, streams, req, loop) as follower,
                self.observe.following() as sent,
            ):
                await follower.position_async()  # reads the log from its end, in a thread
                await send_output(
                    stream,
                    follower,
                    follow=req.follow or self.followers_end_themselves,
                    timestamps=req.timestamps,
                    client=caller.name,
                    shares=self._shares,
                    stall_timeout=self.policy.limits.stall_timeout,
                    sent=sent,
                )

    async def Stats(self, stream: Stream[pb.StatsRequest, pb.StatsResponse]) -> None:
        with self._rpc("stats", stream, streaming=True, stats=True) as caller:
            req = await read_request(stream, pb.StatsRequest, self._receiving(caller))
            interval = checks.stats_interval(req)
            named = list({job.id: job for job in self.guard.resolve(caller, req.ids)}.values())
            sampler = self._sampler
            while True:
                live = (j for j in self.guard.jobs(caller) if j.running and not j.queued)
                jobs = named or list(live)[:MAX_STATS_JOBS]
                before = {j.id: sampler.sample(j) for j in jobs}
                await asyncio.sleep(interval)
                out = [stats.stats(j, sampler.sample(j), before.get(j.id)) for j in jobs]
                await stream.send_message(pb.StatsResponse(jobs=out))
                alive = (pb.JOB_STATE_RUNNING, pb.JOB_STATE_QUEUED, pb.JOB_STATE_STARTING)
                ended = all(s.state not in alive for s in out)
                if not req.stream or (named and ended):
                    return

    async def Remove(self, stream: Stream[pb.JobRef, pb.JobStatus]) -> None:
        with self._rpc("remove", stream) as caller:
            req = await read_request(stream, pb.JobRef, self._receiving(caller))
            note(job=clip(req.id))
            job = self.guard.job(caller, req.id)
            note(job=job.id)
            st = job.status()
            await asyncio.to_thread(self._engine.remove, job.id)
            log.info("remove %s %s", caller, job.short_id)
            await stream.send_message(convert.status_to_pb(st))

    async def Signal(self, stream: Stream[pb.SignalRequest, pb.JobStatus]) -> None:
        with self._rpc("signal", stream) as caller:
            req = await read_request(stream, pb.SignalRequest, self._receiving(caller))
            sig = parse_signal(req.signal) if req.signal else parse_signal("KILL")
            job = self.guard.job(caller, req.id)
            await job.signal_async(sig, req.all)
            log.info("signal %s %s %s%s", caller, job.short_id, sig.name, " (all)" * req.all)
            await stream.send_message(convert.status_to_pb(job.status(usage=False)))

    async def Events(self, stream: Stream[pb.EventsRequest, pb.Event]) -> None:
        with self._rpc("events", stream, streaming=True) as caller:
            req = await read_request(stream, pb.EventsRequest, self._receiving(caller))
            await eventstream.serve(self._engine.events, caller, req, stream)

    async def Exec(self, stream: Stream[pb.ExecRequest, pb.ExecResponse]) -> None:
        with self._rpc("exec", stream, streaming=True, logs=True) as caller:
            req = await read_request(stream, pb.ExecRequest, self._receiving(caller))
            if req.stdin or req.tty:
                raise InvalidSpec("an exec with stdin or a terminal goes through Attach")
            note(job=clip(req.id))
            job = self.guard.job(caller, req.id)  # as Stop: the owner or an admin
            ex = await self._exec(caller, job, req, None)
            loop = asyncio.get_running_loop()
            with ex.follower(loop=loop) as follower, self.observe.following() as sent:
                await send_output(
                    stream,
                    follower,
                    follow=True,
                    client=caller.name,
                    shares=self._shares,
                    stall_timeout=self.policy.limits.stall_timeout,
                    sent=sent,
                    within=IN_FIELD_1,
                )
            end = await ex.wait_async()
            await stream.send_message(pb.ExecResponse(exit=convert.exec_exit_to_pb(end)))

    async def Attach(self, stream: Stream[pb.AttachRequest, pb.AttachReply]) -> None:
        with self._rpc("attach", stream, streaming=True, logs=True) as caller:
            receiving = self._receiving(caller)
            first = await read_request(stream, pb.AttachRequest, receiving)
            if first.WhichOneof("msg") != "start":
                raise InvalidSpec("the first AttachRequest must be an AttachStart")
            note(job=clip(first.start.id))
            job = self.guard.job(caller, first.start.id)
            note(job=job.id)
            target: Job | Execd = job
            if first.start.HasField("exec"):  # tjob exec -i/-t (issue 16)
                target = await self._exec(caller, job, first.start.exec, first.start.size)
            await job.started_async()  # a queued job: attach once it starts
            if not target.running and not first.start.logs:
                raise JobFinished(f"job {job.short_id} has ended: tjob logs shows its output")
            with self.observe.following() as sent:
                await self._session.run(
                    stream,
                    target,
                    first.start,
                    functools.partial(read_next, stream, pb.AttachRequest, receiving),
                    client=caller.name,
                    sent=sent,
                )

    def _follower(
        self, job: Job, streams: Streams, req: pb.LogsRequest, loop: asyncio.AbstractEventLoop
    ) -> Follower:
        """The reader of a Logs call (a gateway's reads the node's stream, issue 18)."""
        return job.follower(streams, req.skip, loop, **view_from_pb(req))

    async def _exec(
        self, caller: Caller, job: Job, req: pb.ExecRequest, size: pb.WindowSize | None
    ) -> Execd:
        """Start an exec into ``job`` (Exec, or Attach with ``exec``): its output is stored
        with the job's, so within the owner's disk quota."""
        note(job=job.id, argv=argv_field(req.argv))
        mine = [j for j in self._engine.jobs() if j.owner == job.owner]
        await quotas.check_async(dataclasses.replace(self.policy.store, jobs=None), mine, 0)
        rows, cols = (size.rows, size.cols) if size is not None else (0, 0)
        ex = await job.exec_async(
            list(req.argv),
            dict(req.env),
            req.workdir or None,
            stdin=req.stdin,
            tty=req.tty,
            tty_size=(rows, cols) if rows or cols else None,
        )
        log.info("exec %s %s %s", caller, ex.short_id, shown_argv(req.argv))
        return ex

    # --- the one place requests become answers --------------------------------------------------

    @contextlib.contextmanager
    def _rpc(
        self,
        name: str,
        stream: Stream[Any, Any],
        *,
        streaming: bool = False,
        logs: bool = False,
        stats: bool = False,
    ) -> Iterator[Caller]:
        """Authenticate the call and turn every failure into a gRPC status (and a log line);
        count it in the metrics and, if it changes state, in the audit log.

        Streaming calls (Logs, Wait, Stats) are registered so that shutdown can end them with
        UNAVAILABLE instead of leaving clients hanging.
        """
        with self.observe.call(name, peer(stream)) as out, self._answering(name, out, streaming):
            if self.closing:
                raise ShuttingDown(SHUTTING_DOWN)
            caller = self.guard.caller(stream.peer.cert())
            out.identity = caller.name
            self._quota.admit(caller.name)
            with self._quota.call(caller.name, follow=logs, stats=stats):
                yield caller

    @contextlib.contextmanager
    def _answering(self, name: str, out: Outcome, streaming: bool) -> Iterator[None]:
        """Turn every failure into a gRPC status and a log line; the outcome says which."""
        task = asyncio.current_task()
        calls = self._calls.streams if streaming else self._calls.unary
        if task is not None:
            calls.add(task)
        try:
            yield
        except asyncio.CancelledError:
            out.code = Code.CANCELLED
            if self.closing and streaming and task is not None:
                task.uncancel()  # we cancelled it to end the stream: answer instead
                out.code = Code.UNAVAILABLE
                raise GRPCError(Code.UNAVAILABLE, SHUTTING_DOWN) from None
            raise  # the client went away
        except GRPCError as err:
            out.code, out.reason = err.status, err.message or ""
            raise
        except StreamTerminatedError:
            out.code = Code.CANCELLED
            raise
        except Stalled:
            out.code = Code.CANCELLED
            who = out.peer if out.identity is None else shown(out.identity)
            log.info(
                "reset a %s stream of %s: its peer took nothing for %gs",
                name,
                who,
                self.policy.limits.stall_timeout,
            )
        except Exception as exc:
            out.code, out.reason = code, message = answer(exc)
            who = out.peer if out.identity is None else shown(out.identity)
            if code is Code.INTERNAL:
                log.error(
                    "failed %s from %s: %s", name, who, shown(str(exc)), exc_info=not expected(exc)
                )
            else:
                log.info("refused %s from %s: %s %s", name, who, code.name, shown(message))
            raise GRPCError(code, message) from None
        finally:
            if task is not None:
                calls.discard(task)

    def _receiving(
        self, caller: Caller
    ) -> Callable[[int], contextlib.AbstractContextManager[None]]:
        return functools.partial(self._quota.receiving, caller.name)

    async def _queue(
        self, caller: Caller, spec: JobSpec, stream: Stream[pb.RunRequest, pb.JobStatus]
    ) -> None:
        queued = self._engine.queued_count(caller.name)
        if queued >= self.policy.max_queued:
            raise QuotaExceeded(
                f"you have {queued} queued jobs, the most this server allows one client "
                "(tjobs --max-queued)"
            )
        room = self._engine.has_room(caller.name)
        job = await self._engine.enqueue_async(spec)
        if room:  # the dispatcher starts it at once: answer with where it got to
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.started_async(), QUEUE_REPLY_WAIT)
        st = job.status(usage=False)
        log.info("run %s %s %s: %s", caller, job.short_id, shown_argv(spec.argv), _outcome(st))
        await stream.send_message(convert.status_to_pb(st))

    def jobs_now(self) -> list[Job]:
        """Every job (the metrics' scrape-time snapshot, taken on the loop)."""
        return self._engine.jobs()

    def in_flight(self) -> set[asyncio.Task[Any]]:
        """The handler tasks of the calls being served now."""
        return self._calls.streams | self._calls.unary

    async def close(self, timeout: float) -> None:
        """Refuse new calls, end open streams with UNAVAILABLE, wait (bounded) for the rest."""
        self.closing = True
        self.observe.close()
        for task in list(self._calls.streams):
            task.cancel()
        pending = self.in_flight()
        if pending:
            await asyncio.wait(pending, timeout=timeout)


def _outcome(st: JobStatus) -> str:
    if st.state is JobState.FAILED:
        return f"failed: {shown(st.error or '')}"
    if st.state in (JobState.RUNNING, JobState.QUEUED, JobState.STARTING, JobState.CANCELLED):
        return st.state.value
    how = f"signal {st.signal_name}" if st.signal is not None else f"exit {st.exit_code}"
    return f"{st.state.value} ({how})"
