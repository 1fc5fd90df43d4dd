"""The gateway's side of its boundary with the node agents: one mutual-TLS gRPC channel per
node, presenting the gateway's own client certificate. Each job call names the job's owner in
the ``tjob-owner`` header; a node acts on a job as its owner would (see :mod:`.services`)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from typing import Any

from grpclib.client import Channel
from grpclib.const import Status as Code
from grpclib.exceptions import GRPCError, StreamTerminatedError

from ..api.tjob.v1 import tjob_pb2 as pb
from ..api.tjob.v1.tjob_grpc import JobServiceStub

OWNER_HEADER = "tjob-owner"
CALL_TIMEOUT = 30.0  # a unary call to a node: bounded, so a node that vanished cannot hang it


class NodeLink:
    """The channel to one node agent at ``address`` (``HOST:PORT``)."""

    def __init__(self, name: str, address: str, tls: ssl.SSLContext) -> None:
        self.name = name
        self.address = address
        host, _, port = address.rpartition(":")
        self._channel = Channel(host, int(port), ssl=tls)
        self.stub = JobServiceStub(self._channel)

    @staticmethod
    def on_behalf(owner: str) -> dict[str, str]:
        return {OWNER_HEADER: owner}

    async def run(self, req: pb.RunRequest, owner: str) -> pb.JobStatus:
        reply: pb.JobStatus = await self.stub.Run(
            req, metadata=self.on_behalf(owner), timeout=CALL_TIMEOUT
        )
        return reply

    async def status(self, job_id: str, owner: str) -> pb.JobStatus:
        reply: pb.JobStatus = await self.stub.Status(
            pb.JobRef(id=job_id), metadata=self.on_behalf(owner), timeout=CALL_TIMEOUT
        )
        return reply

    async def stop(self, job_id: str, grace: float, owner: str) -> pb.JobStatus:
        req = pb.StopRequest(id=job_id, grace_seconds=grace)
        reply: pb.JobStatus = await self.stub.Stop(
            req, metadata=self.on_behalf(owner), timeout=CALL_TIMEOUT + grace
        )
        return reply

    async def signal(self, job_id: str, sig: str, everyone: bool, owner: str) -> pb.JobStatus:
        req = pb.SignalRequest(id=job_id, signal=sig, all=everyone)
        reply: pb.JobStatus = await self.stub.Signal(
            req, metadata=self.on_behalf(owner), timeout=CALL_TIMEOUT
        )
        return reply

    async def remove(self, job_id: str, owner: str) -> pb.JobStatus:
        reply: pb.JobStatus = await self.stub.Remove(
            pb.JobRef(id=job_id), metadata=self.on_behalf(owner), timeout=CALL_TIMEOUT
        )
        return reply

    def logs(self, owner: str) -> Any:
        """An open-able Logs stream (``async with link.logs(owner) as stream``)."""
        return self.stub.Logs.open(metadata=self.on_behalf(owner))

    def events(self) -> Any:
        """The node's whole event stream (no owner: the gateway's own view)."""
        return self.stub.Events.open()

    def close(self) -> None:
        self._channel.close()


@contextlib.contextmanager
def forwarding(node: str) -> Iterator[None]:
    """A node's answer passes through as it came (NOT_FOUND, FAILED_PRECONDITION...); a node
    that cannot be reached is UNAVAILABLE, saying which."""
    try:
        yield
    except GRPCError as err:
        if err.status is Code.UNAVAILABLE:
            raise GRPCError(
                Code.UNAVAILABLE, f"node {node} is unavailable: {err.message}"
            ) from None
        raise
    except (OSError, StreamTerminatedError, TimeoutError, ConnectionError) as err:
        raise GRPCError(
            Code.UNAVAILABLE, f"node {node} is unreachable ({type(err).__name__}); try again"
        ) from None
