"""Tools of the adversarial suite: FIFOs that jobs block on, a bystander job, the after-every-case
checkup, a raw HTTP/2 gRPC client for requests grpcio will not send, and ``tjobs`` as a process.

Every wait here is on an event (a FIFO, a Logs stream, a Wait call, a pidfd, a task, a socket's
EOF) with ``HANG`` only as a guard against a hang.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import select
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import support.tjobs
from apiharness import ALICE, BOB, HANG, Harness
from grpclib.health.v1 import health_pb2
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset, TrailersReceived
from support.net import free_port  # noqa: F401 (re-exported: the suites import it from here)

from tjob.api import tls
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.api.tjob.v1.tjob_pb2_grpc import JobServiceStub

SERVICE = "/tjob.v1.JobService/"
HEALTH = "/grpc.health.v1.Health/Check"

MAX_JOBS = 4  # running jobs per identity on the suite's server: the burst meets it at once
OUTPUT_CAP = 1 << 20  # the suite's server keeps 1 MiB of output per job

# gRPC status codes by number, as they come in raw trailers.
CODES = {c.value[0]: c for c in grpc.StatusCode}


def readable(fds: list[int], timeout: float) -> list[int]:
    """The fds of ``fds`` that are readable within ``timeout`` seconds (poll, not select:
    cases hold more than 1024 descriptors)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(timeout * 1000)]


# --- FIFOs: how a test and a job wait for each other -------------------------------------------


class Fifo:
    """A FIFO in a world-readable temporary directory (jobs run as nobody).

    ``release()``: the test opens it for writing, so a job's ``cat FIFO`` returns (a gate).
    ``wait()``: the test waits until a job has written to it (``echo x > FIFO``) (a flag).
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tjob-adv-"))
        self.dir.chmod(0o755)
        self.path = self.dir / "fifo"
        os.mkfifo(self.path)
        self.path.chmod(0o666)

    def __str__(self) -> str:
        return str(self.path)

    def release(self) -> None:
        """Let a job blocked in ``cat FIFO`` go on (blocks until it is there to read)."""
        done = threading.Event()

        def opener() -> None:
            with open(self.path, "wb"):
                done.set()

        t = threading.Thread(target=opener, daemon=True)
        t.start()
        if not done.wait(HANG):
            # Nobody came to read: unblock our own opener before failing.
            with open(self.path, "rb"):
                pass
            raise AssertionError(f"no job opened {self.path} to read")
        t.join(HANG)

    def wait(self) -> bytes:
        """What a job wrote to the FIFO, once it has written and closed it."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        out = b""
        try:
            deadline = time.monotonic() + HANG
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not readable([fd], left):
                    raise AssertionError(f"no job wrote to {self.path}")
                chunk = os.read(fd, 65536)
                if not chunk:  # the writer closed it
                    return out
                out += chunk
        finally:
            os.close(fd)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def fifo() -> Iterator[Fifo]:
    f = Fifo()
    try:
        yield f
    finally:
        f.remove()


# --- gRPC helpers -------------------------------------------------------------------------------


@dataclass
class Clients:
    """One long-lived channel per identity: a test that opens no connection of its own leaves
    the process's socket count unchanged, so the checkup can compare it exactly."""

    h: Harness
    channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def channel(self, stem: str) -> grpc.Channel:
        if stem not in self.channels:
            creds = tls.client_credentials(*self.h.files(stem))
            self.channels[stem] = grpc.secure_channel(self.h.target, creds)
        return self.channels[stem]

    def stub(self, stem: str = ALICE) -> JobServiceStub:
        return JobServiceStub(self.channel(stem))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()
        self.channels.clear()


def code_of(fn: Callable[..., Any], *args: Any, **kw: Any) -> grpc.StatusCode:
    """The status code a unary call ends with (OK when it returns)."""
    try:
        fn(*args, timeout=HANG, **kw)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def output(stub: JobServiceStub, job_id: str, follow: bool = True) -> bytes:
    req = pb.LogsRequest(id=job_id, follow=follow)
    return bytes(b"".join(c.data for c in stub.Logs(req, timeout=HANG)))


def read_until(stub: JobServiceStub, job_id: str, needle: bytes) -> bytes:
    """Follow a job's output until ``needle`` has appeared (the job's own signal to the test)."""
    got = b""
    call = stub.Logs(pb.LogsRequest(id=job_id, follow=True), timeout=HANG)
    try:
        for chunk in call:
            got += bytes(chunk.data)
            if needle in got:
                return got
    finally:
        call.cancel()  # the follower goes now, not when the garbage collector gets to it
    raise AssertionError(f"job ended without printing {needle!r}: {got[-500:]!r}")


def finish(stub: JobServiceStub, job_id: str) -> pb.JobStatus:
    """Stop a job at once (harmless if it ended) and return its final status."""
    stub.Stop(pb.StopRequest(id=job_id, grace_seconds=0), timeout=HANG)
    st: pb.JobStatus = stub.Wait(pb.JobRef(id=job_id), timeout=HANG)
    return st


# --- a raw HTTP/2 gRPC client ------------------------------------------------------------------


@dataclass
class Reply:
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    ended: bool = False
    reset: bool = False

    @property
    def code(self) -> grpc.StatusCode | None:
        raw = self.headers.get("grpc-status")
        return None if raw is None else CODES[int(raw)]

    @property
    def message(self) -> str:
        return urllib.parse.unquote(self.headers.get("grpc-message", ""))

    def messages(self) -> list[bytes]:
        """The length-prefixed gRPC messages in the data received so far."""
        out, at = [], 0
        while at + 5 <= len(self.data):
            (size,) = struct.unpack(">I", self.data[at + 1 : at + 5])
            out.append(self.data[at + 5 : at + 5 + size])
            at += 5 + size
        return out


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def frame(body: bytes) -> bytes:
    """A gRPC message: compressed flag, length, bytes."""
    return struct.pack(">?I", False, len(body)) + body


class RawGrpc:
    """gRPC spoken by hand over h2 and ssl: lying length prefixes, truncated messages, streams
    dropped by TCP reset, and connections whose close the test can wait for (their EOF)."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=HANG)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.streams: dict[int, Reply] = {}
        self.ack = True  # give flow-control credit back as data arrives
        self.hold: set[int] = set()  # streams given no credit of their own (the connection's only)
        self._flush()

    @classmethod
    def to(cls, h: Harness, stem: str = ALICE) -> RawGrpc:
        return cls(h.port, tls.client_context(*h.files(stem)))

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def send(self, path: str, payload: bytes, *, end: bool = True) -> int:
        """Open a stream and send ``payload`` (already framed) on it; returns the stream id."""
        sid: int = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            sid,
            [
                (":method", "POST"),
                (":scheme", "https"),
                (":path", path),
                (":authority", "localhost"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
            end_stream=not payload and end,
        )
        if payload:
            self.h2.send_data(sid, payload, end_stream=end)
        self.streams[sid] = Reply()
        self._flush()
        return sid

    def pump(self, until: Callable[[], bool]) -> None:
        """Read from the server until ``until()`` holds."""
        while not until():
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            for ev in self.h2.receive_data(data):
                if isinstance(ev, ResponseReceived | TrailersReceived):
                    self.streams[ev.stream_id].headers.update(
                        (_text(k), _text(v)) for k, v in ev.headers
                    )
                elif isinstance(ev, DataReceived):
                    self.streams[ev.stream_id].data += ev.data
                    if self.ack and ev.stream_id in self.hold:
                        self.h2.increment_flow_control_window(ev.flow_controlled_length)
                    elif self.ack:
                        self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, StreamEnded):
                    self.streams[ev.stream_id].ended = True
                elif isinstance(ev, StreamReset):
                    self.streams[ev.stream_id].ended = self.streams[ev.stream_id].reset = True
            self._flush()

    def call(self, path: str, payload: bytes) -> Reply:
        sid = self.send(path, payload)
        self.pump(lambda: self.streams[sid].ended)
        return self.streams[sid]

    def release(self, sid: int) -> None:
        """Give a held stream the credit it was kept from: the server sends it more."""
        self.hold.discard(sid)
        self.h2.increment_flow_control_window(len(self.streams[sid].data), stream_id=sid)
        self._flush()

    def cancel(self, sid: int) -> None:
        self.h2.reset_stream(sid, error_code=8)  # CANCEL
        self._flush()

    def close(self) -> None:
        """GOAWAY and FIN, then wait for the server's EOF: proof it closed its side."""
        with contextlib.suppress(Exception):
            self.h2.close_connection()
            self._flush()
        socket.socket.shutdown(self.sock, socket.SHUT_WR)
        self.sock.settimeout(HANG)
        try:
            while socket.socket.recv(self.sock, 65536):  # raw TLS records, not decrypted
                pass
        except ConnectionResetError:
            pass
        self.sock.close()

    def abort(self) -> None:
        """Drop the connection with a TCP reset, as a crashed client or a cut cable would."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        socket.socket.close(self.sock)


def wait_eof(sock: socket.socket, timeout: float = HANG, *, shut: bool = True) -> bytes:
    """Shut our sending side (unless not ``shut``) and read until the server closes its side;
    what it sent."""
    if shut:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_WR)
    sock.settimeout(timeout)
    got = b""
    try:
        while chunk := socket.socket.recv(sock, 65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def health_call(rpc: RawGrpc) -> bool:
    """The health check answers SERVING on ``rpc``, a connection made for it (closed after)."""
    try:
        body = health_pb2.HealthCheckRequest(service="tjob.v1.JobService").SerializeToString()
        reply = rpc.call(HEALTH, frame(body))
        if reply.code is not grpc.StatusCode.OK:
            return False
        (msg,) = reply.messages()
        return health_pb2.HealthCheckResponse.FromString(msg).status == 1  # SERVING
    finally:
        rpc.close()


def healthy(h: Harness, clients: Clients) -> bool:
    """The health check answers SERVING on a long-lived channel and on a brand-new connection
    (a new TLS handshake, so a server that stopped accepting is caught too)."""
    check = clients.channel(ALICE).unary_unary(
        HEALTH,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    resp = check(health_pb2.HealthCheckRequest(service="tjob.v1.JobService"), timeout=HANG)
    if resp.status != health_pb2.HealthCheckResponse.SERVING:
        return False
    return health_call(RawGrpc.to(h))


# --- the bystander and the checkup after every case ---------------------------------------------

BYSTANDER_TAIL = b"".join(b"%d\n" % i for i in range(1, 2001)) + b"bystander done\n"


class Bystander:
    """Another client's job (bob's) that runs through a case and must come out unharmed."""

    def __init__(self, clients: Clients) -> None:
        self.stub = clients.stub(BOB)
        self.gate = Fifo()
        script = f"echo bystander up; cat {self.gate}; seq 1 2000; echo bystander done"
        st = self.stub.Run(pb.RunRequest(argv=["sh", "-c", script]), timeout=HANG)
        self.id = st.id
        read_until(self.stub, self.id, b"bystander up\n")

    def check(self) -> None:
        """Still running, its output so far exactly what it wrote."""
        st = self.stub.Status(pb.JobRef(id=self.id), timeout=HANG)
        assert st.state == pb.JOB_STATE_RUNNING, f"the bystander was hit: {st}"
        assert output(self.stub, self.id, follow=False) == b"bystander up\n"

    def finish(self) -> None:
        self.gate.release()
        st = self.stub.Wait(pb.JobRef(id=self.id), timeout=HANG)
        self.gate.remove()
        assert (st.state, st.exit_code) == (pb.JOB_STATE_EXITED, 0), st
        assert output(self.stub, self.id) == b"bystander up\n" + BYSTANDER_TAIL


@dataclass
class Case:
    """What a case gets: the server, long-lived clients, and bob's bystander job."""

    h: Harness
    clients: Clients
    root: Path
    bystander: Bystander

    def stub(self, stem: str = ALICE) -> JobServiceStub:
        return self.clients.stub(stem)


def fd_kinds() -> collections.Counter[str]:
    """This process's open file descriptors by kind (socket, pipe, anon_inode, file)."""
    kinds: collections.Counter[str] = collections.Counter()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("anon_inode:"):
                kinds[target] += 1  # pidfd, inotify, eventpoll... each counted apart
            else:
                kinds[target.split(":")[0] if ":" in target else "file"] += 1
    return kinds


def children_of(pid: int) -> set[int]:
    kids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    kids.add(int(entry))
    return kids


def supervisors(h: Harness) -> set[int]:
    """The job supervisors of the harness's engine: children of its launcher's zygote (one
    of them the spare, waiting for the next job)."""
    assert h.engine is not None
    return set(h.engine.diagnostics().supervisors)


def server_connections(port: int) -> int:
    """Server-side TCP connections of ``port`` that still hold a socket: ESTABLISHED, and
    CLOSE_WAIT (the peer left and the server has not closed: the signature of a leak)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] in ("01", "08"):
                    n += 1
    return n


@dataclass(frozen=True)
class Snapshot:
    """What the server process holds when no case is running."""

    cgroups: frozenset[str]
    fds: tuple[tuple[str, int], ...]
    connections: int
    threads: int
    tasks: int
    in_flight: int
    watches: int
    supervisors: int

    @classmethod
    def take(cls, h: Harness) -> Snapshot:
        assert h.engine is not None
        diag = h.engine.diagnostics()  # settles first: an ended job's pidfds are closed
        # The loop's default executor (asyncio.to_thread) is a bounded pool that keeps its threads.
        threads = [t for t in threading.enumerate() if not t.name.startswith("asyncio_")]
        return cls(
            cgroups=diag.cgroups,
            fds=tuple(sorted(fd_kinds().items())),
            connections=server_connections(h.port),
            threads=len(threads),
            tasks=h.call(_task_count()),
            in_flight=len(h.in_flight()),
            watches=diag.watches,
            supervisors=len(diag.supervisors),
        )

    def grew_from(self, before: Snapshot) -> list[str]:
        """What this holds more of than ``before`` did. Less is no leak: a client socket of an
        earlier case (grpcio closes idle ones on its own time) may go away during this one."""
        grew = (
            [f"cgroups {sorted(self.cgroups - before.cgroups)}"]
            if self.cgroups - before.cgroups
            else []
        )
        had = dict(before.fds)
        grew += [
            f"{kind} fds {had.get(kind, 0)} -> {n}" for kind, n in self.fds if n > had.get(kind, 0)
        ]
        for name in (
            "connections",
            "threads",
            "tasks",
            "in_flight",
            "watches",
            "supervisors",
        ):
            if getattr(self, name) > getattr(before, name):
                grew.append(f"{name} {getattr(before, name)} -> {getattr(self, name)}")
        return grew


async def _task_count() -> int:
    return len(asyncio.all_tasks()) - 1  # not this one


async def _server_tasks_end() -> None:
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        _, pending = await asyncio.wait(others, timeout=HANG)
        assert not pending, f"server tasks that never end: {pending}"


def settle(h: Harness) -> None:
    """Wait for what ends a moment after a case: handler tasks finishing their last send, and
    supervisors exiting after writing a job's final status (one spare supervisor stays)."""
    assert h.engine is not None
    running = [j for j in h.engine.jobs() if not j.status().state.finished]
    assert not running, f"jobs left running by the case: {running}"
    h.call(_server_tasks_end())
    deadline = time.monotonic() + HANG
    while True:
        kids = supervisors(h)
        if len(kids) <= 1:
            return
        fds = []
        for pid in kids:
            with contextlib.suppress(OSError):
                fds.append(os.pidfd_open(pid))
        try:
            left = deadline - time.monotonic()
            # The spare never exits: wait until all but one are gone, one exit at a time.
            ready = readable(fds, max(left, 0))
            assert ready, f"supervisors that never exit: {kids}"
        finally:
            for fd in fds:
                os.close(fd)


def checkup(h: Harness, clients: Clients, before: Snapshot) -> None:
    """After a case: the server answers its health check and holds exactly what it held."""
    assert healthy(h, clients)
    settle(h)
    after = Snapshot.take(h)
    grew = after.grew_from(before)
    assert not grew, f"leak: {grew}; before {before}, after {after}"


# --- tjobs as a process -------------------------------------------------------------------------


class Tjobs(support.tjobs.Tjobs):
    """``tjobs`` as a child process (support.tjobs), and raw HTTP/2 gRPC to it."""

    def raw(self, stem: str = ALICE) -> RawGrpc:
        return RawGrpc(self.port, tls.client_context(*self.files(stem)))


@dataclass
class Stalled:
    """A TLS handshake left hanging since the session began, against a tjobs of its own."""

    server: Tjobs
    sock: socket.socket
