"""The servicers of the cluster: the same :class:`tjob.api.service.JobService` (its
authorization, quotas, audit and metrics), on a node and on the gateway.

On a node the only client is the gateway (its certificate's name, ``tjobs node --gateway``):
any other caller is refused UNAUTHENTICATED. The gateway names the job's owner in the
``tjob-owner`` header and the node serves the call as that owner would be served, so its engine
runs the job under the owner's identity (its uid range, cgroup, quotas) as on one host. A
call without the header (the gateway's event stream) is the gateway's own, with an admin's view.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from ..api import checks
from ..api.answers import read_request
from ..api.authz import Caller, Unauthenticated
from ..api.service import JobService
from ..api.stats import MAX_STATS_JOBS
from ..api.tjob.v1 import tjob_pb2 as pb
from ..api.tls import usable_identity
from .nodes import OWNER_HEADER
from .remote import RemoteFollower, RemoteJob

if TYPE_CHECKING:
    from ..engine import Follower, Job
    from ..status import Stream as Streams
    from .backend import ClusterEngine

GATEWAY = "tjob-gateway"  # the gateway's certificate name nodes take, by default


class NodeService(JobService):
    """A node's servicer: the gateway's calls only, each on behalf of the owner it names."""

    gateway = GATEWAY  # set by tjobs node --gateway

    @contextlib.contextmanager
    def _rpc(self, name: str, stream: Stream[Any, Any], **kw: bool) -> Iterator[Caller]:
        with super()._rpc(name, stream, **kw) as caller:
            if caller.name != self.gateway:
                raise Unauthenticated(
                    "this is a cluster node: it takes calls from its gateway only (call the "
                    "gateway)"
                )
            headers: Mapping[str, object] = stream.metadata or {}
            owner = headers.get(OWNER_HEADER)
            if owner is None:
                yield Caller(caller.name, admin=True)
                return
            if not isinstance(owner, str) or not usable_identity(owner):
                raise Unauthenticated("the gateway named no usable owner")
            yield Caller(owner)


class GatewayService(JobService):
    """The gateway's servicer: the engine is a :class:`ClusterEngine`; a Logs call reads the
    job's output from its node, which decides where a Logs call without follow ends."""

    followers_end_themselves = True

    def _follower(
        self, job: Job, streams: Streams, req: pb.LogsRequest, loop: asyncio.AbstractEventLoop
    ) -> Follower:
        remote = cast(RemoteJob, job)
        backend = cast("ClusterEngine", self._engine)
        link = backend.link(remote.node)  # UNAVAILABLE, saying so, if the node is gone
        return cast("Follower", RemoteFollower(link, remote, req))

    async def Stats(self, stream: Stream[pb.StatsRequest, pb.StatsResponse]) -> None:
        """Each job's sample from its node, over the same interval, in one reply."""
        with self._rpc("stats", stream, streaming=True, stats=True) as caller:
            req = await read_request(stream, pb.StatsRequest, self._receiving(caller))
            interval = checks.stats_interval(req)
            named = list({j.id: j for j in self.guard.resolve(caller, req.ids)}.values())
            backend = cast("ClusterEngine", self._engine)
            alive = (pb.JOB_STATE_RUNNING, pb.JOB_STATE_QUEUED)
            while True:
                live = [j for j in self.guard.jobs(caller) if j.running][:MAX_STATS_JOBS]
                jobs = cast(list[RemoteJob], named or live)
                out = await backend.sample(jobs, interval)
                await stream.send_message(pb.StatsResponse(jobs=out))
                if not req.stream or (named and all(s.state not in alive for s in out)):
                    return

    async def Attach(self, stream: Stream[pb.AttachRequest, pb.AttachReply]) -> None:
        await _not_through_a_gateway(stream, "attach (and run -i/-t, exec -i/-t)")

    async def Exec(self, stream: Stream[pb.ExecRequest, pb.ExecResponse]) -> None:
        await _not_through_a_gateway(stream, "exec")


async def _not_through_a_gateway(stream: Stream[Any, Any], what: str) -> None:
    """Refused in one line: a gateway does not relay interactive sessions or execs (yet)."""
    raise GRPCError(
        Status.UNIMPLEMENTED,
        f"{what} is not served through a tjobs gateway (only on a single host, for now)",
    )
