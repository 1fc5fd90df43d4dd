"""An ``Attach`` call driven from a test (issue 16): requests put on a queue as the test goes,
replies read on a thread onto another queue, so a test waits on each event with a hang guard."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from support.timeouts import HANG
from tjob.api.tjob.v1 import tjob_pb2 as pb


class Session:
    """One Attach call: :meth:`send` requests, :meth:`expect` output, :meth:`exit` the end."""

    def __init__(
        self,
        stub: Any,
        job: str,
        *,
        stdin: bool = True,
        logs: bool = False,
        exec: pb.ExecRequest | None = None,
    ) -> None:
        self._requests: queue.Queue[pb.AttachRequest | None] = queue.Queue(4)
        self._replies: queue.Queue[pb.AttachReply | grpc.RpcError | None] = queue.Queue()
        self.output = b""
        start = pb.AttachStart(id=job, stdin=stdin, logs=logs, exec=exec)  # exec: issue 16
        self._requests.put(pb.AttachRequest(start=start))
        self._iterated = threading.Event()  # grpcio's thread reading our requests is done
        self.call = stub.Attach(self._iterate(), timeout=None)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self._next()
        if isinstance(first, grpc.RpcError):
            self._ended()
            raise first
        assert first is not None and first.WhichOneof("msg") == "attached", first
        self.attached = first.attached

    def _iterate(self) -> Iterator[pb.AttachRequest]:
        try:
            while (req := self._requests.get()) is not None:
                yield req
        finally:
            self._iterated.set()

    def _ended(self) -> None:
        """The call is over: let the threads it used end (leak checks count threads)."""
        with contextlib.suppress(queue.Full):
            self._requests.put_nowait(None)
        self._reader.join(HANG)
        self._iterated.wait(HANG)

    def _read(self) -> None:
        try:
            for reply in self.call:
                self._replies.put(reply)
            self._replies.put(None)
        except grpc.RpcError as err:
            self._replies.put(err)

    def _next(self) -> pb.AttachReply | grpc.RpcError | None:
        return self._replies.get(timeout=HANG)

    def send(self, **fields: Any) -> None:
        """One request: data=b"...", eof=True, resize=pb.WindowSize(...), detach=True."""
        self._requests.put(pb.AttachRequest(**fields), timeout=HANG)

    def end(self) -> None:
        """End our side of the stream (as a client whose stdin ended)."""
        self._requests.put(None, timeout=HANG)

    def expect(self, text: bytes) -> bytes:
        """Output until ``text`` has come; all of it so far."""
        while text not in self.output:
            reply = self._next()
            assert isinstance(reply, pb.AttachReply), (reply, self.output)
            assert reply.WhichOneof("msg") == "output", (reply, self.output)
            self.output += reply.output.data
        return self.output

    def exit(self) -> pb.JobStatus | None:
        """Read to the end of the call: the job's final status, or None (a detach)."""
        while True:
            reply = self._next()
            if reply is None:
                self._ended()
                return None
            if isinstance(reply, grpc.RpcError):
                self._ended()
                raise reply
            if reply.WhichOneof("msg") == "exit":
                self._ended()
                return reply.exit
            self.output += reply.output.data

    def cancel(self) -> None:
        """Vanish: the call is cancelled, as when a client dies."""
        self.call.cancel()
        self._ended()
