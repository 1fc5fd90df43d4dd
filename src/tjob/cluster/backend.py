"""The gateway's engine: what :class:`tjob.api.service.JobService` calls an engine, over the
cluster. Placement is Ray's (a placement group per job, held until the job ends); execution is
the chosen node's tjob engine; the record of where each job is lives in :mod:`.records`.

Statuses are answered from memory and kept fresh by each node's event stream (and a resync
when a node (re)joins and every RESYNC seconds); Ray's view of the nodes is read every POLL
seconds: a node Ray reports dead (or that is gone) makes its running jobs LOST until it is back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import ssl
import time
from collections.abc import Coroutine, Iterable
from typing import Any

from grpclib.const import Status as Code
from grpclib.exceptions import GRPCError

from ..api import convert
from ..api.answers import QuotaExceeded
from ..api.tjob.v1 import tjob_pb2 as pb
from ..errors import AmbiguousJobId, InvalidSpec, JobNotFound
from ..queue import NoRoom
from ..spec import JobSpec, Limits
from ..status import JobState
from . import placement
from .events import GatewayEvents
from .nodes import NodeLink, forwarding
from .placement import NodeInfo
from .raycluster import PG_PREFIX, RayCluster
from .records import Records
from .remote import RemoteJob

log = logging.getLogger("tjobs")
POLL = 1.0  # seconds between reads of Ray's node table
PLACE_POLL = 0.005  # seconds before the first look at a placement; doubled up to 0.2 s
MAX_REQUESTS = 10_000  # request ids remembered for retried Runs (the newest)
RESYNC = 10.0  # seconds between full status refreshes of a node's running jobs


class ClusterEngine:
    """The jobs of every node, as one engine. Create inside the event loop that serves it."""

    places_jobs = True  # JobService honours RunRequest.node

    def __init__(
        self,
        ray: RayCluster,
        records: Records,
        tls: ssl.SSLContext,
        *,
        defaults: Limits,
        place_wait: float,
        max_running: int | None = None,
        owner_max_running: int | None = None,
    ) -> None:
        self._ray = ray
        self._records = records
        self._tls = tls
        self._defaults = defaults
        self._place_wait = place_wait
        self._caps = (max_running, owner_max_running)
        self._starting: collections.Counter[str] = collections.Counter()  # capped Runs, by owner
        self._loop = asyncio.get_running_loop()
        self._jobs: dict[str, RemoteJob] = {}
        for rec in records.all():
            self._jobs[rec.status.id] = RemoteJob(self, rec.status, rec.node, rec.placement)
        self._nodes: dict[str, NodeInfo] = {}  # alive ones, by name
        self._links: dict[str, NodeLink] = {}
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._lost: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watch: asyncio.Task[None] | None = None
        # Runs by (owner, request id), in flight or done (this gateway's life: memory only).
        self._requests: dict[tuple[str, str], asyncio.Future[RemoteJob]] = {}
        self.events = GatewayEvents()  # what the servicer's Events serves

    # --- the engine interface the servicer uses ----------------------------------------------

    def jobs(self) -> list[RemoteJob]:
        return sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)

    def get(self, prefix: str) -> RemoteJob:
        if prefix in self._jobs:
            return self._jobs[prefix]
        found = [j for i, j in self._jobs.items() if i.startswith(prefix)]
        if not found:
            raise JobNotFound(f"no job {prefix}")
        if len(found) > 1:
            raise AmbiguousJobId(f"job id prefix {prefix} is ambiguous")
        return found[0]

    def find(self, owner: str, name: str) -> RemoteJob | None:
        for job in self.jobs():
            if job.owner == owner and job.name == name:
                return job
        return None

    def running_count(self, owner: str | None = None) -> int:
        return sum(1 for j in self._jobs.values() if j.running and owner in (None, j.owner))

    def queued_count(self, owner: str | None = None) -> int:
        return 0  # a Run waits for room (--place-wait); nothing is queued at the gateway

    def has_room(self, owner: str) -> bool:
        return True

    async def enqueue_async(self, spec: JobSpec) -> RemoteJob:
        return await self.start_async(spec)

    async def start_async(self, spec: JobSpec, capped: bool = False) -> RemoteJob:
        """Place the job with Ray, then start it on the node Ray chose. A Run repeated with the
        same request id (a client's retry) gets the first one's job, wherever Ray put it.
        ``capped``: counted against the gateway's running-job caps from the check on
        (:class:`NoRoom` over one), as a single host's engine does."""
        if spec.stdin or spec.tty:
            raise InvalidSpec("-i/-t (a job's stdin, a terminal) are not served through a gateway")
        if not capped:
            return await self._start_once(spec)
        self._reserve(spec.owner)
        self._starting[spec.owner] += 1
        try:
            return await self._start_once(spec)
        finally:
            self._starting[spec.owner] -= 1
            if not self._starting[spec.owner]:
                del self._starting[spec.owner]

    def _reserve(self, owner: str) -> None:
        host, per_owner = self._caps
        mine = self.running_count(owner) + self._starting[owner]
        if per_owner is not None and mine >= per_owner:
            raise NoRoom("owner", mine, per_owner)
        everyone = self.running_count() + sum(self._starting.values())
        if host is not None and everyone >= host:
            raise NoRoom("host", everyone, host)

    async def _start_once(self, spec: JobSpec) -> RemoteJob:
        if not spec.request_id:
            return await self._start(spec)
        key = (spec.owner, spec.request_id)
        first = self._requests.get(key)
        if first is None:
            if len(self._requests) >= MAX_REQUESTS:
                del self._requests[next(iter(self._requests))]  # the oldest
            first = self._requests[key] = asyncio.ensure_future(self._start(spec))
            first.add_done_callback(lambda f: _failed(f) and self._requests.pop(key, None))
        return await asyncio.shield(first)

    async def _start(self, spec: JobSpec) -> RemoteJob:
        d, asked = self._defaults, spec.limits  # the node gives the other limits' defaults
        limits = Limits(
            cpu_percent=asked.cpu_percent or d.cpu_percent,
            memory_mb=asked.memory_mb or d.memory_mb,
            pids=asked.pids,
            rbps=asked.rbps,
            wbps=asked.wbps,
        )
        want = placement.request(limits.cpu_percent or 0, limits.memory_mb or 0, spec.node)
        self._check_feasible(want, spec.node)
        name = PG_PREFIX + secrets.token_hex(12)
        await asyncio.to_thread(self._ray.reserve, name, want)
        try:
            node = self._node_of(await self._placed(name, want))
            link = self.link(node)
            with forwarding(node):
                msg = await link.run(_run_request(spec, limits), spec.owner)
        except BaseException:
            await asyncio.to_thread(self._ray.release, name)
            raise
        return await self._recorded(msg, node, name)

    async def _placed(self, name: str, want: dict[str, float]) -> str:
        """The Ray node that holds the group, once Ray placed it (polled: a Run waiting for room
        holds no thread); QuotaExceeded after --place-wait."""
        end = time.monotonic() + self._place_wait
        pause = PLACE_POLL
        while (ray_id := await asyncio.to_thread(self._ray.placed, name)) is None:
            if time.monotonic() >= end:
                raise QuotaExceeded(
                    f"no node has room for {placement.shown(want)} now (waited "
                    f"{self._place_wait:g}s, tjobs gateway --place-wait); try again later"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)
        return ray_id

    async def _recorded(self, msg: pb.JobStatus, node: str, held: str) -> RemoteJob:
        known = self._jobs.get(msg.id)
        if known is not None:  # a retried Run (same request id): the node gave the first job
            await asyncio.to_thread(self._ray.release, held)
            return known
        job = RemoteJob(self, convert.status_from_pb(msg), node, held)
        self._jobs[job.id] = job
        await asyncio.to_thread(self._records.add, job.status(), node, held)
        if job.status().state.finished:
            await self._release(job)
        else:  # an end the node's event reported before the job was known here
            self._later(self._touched(job.id))
        return job

    def _later(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def remove(self, job_id: str) -> None:
        """Forget a finished job on its node and here (called in a thread, as an engine's)."""
        asyncio.run_coroutine_threadsafe(self._remove(job_id), self._loop).result()

    async def _remove(self, job_id: str) -> None:
        job = self._jobs[job_id]
        link = self.link(job.node)
        with forwarding(job.node):
            await link.remove(job.id, job.owner)
        self._jobs.pop(job_id, None)
        await self._release(job)
        await asyncio.to_thread(self._records.remove, job_id)

    async def sample(self, jobs: list[RemoteJob], interval: float) -> list[pb.JobStats]:
        """One Stats sample of each job over ``interval``, from its node (each node once per
        owner, all at once); a job whose node is gone shows its state only."""
        groups: dict[tuple[str, str], list[RemoteJob]] = {}
        for job in jobs:
            groups.setdefault((job.node, job.owner), []).append(job)

        async def one(node: str, owner: str, group: list[RemoteJob]) -> list[pb.JobStats]:
            with contextlib.suppress(GRPCError):
                link = self.link(node)
                req = pb.StatsRequest(ids=[j.id for j in group], interval_seconds=interval)
                with forwarding(node):
                    replies = await link.stub.Stats(req, metadata=link.on_behalf(owner))
                    return [s for r in replies for s in r.jobs]
            await asyncio.sleep(interval)
            return [_bare_stats(j) for j in group]

        if not groups:
            await asyncio.sleep(interval)
            return []
        parts = await asyncio.gather(*(one(n, o, g) for (n, o), g in groups.items()))
        return [s for part in parts for s in part]

    # --- nodes --------------------------------------------------------------------------------

    def link(self, node: str) -> NodeLink:
        """The channel to a node in the cluster now; UNAVAILABLE if it is not."""
        found = self._links.get(node)
        if found is None:
            raise GRPCError(
                Code.UNAVAILABLE,
                f"node {node} is not in the cluster now (its jobs are served again if it comes "
                "back with its state)",
            )
        return found

    def lost_since(self, node: str) -> float | None:
        return self._lost.get(node)

    def _node_of(self, ray_id: str) -> str:
        for info in self._nodes.values():
            if info.ray_id == ray_id:
                return info.name
        raise GRPCError(Code.UNAVAILABLE, "Ray placed the job on a node that has left; try again")

    def _check_feasible(self, want: dict[str, float], node: str) -> None:
        """Refuse at once what no node of the cluster could ever hold (Ray would wait forever)."""
        if node and node not in self._nodes:
            raise InvalidSpec(f"no node {node} in the cluster (nodes: {self._names()})")
        if not any(placement.fits(want, n.resources) for n in self._nodes.values()):
            raise InvalidSpec(
                f"no node of the cluster can hold {placement.shown(want)}"
                + (f" on node {node}" if node else "")
                + f" (nodes: {self._names()})"
            )

    def _names(self) -> str:
        return ", ".join(sorted(self._nodes)) or "none"

    async def start(self) -> None:
        """Read Ray's nodes once (so the first Run can be placed), then keep watching."""
        await self._poll()
        for job in list(self._jobs.values()):
            if job.placement and job.status().state.finished:
                await self._release(job)  # it ended while the gateway was down
        await self._release_orphans()
        self._watch = asyncio.create_task(self._watching())

    async def _watching(self) -> None:
        while True:
            await asyncio.sleep(POLL)
            try:
                await self._poll()
            except Exception as err:
                log.warning("cannot read Ray's nodes: %s", err)

    async def _poll(self) -> None:
        seen = await asyncio.to_thread(self._ray.nodes)
        alive = {n.name: n for n in seen if n.alive}
        for name in list(self._nodes):
            if name not in alive or alive[name].ray_id != self._nodes[name].ray_id:
                await self._left(name)
        for name, info in alive.items():
            if name not in self._nodes:
                self._joined(info)
        now = time.time()
        for job in self._jobs.values():
            if job.node not in self._nodes and job.node not in self._lost:
                self._lost[job.node] = now  # in the records, not in the cluster
                job.changed()

    def _joined(self, info: NodeInfo) -> None:
        log.info("node %s joined at %s", info.name, info.address)
        self._nodes[info.name] = info
        self._links[info.name] = link = NodeLink(info.name, info.address, self._tls)
        self._lost.pop(info.name, None)
        self._followers[info.name] = asyncio.create_task(self._follow(link))
        for job in self._of(info.name):
            job.changed()

    async def _left(self, name: str) -> None:
        log.warning("node %s left the cluster", name)
        self._nodes.pop(name, None)
        self._lost[name] = time.time()
        task = self._followers.pop(name, None)
        if task is not None:
            task.cancel()
        link = self._links.pop(name, None)
        if link is not None:
            link.close()
        for job in self._of(name):
            job.changed()
            if job.status().state is JobState.LOST:
                self.events.lost(job.status())
            if job.placement:  # Ray would hold it on another node for a job that is not there
                await self._release(job)

    def _of(self, node: str) -> Iterable[RemoteJob]:
        return [j for j in self._jobs.values() if j.node == node]

    async def _follow(self, link: NodeLink) -> None:
        """Keep the statuses of a node's jobs fresh: its event stream, and a resync."""
        resync = asyncio.create_task(self._resyncing(link.name))
        try:
            while True:
                with contextlib.suppress(GRPCError), forwarding(link.name):
                    async with link.events() as stream:
                        await stream.send_message(pb.EventsRequest(), end=True)
                        await self._resync(link.name)  # what ended before the subscription
                        async for ev in stream:
                            await self._touched(ev.id)
                await asyncio.sleep(POLL)
        finally:
            resync.cancel()

    async def _resyncing(self, node: str) -> None:
        while True:
            await asyncio.sleep(RESYNC)
            await self._resync(node)

    async def _resync(self, node: str) -> None:
        for job in self._of(node):
            if job.running or job.placement:
                await self._touched(job.id)

    async def _touched(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            return
        with contextlib.suppress(GRPCError):
            await job.refresh()
            await asyncio.to_thread(self._records.update, job.status())
        if job.placement and not job.running:
            await self._release(job)
        elif job.running and not job.placement and job.node in self._nodes:
            await self._rehold(job)

    async def _rehold(self, job: RemoteJob) -> None:
        """Hold a running job's share again on its own node: its node left (its group was
        released then, or Ray would have moved it) and came back with the job still running."""
        st = job.status()
        want = placement.request(st.limits.cpu_percent, st.limits.memory_mb, job.node)
        job.placement = name = PG_PREFIX + secrets.token_hex(12)
        await asyncio.to_thread(self._ray.reserve, name, want)
        await asyncio.to_thread(self._records.held, job.id, name)

    async def _release(self, job: RemoteJob) -> None:
        held, job.placement = job.placement, ""
        if held:
            await asyncio.to_thread(self._ray.release, held)
            await asyncio.to_thread(self._records.released, job.id)

    async def _release_orphans(self) -> None:
        """Groups held for Runs the gateway never recorded (it stopped between placing and
        recording): no job holds them."""
        held = await asyncio.to_thread(self._ray.held)
        mine = {j.placement for j in self._jobs.values()}
        for name in held - mine:
            await asyncio.to_thread(self._ray.release, name)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for task in self._followers.values():
            task.cancel()
        for link in self._links.values():
            link.close()


def _failed(f: asyncio.Future[RemoteJob]) -> bool:
    return f.cancelled() or f.exception() is not None


def _bare_stats(job: RemoteJob) -> pb.JobStats:
    st = job.status()
    return pb.JobStats(id=st.id, argv=list(st.argv), state=convert.state_to_pb(st.state))


def _run_request(spec: JobSpec, limits: Limits) -> pb.RunRequest:
    """The node's Run: the job as asked, its CPU and memory as Ray placed them."""
    req = pb.RunRequest(
        argv=list(spec.argv),
        limits=convert.limits_to_pb(limits),
        env=dict(spec.env),
        workdir=spec.cwd,
        name=spec.name,
        labels=dict(spec.labels),
        request_id=spec.request_id,
    )
    if spec.timeout is not None:
        req.timeout_seconds = spec.timeout
    req.volumes.extend(convert.volume_to_pb(v) for v in spec.volumes)
    return req
