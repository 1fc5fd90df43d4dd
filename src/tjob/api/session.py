"""An Attach call (issue 16): one client's session with a supervised process — its output to the
client, the client's stdin, window sizes and EOF to the process.

The session knows the process only as a :class:`Target`: the directory of its supervisor (whose
attach channel lends the stdin, :mod:`tjob.stdio`), a follower of its output log, and its end.
A :class:`tjob.Job` is one; an exec'd process supervised the same way can be another.

Two halves run at once. Output: from the attach on (or from byte 0 with ``logs``), through the
Logs streams' shared budget (:mod:`.output`), then the final status. Input: each request is
read only once the previous data went into the pipe or terminal, and what is not read is not
acknowledged, so HTTP/2 flow control holds a fast sender at the client: a process that reads
slowly costs the server one message at most. The call ends with the process (after the exit
message), at a detach, or when the client goes away; the stdin lease is given back in every
case: closed for a pipe whose client vanished or ended its side (the process sees EOF), left
as it is for a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import stdio
from ..errors import InvalidSpec, StdinUnavailable
from ..spec import check_window_size
from ..status import JobStatus, Stream
from . import convert
from .output import IN_FIELD_1, OutputShares, send_output
from .tjob.v1 import tjob_pb2 as pb

if TYPE_CHECKING:
    from grpclib.server import Stream as GrpcStream

    from ..execs import ExecResult
    from ..follower import Follower

    Receive = Callable[[], Awaitable[pb.AttachRequest | None]]


class Target(Protocol):
    """What a session needs of a supervised process."""

    @property
    def dir(self) -> Path: ...  # its supervisor's directory: the attach channel is there

    @property
    def short_id(self) -> str: ...

    @property
    def running(self) -> bool: ...

    def follower(
        self, streams: Stream, skip: int, loop: asyncio.AbstractEventLoop | None
    ) -> Follower: ...

    async def wait_async(self, timeout: float | None = None) -> JobStatus | ExecResult: ...


class Session:
    """One Attach call's settings: the budget its output shares with the Logs calls."""

    def __init__(self, shares: OutputShares, stall_timeout: float) -> None:
        self.shares = shares
        self.stall_timeout = stall_timeout

    async def run(
        self,
        stream: GrpcStream[pb.AttachRequest, pb.AttachReply],
        target: Target,
        start: pb.AttachStart,
        receive: Receive,
        *,
        client: str,
        sent: Callable[[int], object] | None = None,
    ) -> None:
        """Serve the call until the process ends (the exit message sent), the client detaches,
        or the client goes away. ``receive``: the next request, None once the client ended
        its side. StdinUnavailable if ``start.stdin`` and the stdin cannot be taken."""
        size = _size(start.size)
        lease = await _take(target, start) if start.stdin else None
        try:
            if lease is not None and size is not None:
                lease.resize(*size)
            attached = pb.Attached(tty=lease is not None and lease.tty, stdin=lease is not None)
            await stream.send_message(pb.AttachReply(attached=attached))
            output = asyncio.ensure_future(self._output(stream, target, start.logs, client, sent))
            pumping = asyncio.ensure_future(_input(receive, lease))
            try:
                done, _ = await asyncio.wait({output, pumping}, return_when=asyncio.FIRST_COMPLETED)
                if output in done:
                    return output.result()  # the process ended: the exit is sent
                if pumping.result():  # a detach: the call ends here
                    return None
                await output  # the client ended its side: output goes on to the end
            finally:
                for task in (output, pumping):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        finally:
            if lease is not None:
                lease.drop()

    async def _output(
        self,
        stream: GrpcStream[pb.AttachRequest, pb.AttachReply],
        target: Target,
        logs: bool,
        client: str,
        sent: Callable[[int], object] | None,
    ) -> None:
        with target.follower(Stream.BOTH, 0, asyncio.get_running_loop()) as follower:
            if not logs:
                follower.skip_to_end()  # live output from now: logs is for the rest
            await send_output(
                stream,
                follower,
                follow=True,
                client=client,
                shares=self.shares,
                stall_timeout=self.stall_timeout,
                sent=sent,
                within=IN_FIELD_1,
            )
        end = await target.wait_async()
        if isinstance(end, JobStatus):
            await stream.send_message(pb.AttachReply(exit=convert.status_to_pb(end)))
        else:  # an exec's (issue 16)
            await stream.send_message(pb.AttachReply(exec_exit=convert.exec_exit_to_pb(end)))


async def _take(target: Target, start: pb.AttachStart) -> stdio.Lease | None:
    """The stdin; or None for a session from byte 0 (``tjob run -i``) whose process has
    ended already: it gets the output and the exit all the same."""
    try:
        return await stdio.take_async(target.dir, f"job {target.short_id}")
    except StdinUnavailable:
        if start.logs and not target.running:
            return None
        raise


async def _input(receive: Receive, lease: stdio.Lease | None) -> bool:
    """Apply the client's requests to the stdin until it ends its side (False) or detaches
    (True). Once the process's side is gone, further input is dropped."""
    while True:
        req = await receive()
        if req is None:
            if lease is not None:
                lease.drop()  # a pipe's reader sees EOF; a terminal stays as it is
            return False
        kind = req.WhichOneof("msg")
        if kind == "start":
            raise InvalidSpec("AttachStart comes first, and only once")
        if kind == "detach":
            if lease is not None:
                lease.close()
            return True
        if lease is None or lease.closed:
            continue  # a reader's input, or the process's stdin is gone: dropped
        try:
            await _apply(lease, req, kind)
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.EIO):
                raise
            lease.drop()  # the process's side is gone: its exit comes on the output side


async def _apply(lease: stdio.Lease, req: pb.AttachRequest, kind: Any) -> None:
    if kind == "data":
        await lease.write_async(req.data)
    elif kind == "eof":
        lease.close(eof=True)
    elif kind == "resize":
        size = _size(req.resize)
        if size is not None:
            lease.resize(*size)


def _size(ws: pb.WindowSize) -> tuple[int, int] | None:
    """A window size from the wire; None if unset (0x0); InvalidSpec if absurd."""
    if not ws.rows and not ws.cols:
        return None
    return check_window_size((ws.rows, ws.cols))
