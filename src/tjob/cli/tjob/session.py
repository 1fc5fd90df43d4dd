"""A session with a running job over the ``Attach`` stream (issue 16): what ``tjob run -i/-t``
and ``tjob attach`` share (and ``exec -it`` may).

The requests come from a bounded queue fed by a thread reading our stdin (so a job that does
not read holds that thread, and whoever pipes into us, through HTTP/2 flow control) and by
SIGWINCH; the replies are written out as they come. With a terminal, it is raw for the
session and restored however the session ends.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import terminal
from .client import Client, cancel, status
from .errors import EXIT_CANNOT_EXEC, EXIT_NOT_FOUND, CliError, exit_code
from .render import warn, write_bytes

READ_SIZE = 1 << 20  # stdin per message at most: the server takes up to 1 MiB (MAX_ATTACH_DATA)
QUEUED = 4  # messages read ahead of the connection


@dataclass
class Options:
    job: str
    stdin: bool = True  # take the job's stdin (one writer at a time)
    send: bool = True  # read ours and send it (False: -t alone)
    tty: bool = False  # our terminal raw, detach keys, window size
    logs: bool = False  # output from byte 0 (run), not from now (attach)
    detach_keys: bytes = b""
    exec: Any = None  # an ExecRequest: start this exec into the job and attach to it (issue 16)
    # Another call with the same stream after its first request (replies AttachReply, later
    # requests AttachRequest): the method, and its first request instead of an AttachStart.
    method: str = "Attach"
    first: Any = None


def attach(c: Client, opts: Options) -> int | None:
    """Run the session; the job's exit code, or None if the user detached."""
    pb = c.pb
    q: queue.Queue[Any] = queue.Queue(QUEUED)
    size = terminal.window_size() if opts.tty else (0, 0)
    start = pb.AttachStart(
        id=opts.job,
        stdin=opts.stdin,
        logs=opts.logs,
        size=pb.WindowSize(rows=size[0], cols=size[1]),
    )
    if opts.exec is not None:
        start.exec.CopyFrom(opts.exec)

    def resized() -> None:
        rows, cols = terminal.window_size()
        if rows and cols:
            try:
                q.put_nowait(pb.AttachRequest(resize=pb.WindowSize(rows=rows, cols=cols)))
            except queue.Full:
                pass  # the next SIGWINCH (or none: a missed resize of a busy session)

    def requests() -> Iterator[Any]:
        yield pb.AttachRequest(start=start) if opts.first is None else opts.first
        while (msg := q.get()) is not None:
            yield msg

    call = c.channel.stream_stream(
        "/tjob.v1.JobService/" + opts.method,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=pb.AttachReply.FromString,
    )(requests())
    try:
        with c.streaming(call):
            replies = iter(call)
            first = next(replies, None)  # attached (refusals come as the call's error)
            tty = opts.tty and first is not None and first.attached.tty
            if opts.stdin and opts.send and first is not None and first.attached.stdin:
                keys = terminal.DetachKeys(opts.detach_keys if tty else b"")
                threading.Thread(target=_read_stdin, args=(pb, q, keys), daemon=True).start()
            if not tty:
                return _replies(c, replies, tty=False)
            with terminal.raw(), terminal.on_resize(resized):
                return _replies(c, replies, tty=True)
    except terminal.Ended as e:
        cancel(call)
        return e.code
    finally:
        q_close(q)


def q_close(q: queue.Queue[Any]) -> None:
    """End the request stream, if it is still being read."""
    try:
        q.put_nowait(None)
    except queue.Full:
        pass


def _replies(c: Client, replies: Iterator[Any], *, tty: bool) -> int | None:
    for reply in replies:
        if reply.WhichOneof("msg") == "exit":
            return exit_code(status(reply.exit))
        if reply.WhichOneof("msg") == "exec_exit":
            return exec_exit_code(reply.exec_exit)
        chunk = reply.output
        if chunk.truncated:
            warn("the rest of this job's output was not kept (output cap or full disk)")
        elif chunk.data:
            write_bytes(2 if chunk.stream == c.pb.STREAM_STDERR and not tty else 1, chunk.data)
    return None  # the call ended without the job's exit: a detach


def exec_exit_code(end: Any) -> int:
    """An exec's code as a shell gives it; one that did not start is a one-line error."""
    if end.HasField("exit_code"):
        return int(end.exit_code)
    if end.HasField("signal"):
        return 128 + int(end.signal)
    code = EXIT_NOT_FOUND if "No such file or directory" in end.error else EXIT_CANNOT_EXEC
    raise CliError(end.error or "the command did not start", code)


def _read_stdin(pb: Any, q: queue.Queue[Any], keys: terminal.DetachKeys) -> None:
    """Our stdin to the queue until EOF (sent as EOF) or the detach keys (sent as a detach)."""
    while True:
        try:
            data = os.read(0, READ_SIZE)
        except OSError:
            data = b""
        if not data:
            q.put(pb.AttachRequest(eof=True))
            q.put(None)
            return
        data, detach = keys.feed(data)
        if data:
            q.put(pb.AttachRequest(data=data))
        if detach:
            q.put(pb.AttachRequest(detach=True))
            q.put(None)
            return
