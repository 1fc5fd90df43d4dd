"""Hostile clients: bad certificates and protocols, idle and stalled connections, lying and
oversized requests, fuzzed requests, a burst of Runs, followers that vanish mid-stream.

Connections are opened by hand (ssl, h2) wherever grpcio would hide what is tested, and each is
closed by waiting for the server's end of it, so the checkup can count the server's sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import resource
import socket
import ssl
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from advkit import (
    MAX_JOBS,
    SERVICE,
    Case,
    RawGrpc,
    Tjobs,
    code_of,
    fifo,
    finish,
    frame,
    health_call,
    output,
    wait_eof,
)
from apiharness import ADMIN, ALICE, BOB, HANG, ROOT, Harness, fds_under
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from support.state import job_dirs

from tjob.api import pki, tls
from tjob.api.answers import MAX_REQUEST
from tjob.api.checks import MAX_INTERVAL, MIN_INTERVAL
from tjob.api.tjob.v1 import tjob_pb2 as pb

pytestmark = ROOT

Code = grpc.StatusCode


# --- certificates and protocols -----------------------------------------------------------------


def client_ctx(
    ca: Path, crt: Path | None = None, key: Path | None = None, *, tls12: bool = False
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if crt is not None:
        ctx.load_cert_chain(crt, key)
    ctx.set_alpn_protocols(["h2"])
    if tls12:
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def write(d: Path, stem: str, item: pki.CertKey) -> tuple[Path, Path]:
    crt, key = d / f"{stem}.crt", d / f"{stem}.key"
    crt.write_bytes(item.cert_pem())
    key.write_bytes(item.key_pem())
    return crt, key


def outcome(h: Harness, ctx: ssl.SSLContext) -> str:
    """'http2' when the server starts speaking HTTP/2 to us (its SETTINGS frame), otherwise
    how it refused; either way only once the server has closed its end of the connection."""
    raw = socket.create_connection(("127.0.0.1", h.port), timeout=HANG)
    conn = ctx.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
    try:
        try:
            conn.do_handshake()
            # TLS 1.3: the server judges our certificate after our side of the handshake is
            # done; its verdict is the first thing we read.
            first = conn.recv(65536)
        except ssl.SSLError as err:
            return f"refused: {err.reason}"
        except ConnectionResetError:
            return "refused: reset"
        if not first:
            return "refused: closed"
        return "http2" if first[3] == 0x4 else f"unexpected {first[:16]!r}"
    finally:
        wait_eof(conn)
        conn.close()


@pytest.fixture
def certs(case: Case, tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """Client certificates the server must refuse (and one it must take)."""
    ca = pki.load(case.h.certs, "ca")
    rogue = pki.make_ca("rogue CA")
    now = datetime.now(UTC)
    return {
        "good": case.h.files(ALICE)[1:],
        "another CA": write(tmp_path, "rogue", pki.issue_client(rogue, "alice")),
        "another CA, admin's name": write(
            tmp_path, "rogue-admin", pki.issue_client(rogue, "admin")
        ),
        "expired": write(
            tmp_path,
            "expired",
            pki.issue_client(
                ca, "alice", not_before=now - timedelta(days=2), not_after=now - timedelta(days=1)
            ),
        ),
        "not yet valid": write(
            tmp_path,
            "future",
            pki.issue_client(
                ca, "alice", not_before=now + timedelta(days=1), not_after=now + timedelta(days=2)
            ),
        ),
        "server's own (serverAuth only)": case.h.files("svc")[1:],
    }


def test_tls_refusals(case: Case, certs: dict[str, tuple[Path, Path]]) -> None:
    ca = case.h.certs / "ca.crt"
    got = {name: outcome(case.h, client_ctx(ca, *pair)) for name, pair in certs.items()}
    got["no client certificate"] = outcome(case.h, client_ctx(ca))
    got["TLS 1.2 only"] = outcome(case.h, client_ctx(ca, *certs["good"], tls12=True))
    assert got.pop("good") == "http2"  # the control: same server, same code path
    assert all(v.startswith("refused") for v in got.values()), got


@pytest.mark.parametrize(
    "opening",
    [
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ],
    ids=["http2 preface", "http/1.1"],
)
def test_plaintext_to_the_tls_port_gets_nothing(case: Case, opening: bytes) -> None:
    with socket.create_connection(("127.0.0.1", case.h.port), timeout=HANG) as sock:
        sock.sendall(opening)
        got = wait_eof(sock)
    # Nothing, or a TLS alert record (0x15): never an HTTP answer.
    assert got == b"" or got[0] == 0x15, got[:32]


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        assert hard >= need, f"this test needs {need} file descriptors; the hard limit is {hard}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


@contextlib.contextmanager
def idle_connections(h: Harness, n: int) -> Iterator[list[ssl.SSLSocket]]:
    """``n`` authenticated TLS connections that never send a request."""
    raise_fd_limit(4096)  # both ends live in this process
    ctx = tls.client_context(*h.files(ALICE))

    def connect(_: int) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", h.port), timeout=HANG)
        return ctx.wrap_socket(raw, server_hostname="localhost")

    with ThreadPoolExecutor(8) as pool:
        idle = list(pool.map(connect, range(n)))
    try:
        yield idle
    finally:
        for conn in idle:
            wait_eof(conn)  # the server closes each once we leave
            conn.close()


def test_1000_idle_tls_connections(case: Case) -> None:
    with idle_connections(case.h, 1000):
        # A fresh handshake and a request are served; jobs started before run on.
        assert health_call(RawGrpc.to(case.h))
        case.bystander.check()
        jobs = case.stub(ADMIN).List(pb.ListRequest(), timeout=HANG).jobs
        assert case.bystander.id in {j.id for j in jobs}


def test_jobs_start_while_1000_connections_are_open(case: Case) -> None:
    with idle_connections(case.h, 1000):
        st = case.stub(BOB).Run(pb.RunRequest(argv=["echo", "served"]), timeout=HANG)
        assert output(case.stub(BOB), st.id) == b"served\n"


def test_stalled_handshakes_do_not_stop_others(case: Case) -> None:
    raise_fd_limit(4096)
    stalled = []
    for i in range(400):
        sock = socket.create_connection(("127.0.0.1", case.h.port), timeout=HANG)
        if i % 2:
            sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello that never finishes
        stalled.append(sock)
    try:
        assert health_call(RawGrpc.to(case.h))  # a full handshake while 400 are stuck in theirs
        st = case.stub().Run(pb.RunRequest(argv=["echo", "served"]), timeout=HANG)
        assert output(case.stub(), st.id) == b"served\n"
    finally:
        for sock in stalled:
            wait_eof(sock)
            sock.close()


# --- lying, truncated and oversized requests ----------------------------------------------------

REF = pb.JobRef(id="0123456789abcdef").SerializeToString()


def test_lying_and_oversized_requests_are_refused_unread(case: Case) -> None:
    rpc = RawGrpc.to(case.h)
    try:
        # Announces 4 GiB, sends 16 bytes and keeps the stream open: refused at once.
        sid = rpc.send(
            SERVICE + "Status", struct.pack(">?I", False, 0xFFFFFFFF) + b"x" * 16, end=False
        )
        rpc.pump(lambda: rpc.streams[sid].ended)
        r = rpc.streams[sid]
        assert r.code is Code.RESOURCE_EXHAUSTED and "4294967295 bytes" in r.message, r
        sid = rpc.send(SERVICE + "Run", struct.pack(">?I", False, MAX_REQUEST + 1), end=False)
        rpc.pump(lambda: rpc.streams[sid].ended)
        assert rpc.streams[sid].code is Code.RESOURCE_EXHAUSTED
        r = rpc.call(SERVICE + "Status", struct.pack(">?I", True, 3) + b"abc")
        assert (r.code, r.message) == (Code.UNIMPLEMENTED, "compressed requests are not supported")
        r = rpc.call(SERVICE + "Status", b"")
        assert r.code is Code.INVALID_ARGUMENT and "missing" in r.message, r
        r = rpc.call(SERVICE + "Status", frame(b"\xff\xff\xff"))
        assert r.code is Code.INVALID_ARGUMENT and "not a valid JobRef" in r.message, r
        r = rpc.call(SERVICE + "NoSuchMethod", frame(REF))
        assert r.code is Code.UNIMPLEMENTED, r
    finally:
        rpc.close()
    # A real 5 MiB request from grpcio, the product's own client library.
    err = code_of(case.stub().Run, pb.RunRequest(argv=["echo", "x" * (5 << 20)]))
    assert err is Code.RESOURCE_EXHAUSTED


def test_oversized_headers_close_only_that_connection(case: Case) -> None:
    rpc = RawGrpc.to(case.h)
    sid = rpc.h2.get_next_available_stream_id()
    rpc.h2.send_headers(
        sid,
        [
            (":method", "POST"),
            (":scheme", "https"),
            (":path", SERVICE + "Status"),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("x-huge", "a" * 70_000),  # over the 64 KiB header list limit
        ],
        end_stream=True,
    )
    rpc.sock.sendall(rpc.h2.data_to_send())
    with pytest.raises(ConnectionError):
        rpc.pump(lambda: False)  # the server hangs up on this connection
    rpc.sock.close()


@pytest.mark.parametrize(
    "payload",
    [struct.pack(">?I", False, len(REF) + 50) + REF, b"\x00\x00\x00"],
    ids=["body shorter than announced", "prefix cut short"],
)
def test_truncated_request_is_invalid_argument(case: Case, payload: bytes) -> None:
    rpc = RawGrpc.to(case.h)
    try:
        r = rpc.call(SERVICE + "Status", payload)
    finally:
        rpc.close()
    assert r.code is Code.INVALID_ARGUMENT, (r.code, r.message)


# --- fuzzed requests ----------------------------------------------------------------------------

NEVER = {Code.UNKNOWN, Code.INTERNAL, Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "0" * 32, "0123456789abcdef", "../../etc/passwd", "-", " ", "\x00"]),
)
ids = st.one_of(texts, st.text(alphabet="0123456789abcdefABCDEF", max_size=40))
u32 = st.one_of(st.integers(0, 600), st.integers(0, 2**32 - 1))
u64 = st.one_of(st.integers(0, 1 << 30), st.integers(0, 2**64 - 1))
floats = st.floats(allow_nan=True, allow_infinity=True)
limits = st.builds(
    pb.Limits, cpu_percent=u32, memory_mb=u64, pids=u32, rbps=u64, wbps=u64, device=texts
)
# argv[0]: harmless commands, ones that cannot start, and arbitrary text (not found).
commands = st.one_of(
    st.sampled_from(["true", "echo", "/no/such/cmd", "/etc/passwd", "/tmp", ""]), st.text()
)
runs = st.builds(
    pb.RunRequest,
    argv=st.builds(lambda a, b: [a, *b], commands, st.lists(texts, max_size=5)) | st.just([]),
    limits=st.one_of(st.just(pb.Limits()), limits),  # often none: the request may be valid
    env=st.one_of(st.just({}), st.dictionaries(texts, texts, max_size=4)),
    workdir=st.one_of(st.sampled_from(["", "/", "/tmp", "tmp", "/no/such"]), texts),
)
others = st.one_of(
    st.tuples(st.sampled_from(["Status", "Wait", "Remove"]), st.builds(pb.JobRef, id=ids)),
    st.tuples(
        st.just("Stop"),
        st.builds(pb.StopRequest, id=ids, grace_seconds=st.one_of(st.none(), floats)),
    ),
    st.tuples(
        st.just("Logs"),
        st.builds(
            pb.LogsRequest,
            id=ids,
            follow=st.booleans(),
            streams=st.integers(-(2**31), 2**31 - 1),
            skip=u64,
        ),
    ),
    st.tuples(st.just("List"), st.builds(pb.ListRequest, state=st.integers(-(2**31), 2**31 - 1))),
    st.tuples(
        st.just("Stats"),
        st.builds(
            pb.StatsRequest,
            ids=st.lists(ids, max_size=3),
            stream=st.booleans(),
            interval_seconds=floats,
        ),
    ),
)


def long_stats(req: Any) -> bool:
    """A valid Stats of all one's jobs that samples long, or streams until cancelled: by
    design, so not for a fuzzer that waits for answers."""
    if not isinstance(req, pb.StatsRequest) or req.ids:
        return False
    interval = req.interval_seconds or 1.0
    return MIN_INTERVAL <= interval <= MAX_INTERVAL and (req.stream or interval > 0.5)


def call(case: Case, method: str, req: Any) -> Code:
    fn = getattr(case.stub(), method)
    try:
        result = fn(req, timeout=HANG)
        if method in ("Logs", "Stats"):
            for _ in result:
                pass
    except grpc.RpcError as err:
        return err.code()
    return Code.OK


def end_alices_jobs(case: Case) -> None:
    """Stop whatever a fuzzed request started (alice sees only her own jobs)."""
    stub = case.stub()
    for job in stub.List(pb.ListRequest(state=pb.JOB_STATE_RUNNING), timeout=HANG).jobs:
        finish(stub, job.id)


def test_fuzzed_run_requests(case: Case) -> None:
    seen: Counter[Code] = Counter()

    @FUZZ
    @given(req=runs)
    @example(req=pb.RunRequest(argv=["true"]))  # each path at least once, whatever is drawn
    @example(req=pb.RunRequest(argv=[]))
    def run(req: pb.RunRequest) -> None:
        code = call(case, "Run", req)
        seen[code] += 1
        end_alices_jobs(case)
        assert code in {Code.OK, Code.INVALID_ARGUMENT}, (code, req)

    run()
    assert seen[Code.INVALID_ARGUMENT] and seen[Code.OK], seen  # both paths were exercised


def test_fuzzed_job_requests(case: Case) -> None:
    seen: Counter[Code] = Counter()

    @FUZZ
    @given(pair=others)
    @example(pair=("Status", pb.JobRef(id="0" * 32)))
    @example(pair=("Status", pb.JobRef(id="x")))
    def other(pair: tuple[str, Any]) -> None:
        method, req = pair
        assume(not long_stats(req))
        code = call(case, method, req)
        seen[code] += 1
        end_alices_jobs(case)
        assert code not in NEVER, (code, method, req)

    other()
    assert seen[Code.INVALID_ARGUMENT] and seen[Code.NOT_FOUND], seen


METHODS = ["Run", "Stop", "Status", "List", "Logs", "Wait", "Stats", "Remove"]


def test_fuzzed_raw_bytes(case: Case) -> None:
    conn = [RawGrpc.to(case.h)]
    unanswered: list[tuple[str, bytes]] = []

    @settings(FUZZ, max_examples=100)
    @given(method=st.sampled_from(METHODS), body=st.binary(max_size=64))
    def raw(method: str, body: bytes) -> None:
        if method == "Stats":
            try:
                assume(not long_stats(pb.StatsRequest.FromString(body)))
            except Exception:  # undecodable: the server must say so
                pass
        try:
            r = conn[0].call(SERVICE + method, frame(body))
        except TimeoutError:
            # Not raised into hypothesis, which would shrink it at HANG seconds a try: noted,
            # and the rest goes on over a new connection.
            unanswered.append((method, body))
            conn[0].close()
            conn[0] = RawGrpc.to(case.h)
            return
        finally:
            end_alices_jobs(case)
        assert r.code not in NEVER and r.code is not None, (r.code, r.message, method, body)

    try:
        raw()
    finally:
        conn[0].close()
    assert not unanswered, f"no answer within {HANG}s: {unanswered}"


# --- a burst from one identity, followers that vanish -------------------------------------------


def test_10000_runs_in_a_burst_meet_the_per_identity_cap(case: Case) -> None:
    h, alice = case.h, case.stub()
    assert h.engine is not None
    jobs_before = len(h.engine.jobs())
    dirs_before = len(job_dirs(h.state / "jobs"))
    req = pb.RunRequest(argv=["sleep", "1000"])
    burst = [alice.Run.future(req, timeout=120) for _ in range(10_000)]
    # Bob, mid-burst, has an allowance of his own and is served.
    st = case.stub(BOB).Run(pb.RunRequest(argv=["echo", "bob"]), timeout=HANG)
    pending = sum(1 for f in burst if not f.done())
    assert output(case.stub(BOB), st.id) == b"bob\n"
    codes = Counter(f.exception().code() if f.exception() else Code.OK for f in burst)
    assert codes == {Code.OK: MAX_JOBS, Code.RESOURCE_EXHAUSTED: 10_000 - MAX_JOBS}, codes
    assert pending > 0  # bob did not wait for the burst to be over
    # The refused calls made nothing: no job, no record, no directory.
    assert len(h.engine.jobs()) == jobs_before + MAX_JOBS + 1
    assert len(job_dirs(h.state / "jobs")) == dirs_before + MAX_JOBS + 1
    for f in burst:
        if not f.exception():
            finish(alice, f.result().id)


def started(rpc: RawGrpc, sids: list[int]) -> bool:
    return all(rpc.streams[s].data for s in sids)


def test_1000_followers_vanishing_mid_stream_free_everything(case: Case) -> None:
    h = case.h
    raise_fd_limit(8192)
    with fifo() as gate:
        st = case.stub().Run(
            pb.RunRequest(argv=["sh", "-c", f"echo up; cat {gate}; echo after"]), timeout=HANG
        )
        flood = case.stub().Run(pb.RunRequest(argv=["yes"]), timeout=HANG)
        logs = frame(pb.LogsRequest(id=st.id, follow=True).SerializeToString())
        conns = [RawGrpc.to(h) for _ in range(10)]
        streams = {c: [c.send(SERVICE + "Logs", logs) for _ in range(100)] for c in conns}
        for c, sids in streams.items():  # every follower has its first bytes: mid-stream
            c.pump(functools.partial(started, c, sids))
        # Ten more that never read, stuck on flow control behind a flood.
        stuck = RawGrpc.to(h)
        stuck.ack = False
        stuck.h2.increment_flow_control_window(1 << 24)  # room on the connection, none per stream
        stuck.sock.sendall(stuck.h2.data_to_send())
        flood_logs = frame(pb.LogsRequest(id=flood.id, follow=True).SerializeToString())
        stuck_sids = [stuck.send(SERVICE + "Logs", flood_logs) for _ in range(10)]
        stuck.pump(functools.partial(started, stuck, stuck_sids))
        serving = h.in_flight()
        assert len(serving) >= 1010
        assert fds_under(h.state / "jobs" / st.id)  # the followers hold the log open

        # Vanish three ways: cancelled streams, hung-up connections, reset connections.
        for i, c in enumerate(conns):
            if i < 3:
                for sid in streams[c]:
                    c.cancel(sid)
                c.close()
            elif i < 6:
                c.close()
            else:
                c.abort()
        stuck.abort()
        _, left = h.call(asyncio.wait(serving, timeout=HANG))
        assert not left, f"{len(left)} follower tasks never ended"
        assert not h.in_flight()
        assert fds_under(h.state / "jobs" / st.id) == []
        assert fds_under(h.state / "jobs" / flood.id) == []
        finish(case.stub(), flood.id)
        gate.release()
        assert output(case.stub(), st.id) == b"up\nafter\n"


# --- identities across restarts -----------------------------------------------------------------


def test_admin_removed_from_the_list_loses_sight_after_restart(tmp_path: Path) -> None:
    certs, state = tmp_path / "certs", tmp_path / "state"
    pki.init_dir(certs)
    first = Tjobs(certs, state, admins=("admin",))
    try:
        first.expect("listen on")
        bobs = first.stub(BOB).Run(pb.RunRequest(argv=["echo", "bob's"]), timeout=HANG)
        first.stub(BOB).Wait(pb.JobRef(id=bobs.id), timeout=HANG)
        seen = first.stub(ADMIN).Status(pb.JobRef(id=bobs.id), timeout=HANG)
        assert seen.owner == "bob"
    finally:
        assert first.stop() == 0
    second = Tjobs(certs, state, admins=())  # restarted without --admin admin
    try:
        second.expect("admins: none")
        admin = second.stub(ADMIN)
        with pytest.raises(grpc.RpcError) as info:
            admin.Status(pb.JobRef(id=bobs.id), timeout=HANG)
        assert (info.value.code(), info.value.details()) == (Code.NOT_FOUND, "unauthorized")
        assert bobs.id not in {j.id for j in admin.List(pb.ListRequest(), timeout=HANG).jobs}
        assert code_of(admin.Stop, pb.StopRequest(id=bobs.id)) is Code.NOT_FOUND
        # Bob still has it, and the server is healthy.
        assert second.stub(BOB).Status(pb.JobRef(id=bobs.id), timeout=HANG).owner == "bob"
        assert health_call(second.raw())
    finally:
        assert second.stop() == 0


# --- tjobs' own file descriptor limit -----------------------------------------------------------


def test_stalled_handshakes_cannot_lock_out_clients_of_a_real_tjobs(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    pki.init_dir(certs)
    raise_fd_limit(4096)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    server = Tjobs(certs, tmp_path / "state", prefix=("prlimit", f"--nofile=1024:{hard}"))
    stalled: list[socket.socket] = []
    t: threading.Thread | None = None
    try:
        server.expect("listen on")
        for _ in range(1040):  # its limit, plus a few for the listen backlog
            stalled.append(socket.create_connection(("127.0.0.1", server.port), timeout=HANG))
        box: dict[str, object] = {}

        def check() -> None:
            try:
                box["healthy"] = health_call(server.raw())
            except Exception as err:  # a timeout here is the lock-out
                box["error"] = err

        t = threading.Thread(target=check, daemon=True)
        t.start()
        t.join(5)  # a guard, not a measurement: a served check takes milliseconds
        assert box.get("healthy") is True, box or "no answer within 5 s"
    finally:
        for sock in stalled:
            sock.close()
        server.stop()
        if t is not None:
            t.join(HANG)
