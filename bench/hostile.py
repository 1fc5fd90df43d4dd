"""B9: tjobs under hostile clients (issue 14), at the sizes the attacks were first tried at.

For each attack, one identity ("other") attacks while the benchmark's client ("cli") measures
its `ps` (List) and `logs` (Logs of a finished job) over the window; the same measurement with
no attack, in the same run, is the floor. The server's peak RSS and its CPU over the window are
read from /proc. The attacks: a 3.8 MB Stats request of 380,000 ids in a loop; 200,000 streams
opened and reset (rapid reset, reconnecting after each GOAWAY); 24 Logs followers that never
read; 200 connections x 100 followers; 200 Stats streams at the shortest interval.
"""

from __future__ import annotations

import contextlib
import select
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived

from tjob.api import tls

from .common import Figure, Result

if TYPE_CHECKING:
    from .api import Client, Server

SERVICE = "/tjob.v1.JobService/"
ATTACKER = "other"


def _kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks of 10 ms


class Raw:
    """HTTP/2 gRPC spoken by hand as the attacker, over mutual TLS."""

    def __init__(self, target: str, certs: Path) -> None:
        host, port = target.rsplit(":", 1)
        ctx = tls.client_context(*_files(certs, ATTACKER))
        raw = socket.create_connection((host, int(port)), timeout=30)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def open(self, method: str, body: bytes, *, reset: bool = False) -> int:
        sid: int = self.h2.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":path", SERVICE + method),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        self.h2.send_headers(sid, headers)
        self.h2.send_data(sid, len(body).to_bytes(5, "big") + body, end_stream=True)
        if reset:
            self.h2.reset_stream(sid, error_code=8)
        return sid

    def drain(self, *, ack: bool = False) -> bool:
        """Read what has arrived (giving flow-control credit back if ``ack``); False once
        closed."""
        while self.sock.pending() or select.select([self.sock], [], [], 0)[0]:
            data = self.sock.recv(65536)
            if not data:
                return False
            for ev in self.h2.receive_data(data):
                if isinstance(ev, ConnectionTerminated):
                    return False
                if ack and isinstance(ev, DataReceived):
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            self.flush()
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _files(certs: Path, stem: str) -> tuple[Path, Path, Path]:
    return certs / "ca.crt", certs / f"{stem}.crt", certs / f"{stem}.key"


# --- the attacks: each runs until ``stop`` ----------------------------------------------------


def _stats_ids(c: Client, s: Server, stop: threading.Event) -> None:
    import grpc

    mine = _attacker_client(c, s)
    job = mine.start(["true"])
    mine.wait(c.pb.JobRef(id=job.id), timeout=60)
    flood = c.pb.StatsRequest(ids=[job.id[:8]] * 380_000)
    stats = mine.channel.unary_stream(
        SERVICE + "Stats",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=c.pb.StatsResponse.FromString,
    )
    try:
        while not stop.is_set():
            with contextlib.suppress(grpc.RpcError):
                list(stats(flood, timeout=120))
    finally:
        mine.close()


def _rapid_reset(c: Client, s: Server, stop: threading.Event, total: int = 200_000) -> None:
    body = c.pb.ListRequest().SerializeToString()
    sent = 0
    while sent < total and not stop.is_set():
        try:
            rpc = Raw(s.target, Path(s.certs.ca).parent)
        except OSError:
            continue
        try:
            while sent < total and not stop.is_set():
                for _ in range(100):
                    rpc.open("List", body, reset=True)
                sent += 100
                rpc.flush()
                if not rpc.drain():
                    break
        except OSError:
            pass
        finally:
            rpc.close()


def _stalled_followers(c: Client, s: Server, stop: threading.Event) -> None:
    mine = _attacker_client(c, s)
    job = mine.start(["head", "-c", "64M", "/dev/zero"])
    mine.wait(c.pb.JobRef(id=job.id), timeout=120)
    mine.close()
    rpc = Raw(s.target, Path(s.certs.ca).parent)
    body = c.pb.LogsRequest(id=job.id, follow=True).SerializeToString()
    try:
        for _ in range(24):
            rpc.open("Logs", body)
        rpc.flush()
        while not stop.wait(0.2) and rpc.drain():
            pass  # never a WINDOW_UPDATE: every stream stalls on flow control
    finally:
        rpc.close()


def _follower_flood(c: Client, s: Server, stop: threading.Event) -> None:
    mine = _attacker_client(c, s)
    job = mine.start(["sleep", "3600"])
    body = c.pb.LogsRequest(id=job.id, follow=True).SerializeToString()
    conns: list[Raw] = []
    try:
        for _ in range(200):
            if stop.is_set():
                break
            with contextlib.suppress(OSError):
                rpc = Raw(s.target, Path(s.certs.ca).parent)
                conns.append(rpc)
                for _ in range(100):
                    rpc.open("Logs", body)
                rpc.flush()
        while not stop.wait(0.2):
            conns = [r for r in conns if _alive(r)]
    finally:
        for rpc in conns:
            rpc.close()
        mine.stop(c.pb.StopRequest(id=job.id, grace_seconds=0), timeout=60)
        mine.close()


def _alive(rpc: Raw) -> bool:
    try:
        return rpc.drain()
    except OSError:
        return False


def _stats_polling(c: Client, s: Server, stop: threading.Event) -> None:
    mine = _attacker_client(c, s)
    busy = mine.start(["sh", "-c", "while :; do :; done"])
    conns = [Raw(s.target, Path(s.certs.ca).parent) for _ in range(2)]
    body = c.pb.StatsRequest(stream=True, interval_seconds=0.2).SerializeToString()
    try:
        for rpc in conns:  # 200 streams on two connections (100 each, the stream limit)
            for _ in range(100):
                rpc.open("Stats", body)
            rpc.flush()
        while not stop.wait(0.1):  # read and acknowledge, as a client polling in earnest would
            if not all(rpc.drain(ack=True) for rpc in conns):
                break
    finally:
        for rpc in conns:
            rpc.close()
        mine.stop(c.pb.StopRequest(id=busy.id, grace_seconds=0), timeout=60)
        mine.close()


def _attacker_client(c: Client, s: Server) -> Client:
    from .api import Certs, Client

    certs = Path(s.certs.ca).parent
    ca, crt, key = (str(p) for p in _files(certs, ATTACKER))
    return Client(s.target, Certs(ca, crt, key))


ATTACKS: list[tuple[str, Callable[[Client, Server, threading.Event], None]]] = [
    ("Stats of 380,000 ids, in a loop", _stats_ids),
    ("rapid reset: 200,000 streams opened and reset", _rapid_reset),
    ("24 followers that never read", _stalled_followers),
    ("200 connections x 100 followers", _follower_flood),
    ("200 Stats streams at the shortest interval", _stats_polling),
]


# --- measuring --------------------------------------------------------------------------------


@contextlib.contextmanager
def _watch(pid: int) -> Iterator[dict[str, float]]:
    """Peak RSS (MiB) and CPU (% of one core) of ``pid`` over the body."""
    out: dict[str, float] = {"rss": 0.0, "cpu": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            with contextlib.suppress(OSError):
                out["rss"] = max(out["rss"], _kib(pid, "VmRSS") / 1024)

    t = threading.Thread(target=sample, daemon=True)
    cpu0, t0 = _cpu(pid), time.monotonic()
    t.start()
    try:
        yield out
    finally:
        done.set()
        t.join()
        out["cpu"] = (_cpu(pid) - cpu0) / (time.monotonic() - t0) * 100


PACE = 0.01  # seconds between the second client's ps+logs pairs (200 calls a second)


def _second_client(c: Client, done_id: str, window: float) -> tuple[list[float], list[float]]:
    """The second client's `ps` and `logs` latencies (ms) over ``window`` seconds, a pair of
    calls every ``PACE`` seconds: a busy user, well under the per-client rate limit (back to
    back, a quiet server answers ~2000 calls a second and the limit refuses the rest)."""
    ps: list[float] = []
    logs: list[float] = []
    start = time.monotonic()
    end = start + window
    while (now := time.monotonic()) < end:
        # The load's schedule, not a wait for an event: the next pair's slot.
        time.sleep(max(0.0, start + len(ps) * PACE - now))
        t = time.perf_counter()
        c.list(c.pb.ListRequest(), timeout=120)
        ps.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        b"".join(m.data for m in c.logs(c.pb.LogsRequest(id=done_id), timeout=120))
        logs.append((time.perf_counter() - t) * 1000)
    return ps, logs


def b9(c: Client, s: Server, window: float, warmup: float) -> Result:
    """Each attack for ``window`` seconds (after ``warmup``), against the same idle floor."""
    done = c.start(["echo", "second client"])
    c.wait(c.pb.JobRef(id=done.id), timeout=60)
    figures: list[Figure] = []
    notes: list[str] = []
    with _watch(s.pid) as w:
        ps0, logs0 = _second_client(c, done.id, window)
    idle = (statistics.median(ps0), statistics.median(logs0))
    figures += [Figure("no attack: ps", ps0, "ms"), Figure("no attack: logs", logs0, "ms")]
    notes.append(f"no attack: tjobs peak RSS {w['rss']:.0f} MiB, CPU {w['cpu']:.0f}%")
    worst = 0.0
    for name, fn in ATTACKS:
        stop = threading.Event()
        errors: list[BaseException] = []
        thread = threading.Thread(target=_catch(fn, c, s, stop, errors), daemon=True)
        with _watch(s.pid) as w:
            thread.start()
            stop.wait(warmup)
            ps, logs = _second_client(c, done.id, window)
            stop.set()
            thread.join(120)
        fp, fl = Figure(f"{name}: ps", ps, "ms"), Figure(f"{name}: logs", logs, "ms")
        figures += [fp, fl]
        worst = max(worst, fp.p50 / idle[0], fl.p50 / idle[1])
        notes.append(
            f"{name}: ps p50 {fp.p50:.0f} / p99 {fp.p99:.0f} ms, logs p50 {fl.p50:.0f} / "
            f"p99 {fl.p99:.0f} ms; tjobs peak RSS {w['rss']:.0f} MiB, CPU {w['cpu']:.0f}%"
            + (f"; attacker error: {errors[0]!r}" if errors else "")
        )
    c.clear()
    return Result(
        "B9",
        "a second client's `ps` and `logs` while another client attacks tjobs (issue 14)",
        figures,
        f"worst p50 {worst:.1f}x the no-attack p50",
        "p50 within 5x the no-attack p50",
        worst <= 5.0,
        "make bench BENCH=B9",
        notes,
    )


def _catch(
    fn: Callable[[Client, Server, threading.Event], None],
    c: Client,
    s: Server,
    stop: threading.Event,
    errors: list[BaseException],
) -> Callable[[], None]:
    def run() -> None:
        try:
            fn(c, s, stop)
        except Exception as err:
            errors.append(err)

    return run
