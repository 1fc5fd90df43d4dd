"""Hostile, authenticated clients against a real ``tjobs`` process (issue 14).

Each attack runs at a size that fits the suite (the shape of the original, smaller counts)
while a *second* client (bob) measures its ``ps`` (List) and ``logs`` (Logs of a finished job)
latency: it must stay within ``SLOWDOWN`` times its idle latency (or under ``FLOOR``, whichever
is larger: the machine is shared). The server's RSS and descriptors are read from /proc.
The full-size attacks and their figures are bench/api.py's B-attack row.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import socket
import statistics
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from advkit import SERVICE, Tjobs, frame, health_call, readable
from apiharness import ADMIN, ALICE, BOB, HANG, ROOT
from h2.events import ConnectionTerminated
from support.certs import client_cert

from tjob.api import pki
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.api.tjob.v1.tjob_pb2_grpc import JobServiceStub

pytestmark = ROOT

Code = grpc.StatusCode
SLOWDOWN = 5.0  # a few times the idle latency
FLOOR = 0.5  # seconds: below this, a latency is no evidence of starvation on a shared machine
ENHANCE_YOUR_CALM = 11


# --- the server and its second client -------------------------------------------------------


@dataclass
class Server:
    tjobs: Tjobs
    root: Path
    stubs: dict[str, JobServiceStub]
    done_id: str  # bob's finished job: what his `logs` reads

    @property
    def pid(self) -> int:
        return self.tjobs.proc.pid

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


def _start(root: Path, *flags: str, prefix: tuple[str, ...] = ()) -> Server:
    certs, state = root / "certs", root / "state"
    if not certs.exists():
        pki.init_dir(certs)
    t = Tjobs(certs, state, *flags, prefix=prefix)
    t.expect("listen on")
    stubs = {stem: t.stub(stem) for stem in (ALICE, BOB, ADMIN)}  # one connection each
    done = stubs[BOB].Run(pb.RunRequest(argv=["echo", "bob's output"]), timeout=HANG)
    stubs[BOB].Wait(pb.JobRef(id=done.id), timeout=HANG)
    return Server(t, root, stubs, done.id)


@contextlib.contextmanager
def tjobs(*flags: str, prefix: tuple[str, ...] = ()) -> Iterator[Server]:
    root = Path(tempfile.mkdtemp(prefix="tjob-adv5-"))
    root.chmod(0o755)
    server = _start(root, *flags, prefix=prefix)
    try:
        yield server
    finally:
        code = server.tjobs.stop()
        shutil.rmtree(root, ignore_errors=True)
        assert code == 0, server.tjobs.log[-20:]


@pytest.fixture(scope="module")
def srv() -> Iterator[Server]:
    with tjobs("--stall-timeout", "3s") as server:
        yield server


def bob_latency(s: Server, n: int = 5) -> float:
    """Bob's median latency over ``n`` rounds of `ps` then `logs`, each round timed whole."""
    bob = s.stubs[BOB]
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        bob.List(pb.ListRequest(), timeout=HANG)
        out = b"".join(c.data for c in bob.Logs(pb.LogsRequest(id=s.done_id), timeout=HANG))
        assert out == b"bob's output\n"
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def assert_served(s: Server, idle: float, during: float) -> None:
    bound = max(SLOWDOWN * idle, FLOOR)
    assert during <= bound, f"bob's ps+logs took {during:.3f}s under attack, {idle:.3f}s idle"


@contextlib.contextmanager
def attack(fn: Callable[[threading.Event], None]) -> Iterator[threading.Event]:
    """Run ``fn(stop)`` on a thread for the body's length; its failure fails the test."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn(stop)
        except BaseException as err:
            errors.append(err)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield stop
    finally:
        stop.set()
        t.join(HANG)
    assert not t.is_alive(), "the attack did not end"
    if errors:
        raise errors[0]


# --- 1. one request, one minute ---------------------------------------------------------------


def test_stats_request_with_380000_ids_is_refused_at_once(srv: Server) -> None:
    alice = srv.stubs[ALICE]
    jobs = [alice.Run(pb.RunRequest(argv=["true"]), timeout=HANG) for _ in range(40)]
    for st in jobs:
        alice.Wait(pb.JobRef(id=st.id), timeout=HANG)
    idle = bob_latency(srv)
    flood = pb.StatsRequest(ids=[jobs[0].id[:8]] * 380_000)  # 3.8 MB, just under the 4 MiB cap
    codes: list[tuple[Code, str]] = []

    def hammer(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                list(alice.Stats(flood, timeout=HANG))
            except grpc.RpcError as err:
                codes.append((err.code(), err.details() or ""))

    with attack(hammer):
        during = bob_latency(srv, 8)
    assert codes and all(code is Code.RESOURCE_EXHAUSTED for code, _ in codes), codes[:3]
    assert "65536" in codes[0][1]  # refused unread: Stats requests are small
    assert_served(srv, idle, during)
    with pytest.raises(grpc.RpcError) as info:  # 1001 ids, small enough to read: one too many
        list(alice.Stats(pb.StatsRequest(ids=[jobs[0].id] * 1001), timeout=HANG))
    assert info.value.code() is Code.INVALID_ARGUMENT
    assert "at most 1000" in (info.value.details() or "")
    # 1000 ids (the cap) are served, resolved by bisection among the caller's jobs.
    ids = [j.id[:10] for j in jobs] * 25
    (resp,) = list(alice.Stats(pb.StatsRequest(ids=ids, interval_seconds=0.2), timeout=HANG))
    assert {j.id for j in resp.jobs} == {j.id for j in jobs}


# --- 2. rapid reset (CVE-2023-44487) ----------------------------------------------------------


def test_rapid_reset_is_closed_with_goaway_and_memory_stays_flat(srv: Server) -> None:
    idle = bob_latency(srv)
    rss0 = srv.rss()
    peak = rss0
    body = frame(pb.ListRequest().SerializeToString())
    per_conn: list[tuple[int, int | None]] = []  # (streams opened and reset, GOAWAY code)

    def one_connection(stop: threading.Event) -> None:
        nonlocal peak
        rpc = srv.tjobs.raw(ALICE)
        rpc.sock.settimeout(5.0)
        opened = 0
        code: int | None = None
        try:
            while opened < 20_000 and code is None and not stop.is_set():
                for _ in range(100):  # a batch in one write: open, send, reset
                    sid = rpc.h2.get_next_available_stream_id()
                    rpc.h2.send_headers(sid, _headers("List"))
                    rpc.h2.send_data(sid, body, end_stream=True)
                    rpc.h2.reset_stream(sid, error_code=8)  # CANCEL
                    opened += 1
                rpc.sock.sendall(rpc.h2.data_to_send())
                while code is None and (rpc.sock.pending() or readable([rpc.sock.fileno()], 0)):
                    data = rpc.sock.recv(65536)
                    if not data:
                        break
                    for ev in rpc.h2.receive_data(data):
                        if isinstance(ev, ConnectionTerminated):
                            code = int(ev.error_code)
                peak = max(peak, srv.rss())
        except OSError:
            pass  # the server closed it (after its GOAWAY, read or not)
        finally:
            rpc.sock.close()
        if not stop.is_set():  # the last one, cut short by the end of the test, says nothing
            per_conn.append((opened, code))

    def flood(stop: threading.Event) -> None:
        while not stop.is_set():  # a new connection for each one closed, as an attacker would
            one_connection(stop)
            if per_conn and per_conn[-1][0] >= 20_000:
                return

    with attack(flood):
        during = bob_latency(srv, 8)
    assert per_conn
    for opened, code in per_conn:
        assert code == ENHANCE_YOUR_CALM, f"{opened} streams opened and reset, GOAWAY {code}"
        assert opened < 20_000
    assert peak - rss0 < 64 << 20, f"RSS grew {(peak - rss0) >> 20} MiB"
    assert_served(srv, idle, during)
    assert health_call(srv.tjobs.raw(BOB))


def _headers(method: str) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", SERVICE + method),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]


def test_big_requests_held_open_are_bounded_per_client(srv: Server) -> None:
    """100 streams each announcing a 4 MiB request and sending a first piece: grpclib would
    buffer each whole (400 MiB per connection); past 16 MiB a client's requests are refused
    unread, and flow control keeps the rest at the client."""
    rpc = srv.tjobs.raw(ALICE)
    try:
        announce = struct.pack(">?I", False, (4 << 20) - 1)
        sids = [rpc.send(SERVICE + "Run", announce + b"x" * 100, end=False) for _ in range(100)]
        refused = lambda: [s for s in sids if rpc.streams[s].ended]  # noqa: E731
        rpc.pump(lambda: len(refused()) >= 96)  # 4 fit the budget, each at 4 MiB
        for sid in refused():
            reply = rpc.streams[sid]
            assert reply.code is Code.RESOURCE_EXHAUSTED and "at once" in reply.message, reply
    finally:
        rpc.close()
    assert health_call(srv.tjobs.raw(BOB))


# --- 3. log streams that never read -----------------------------------------------------------


def test_followers_that_never_read_starve_no_one_and_are_reset(srv: Server) -> None:
    alice, bob = srv.stubs[ALICE], srv.stubs[BOB]
    big = alice.Run(pb.RunRequest(argv=["head", "-c", "40M", "/dev/zero"]), timeout=HANG)
    alice.Wait(pb.JobRef(id=big.id), timeout=HANG)
    idle = bob_latency(srv)
    stuck = srv.tjobs.raw(ALICE)
    stuck.ack = False  # never gives flow-control credit back: every stream stalls
    req = frame(pb.LogsRequest(id=big.id, follow=True).SerializeToString())
    sids = [stuck.send(SERVICE + "Logs", req) for _ in range(32)]
    stuck.pump(lambda: sum(len(stuck.streams[s].data) for s in sids) >= 60_000)  # they hold data
    # Bob's output is served whole while the 32 hold theirs.
    mine = bob.Run(pb.RunRequest(argv=["head", "-c", "1M", "/dev/zero"]), timeout=HANG)
    t0 = time.monotonic()
    got = sum(len(c.data) for c in bob.Logs(pb.LogsRequest(id=mine.id, follow=True), timeout=HANG))
    took = time.monotonic() - t0
    assert got == 1 << 20
    assert_served(srv, idle, bob_latency(srv))
    assert took <= max(SLOWDOWN * idle * 4, FLOOR * 4), f"bob's 1 MiB took {took:.2f}s"
    # The stalled streams are reset once the stall timeout (3 s here) has passed.
    stuck.pump(lambda: all(stuck.streams[s].reset for s in sids))
    stuck.close()


def _output_bytes(grpc_body: bytes) -> int:
    """The output bytes in a Logs stream's whole gRPC messages (each a LogChunk)."""
    total, at = 0, 0
    while at + 5 <= len(grpc_body):
        size = int.from_bytes(grpc_body[at + 1 : at + 5], "big")
        if at + 5 + size > len(grpc_body):
            break  # the rest of this message is still to come
        total += len(pb.LogChunk.FromString(grpc_body[at + 5 : at + 5 + size]).data)
        at += 5 + size
    return total


def test_a_stream_waiting_its_turn_on_a_busy_connection_is_not_reset(srv: Server) -> None:
    """Stalled is a connection that takes nothing, not a stream its client reads later: a
    client following two jobs' logs on one connection, reading one, keeps the other (B3)."""
    alice = srv.stubs[ALICE]
    # About 8 s of steady output (over twice the 3 s stall timeout): the stream read keeps the
    # connection moving all along, while the other waits for its client's credit.
    steady = "for i in $(seq 80); do head -c 65536 /dev/zero; sleep 0.1; done"
    job = alice.Run(pb.RunRequest(argv=["sh", "-c", steady]), timeout=HANG)
    c = srv.tjobs.raw(ALICE)
    req = frame(pb.LogsRequest(id=job.id, follow=True).SerializeToString())
    read = c.send(SERVICE + "Logs", req)
    held = c.send(SERVICE + "Logs", req)
    c.hold.add(held)
    c.pump(lambda: c.streams[read].ended)
    assert not c.streams[held].reset and not c.streams[held].ended
    assert _output_bytes(c.streams[held].data) < 80 * 65536  # it did wait for credit
    c.release(held)
    c.pump(lambda: c.streams[held].ended)
    assert not c.streams[held].reset
    assert _output_bytes(c.streams[held].data) == _output_bytes(c.streams[read].data) == 80 * 65536
    c.close()


# --- 4. connections, followers and rate per client --------------------------------------------


def test_per_client_limits_name_their_flag_and_bound_descriptors() -> None:
    flags = ("--client-conns", "4", "--client-follows", "6", "--client-rate", "50")
    with tjobs(*flags) as s:
        alice = s.stubs[ALICE]
        alice.List(pb.ListRequest(), timeout=HANG)  # its first connection
        fds0 = s.fds()
        # Connections: alice has one (the fixture's); three more work, the fifth is refused.
        extra = [s.tjobs.stub(ALICE) for _ in range(4)]
        codes = []
        for stub in extra:
            try:
                stub.List(pb.ListRequest(), timeout=HANG)
                codes.append(Code.OK)
            except grpc.RpcError as err:
                codes.append(err.code())
                assert "--client-conns" in (err.details() or "")
        assert codes == [Code.OK] * 3 + [Code.RESOURCE_EXHAUSTED]
        assert s.stubs[BOB].List(pb.ListRequest(), timeout=HANG) is not None  # bob unaffected
        # Followers: six follow a quiet job, the seventh is refused; bob's still works.
        quiet = alice.Run(pb.RunRequest(argv=["sleep", "60"]), timeout=HANG)
        req = pb.LogsRequest(id=quiet.id, follow=True)
        follows = [alice.Logs(req, timeout=HANG) for _ in range(6)]
        with pytest.raises(grpc.RpcError) as info:
            _wait_first(alice.Logs(req, timeout=HANG))
        assert info.value.code() is Code.RESOURCE_EXHAUSTED
        assert "--client-follows" in (info.value.details() or "")
        assert bob_latency(s, 1) < HANG
        assert s.fds() <= fds0 + 3 + 6 + 16, "descriptors beyond the connections and followers"
        for call in follows:
            call.cancel()
        alice.Stop(pb.StopRequest(id=quiet.id, grace_seconds=0), timeout=HANG)
        # Rate: a burst past twice the rate is refused, naming the flag.
        refused = []
        for _ in range(150):
            try:
                alice.Status(pb.JobRef(id=quiet.id), timeout=HANG)
            except grpc.RpcError as err:
                refused.append(err.details() or "")
        assert refused and all("--client-rate" in m for m in refused)


def _wait_first(call: object) -> None:
    for _ in call:  # type: ignore[attr-defined]
        break


# --- 5. descriptors exhausted ---------------------------------------------------------------


def test_full_descriptor_table_is_logged_once_per_interval() -> None:
    limit = 1300
    flags = ("--max-conns", "100", "--max-follows", "100")
    with tjobs(*flags, prefix=("prlimit", f"--nofile={limit}:{limit}")) as s:
        # The table made full from outside: the server's soft limit lowered to just above the
        # highest descriptor it holds, so accept() fails (EMFILE) after a few connections,
        # however fast or slow this machine is (filling 1300 descriptors by connecting raced
        # the server's closing of idle and half-open connections).
        top = max(int(fd) for fd in os.listdir(f"/proc/{s.pid}/fd"))
        resource.prlimit(s.pid, resource.RLIMIT_NOFILE, (top + 1, limit))
        socks: list[socket.socket] = []
        for _ in range(200):  # more than the free numbers below the limit; the rest queue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex(("127.0.0.1", s.tjobs.port))
            assert err in (0, errno.EINPROGRESS), err
            socks.append(sock)
        line = s.tjobs.expect("out of system resource")
        t0 = time.monotonic()
        # 3 s at the full table: asyncio retries accept() every second.
        lines = []
        deadline = t0 + 3.0
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                lines.append(_line_before(s.tjobs, deadline))
        for sock in socks:
            sock.close()
        resource.prlimit(s.pid, resource.RLIMIT_NOFILE, (limit, limit))
        flood = [ln for ln in lines if "out of system resource" in ln]
        assert not flood, f"logged again within the interval: {flood}; first: {line}"
        assert health_call(s.tjobs.raw(BOB))  # served again once the table has room


def _line_before(t: Tjobs, deadline: float) -> str:
    assert t._lines is not None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    line = t._lines.get(timeout=left)
    t.log.append(line)
    return line


# --- 6. polling flood -----------------------------------------------------------------------


def test_stats_streams_are_capped_per_client_and_have_a_floor(srv: Server) -> None:
    alice = srv.stubs[ALICE]
    busy = alice.Run(pb.RunRequest(argv=["sh", "-c", "while :; do :; done"]), timeout=HANG)
    try:
        idle = bob_latency(srv)
        req = pb.StatsRequest(stream=True, interval_seconds=0.2)
        streams = [alice.Stats(req, timeout=HANG) for _ in range(8)]
        for call in streams:
            _wait_first(call)  # all eight sampling
        with pytest.raises(grpc.RpcError) as info:
            _wait_first(alice.Stats(req, timeout=HANG))
        assert info.value.code() is Code.RESOURCE_EXHAUSTED
        assert "--client-stats" in (info.value.details() or "")
        too_fast = pb.StatsRequest(stream=True, interval_seconds=0.05)
        with pytest.raises(grpc.RpcError) as info:
            _wait_first(srv.stubs[BOB].Stats(too_fast, timeout=HANG))
        assert info.value.code() is Code.INVALID_ARGUMENT
        assert_served(srv, idle, bob_latency(srv))
        for call in streams:
            call.cancel()  # type: ignore[attr-defined]
    finally:
        alice.Stop(pb.StopRequest(id=busy.id, grace_seconds=0), timeout=HANG)


# --- 7. a listing broken by another client --------------------------------------------------


def test_huge_argv_cannot_break_anothers_listing(srv: Server) -> None:
    alice, admin = srv.stubs[ALICE], srv.stubs[ADMIN]
    long = ["x" * 1000] * 240  # 240 kB of arguments
    big = [alice.Run(pb.RunRequest(argv=["true", *long]), timeout=HANG) for _ in range(20)]
    for st in big:
        alice.Wait(pb.JobRef(id=st.id), timeout=HANG)
    listing = admin.List(pb.ListRequest(), timeout=HANG)  # grpcio's stock 4 MiB receive limit
    shown = {j.id: j for j in listing.jobs}
    for st in big:
        entry = shown[st.id]
        assert entry.argv_truncated and sum(len(a) for a in entry.argv) <= 1024
    whole = admin.Status(pb.JobRef(id=big[0].id), timeout=HANG)
    assert list(whole.argv) == ["true", *long] and not whole.argv_truncated
    # Pages: every job once, newest first, however small the page.
    seen: list[str] = []
    token = ""
    while True:
        page = admin.List(pb.ListRequest(limit=7, page_token=token), timeout=HANG)
        assert len(page.jobs) <= 7
        seen += [j.id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert seen == [j.id for j in listing.jobs]
    with pytest.raises(grpc.RpcError) as info:
        admin.List(pb.ListRequest(page_token="not a token"), timeout=HANG)
    assert info.value.code() is Code.INVALID_ARGUMENT


# --- 8. injection -------------------------------------------------------------------------


FORGED = "2026/12/01 00:00:00 run admin 0123abcd rm -rf /: running"


def test_names_and_argv_cannot_forge_log_lines_or_identities(srv: Server) -> None:
    certs = srv.root / "certs"
    bad = {
        "nl": "alice\n" + FORGED,
        "esc": "bob\x1b[2J",
        "nul": "admin\x00",
        "trail": "admin ",
        "lead": " admin",
    }
    for stem, cn in bad.items():
        client_cert(certs, stem, cn)
    client_cert(certs, "noeku", "carol", eku=False)
    client_cert(certs, "upper", "Admin")
    for stem in [*bad, "noeku"]:
        with pytest.raises(grpc.RpcError) as info:
            srv.tjobs.stub(stem).List(pb.ListRequest(), timeout=HANG)
        assert info.value.code() is Code.UNAUTHENTICATED, (stem, info.value.details())
    # "Admin" is a name of its own, not the admin: it does not see bob's job.
    upper = srv.tjobs.stub("upper")
    assert srv.done_id not in {j.id for j in upper.List(pb.ListRequest(), timeout=HANG).jobs}
    # argv reaches the log escaped: no line starts with the forged text, no raw escape.
    alice = srv.stubs[ALICE]
    st = alice.Run(pb.RunRequest(argv=["echo", "\n" + FORGED + "\x1b[2J"]), timeout=HANG)
    alice.Wait(pb.JobRef(id=st.id), timeout=HANG)
    line = srv.tjobs.expect(st.id[:8])
    assert "\\n" + FORGED in line and "\\x1b[2J" in line
    # Later lines: none forged (the log is read up to a line written after the job's).
    marker = alice.Run(pb.RunRequest(argv=["echo", "marker"]), timeout=HANG)
    lines = []
    while marker.id[:8] not in (ln := srv.tjobs.next_line()):
        lines.append(ln)
    assert not any(ln.startswith(FORGED) or "\x1b" in ln or "\x00" in ln for ln in lines), lines
