"""A job on a node, as the servicer sees a job: its last known status (kept fresh by the
node's event stream, see :mod:`.backend`), and its calls forwarded to its node."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import signal
from typing import TYPE_CHECKING, Protocol

from grpclib.const import Status as Code
from grpclib.exceptions import GRPCError

from ..api import convert
from ..api.tjob.v1 import tjob_pb2 as pb
from ..logstore import Chunk
from ..status import JobState, JobStatus
from .nodes import NodeLink, forwarding

if TYPE_CHECKING:
    from ..status import Stream

FOLLOWER_BUFFER = 1 << 20  # bytes a gateway reads ahead of one Logs client, at most (+1 chunk)


class Nodes(Protocol):
    """What a remote job needs of the gateway: the link to a node, and whether it is gone."""

    def link(self, node: str) -> NodeLink: ...

    def lost_since(self, node: str) -> float | None: ...


class RemoteJob:
    """One job of a node. ``status()`` answers from memory (listings never wait on nodes)."""

    queued = False

    def __init__(self, nodes: Nodes, status: JobStatus, node: str, placement: str) -> None:
        self._nodes = nodes
        self._status = status
        self.node = node
        self.placement = (
            placement  # the Ray placement group holding its resources; '' once released
        )
        self._changed = asyncio.Event()

    id = property(lambda self: self._status.id)
    owner = property(lambda self: self._status.owner)
    name = property(lambda self: self._status.name)
    created_at = property(lambda self: self._status.created_at)

    @property
    def short_id(self) -> str:
        return self._status.short_id

    @property
    def running(self) -> bool:
        return self.status().state is JobState.RUNNING

    def status(self, usage: bool = True) -> JobStatus:
        """The last status its node gave; LOST while a running job's node is out of the
        cluster (its real end is known again if the node comes back)."""
        st = dataclasses.replace(self._status, node=self.node)
        since = self._nodes.lost_since(self.node)
        if since is not None and st.state is JobState.RUNNING:
            why = f"node {self.node} left the cluster; the job's end is unknown"
            return dataclasses.replace(st, state=JobState.LOST, error=why, ended_at=since)
        return st

    def update(self, msg: pb.JobStatus) -> bool:
        """Take a status from the node; whether it changed."""
        st = convert.status_from_pb(msg)
        if st == self._status:
            return False
        self._status = st
        self.changed()
        return True

    def changed(self) -> None:
        """Wake the waiters (a new status, or its node left or came back)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_async(self) -> JobStatus:
        while not (st := self.status()).state.finished:
            await self._changed.wait()
        return st

    async def started_async(self) -> None:
        """A gateway's jobs have started when Run answers."""

    async def stop_async(self, grace: float) -> JobStatus:
        link = self._nodes.link(self.node)
        with forwarding(self.node):
            self.update(await link.stop(self.id, grace, self.owner))
        return self.status()

    async def signal_async(self, sig: signal.Signals, everyone: bool) -> None:
        link = self._nodes.link(self.node)
        with forwarding(self.node):
            self.update(await link.signal(self.id, sig.name, everyone, self.owner))

    async def refresh(self) -> None:
        """Ask the node for the status now."""
        link = self._nodes.link(self.node)
        with forwarding(self.node):
            self.update(await link.status(self.id, self.owner))


class RemoteFollower:
    """A Logs call's reader of a job's output on its node, as :class:`tjob.engine.Follower` is
    for a local one. A task reads the node's stream into a buffer of at most FOLLOWER_BUFFER
    bytes (plus one chunk); past it the task stops reading, so HTTP/2 flow control holds the
    node back while the client is slow: the gateway never hoards a follower's output."""

    def __init__(self, link: NodeLink, job: RemoteJob, req: pb.LogsRequest) -> None:
        self._link = link
        self._job = job
        # The node finds where a view (tail, since, until) begins, and stamps each chunk's time.
        self._req = pb.LogsRequest()
        self._req.CopyFrom(req)
        self._req.id = job.id  # the full id: the client may have sent a prefix or a name
        self._buf: collections.deque[Chunk] = collections.deque()
        self._size = 0
        self._ended = False
        self._error: GRPCError | None = None
        self._more = asyncio.Event()
        self._room = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> RemoteFollower:
        self._task = asyncio.get_running_loop().create_task(self._read())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _read(self) -> None:
        try:
            with forwarding(self._job.node):
                async with self._link.logs(self._job.owner) as stream:
                    await stream.send_message(self._req, end=True)
                    async for msg in stream:
                        self._put(msg)
                        while self._size >= FOLLOWER_BUFFER:
                            self._room.clear()
                            await self._room.wait()
        except GRPCError as err:
            self._error = err
        finally:
            self._ended = True
            self._more.set()

    def _put(self, msg: pb.LogChunk) -> None:
        if msg.truncated:
            self._buf.append(Chunk(_stream(msg.stream), b"", True))
        else:
            self._buf.append(Chunk(_stream(msg.stream), msg.data, time_ns=msg.time_unix_nanos))
            self._size += len(msg.data)
        self._more.set()

    def take(self, size: int) -> list[Chunk] | None:
        """Up to ``size`` bytes read from the node: [] if none yet, None once all is read."""
        out: list[Chunk] = []
        while self._buf and size > 0:
            chunk = self._buf.popleft()
            if len(chunk.data) > size:
                self._buf.appendleft(chunk._replace(data=chunk.data[size:]))
                chunk = chunk._replace(data=chunk.data[:size])
            out.append(chunk)
            size -= len(chunk.data)
            self._size -= len(chunk.data)
        self._room.set()
        if out:
            return out
        if self._ended:
            if self._error is not None:
                raise self._error
            return None
        return []

    async def position_async(self) -> None:
        """Nothing to find here: the node's own follower finds where the view begins."""

    def wait(self, timeout: float | None = None) -> None:
        raise NotImplementedError("a remote follower is read on the event loop only")

    async def wait_async(self) -> None:
        if not self._buf and not self._ended:
            self._more.clear()
            await self._more.wait()


def _stream(value: int) -> Stream:
    from ..status import Stream

    return Stream.STDERR if value == pb.STREAM_STDERR else Stream.STDOUT


def unavailable(node: str, what: str) -> GRPCError:
    return GRPCError(
        Code.UNAVAILABLE,
        f"{what} is on node {node}, which is not in the cluster now (it is served again "
        "if the node comes back with its state)",
    )
