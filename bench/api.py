"""API and CLI benchmarks against a real ``tjobs`` started here as a subprocess.

B1' Run latency, B2' one gRPC follower's throughput, B3 fan-out to many followers, B4 List and
Status with many running jobs and memory per job, B5 CPU of idle followers, B8 whole-process
CLI latency, B9 (bench/hostile.py) a second client while another client attacks. The server
gets its own certificates, state directory and a free loopback port; at the end it is stopped
with SIGTERM (``--stop-on-exit``) and an engine on its state directory stops anything left, so
no job or cgroup outlives the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tjob
from tjob import cgroups
from tjob.api import pki

from . import hostile
from .common import BENCH_DIR, Figure, Result, run_quiet, timed
from .engine import GIB, _runc_bundle, _unmount_runc

if TYPE_CHECKING:
    import grpc

    from tjob.api.tjob.v1 import tjob_pb2 as pb

MIB = 1 << 20
IDS = {"B1p", "B2p", "B3", "B4", "B5", "B8", "B9", "B10"}
BIN = Path(sys.executable).parent  # the venv's bin: tjobs, tjob
LISTEN_TIMEOUT = 60.0
# grpclib's HTTP/2 (h2) allows 100 concurrent streams per connection; stay well under it.
STREAMS_PER_CHANNEL = 50
SERVICE = "/tjob.v1.JobService/"
# The server's caps and defaults: one CPU, room for head/cat, unthrottled disks; the benchmarks
# measure tjob, not its limits. Jobs run as the server's default account.
CAPS = tjob.Limits(cpu_percent=100, memory_mb=256, pids=512, rbps=1 << 40, wbps=1 << 40)
JOB_USER = "nobody"
OUTPUT_CAP = 2 * GIB  # above B2's 1 GiB
SERVER_CGROUP = "tjob"  # tjobs's (it has no flag to change it)
LIB_CGROUP = "tjob-bench-api"  # the in-process engine: the floor of B1' and B2'


@dataclass(frozen=True)
class Certs:
    ca: str
    cert: str  # client "alice"
    key: str

    @property
    def files(self) -> tuple[str, str, str]:
        return self.ca, self.cert, self.key


# --- the server ---------------------------------------------------------------------------------


# Per-client limits raised (B3 alone follows with 1000 streams from one identity); B9 runs
# against a server of its own with the product's defaults.
RAISED_LIMITS = (
    *("--client-conns", "1000", "--client-calls", "100000", "--client-follows", "8000"),
    *("--max-follows", "8000", "--client-rate", "1000000"),
)


class Server:
    """A real tjobs on a free loopback port, with caps (and, unless ``raised`` is False,
    per-client limits) raised for the benchmarks."""

    def __init__(self, tmp: Path, *, raised: bool = True, extra: tuple[str, ...] = ()) -> None:
        self.tmp = tmp
        certs = tmp / "certs"
        pki.init_dir(certs)
        self.certs = Certs(str(certs / "ca.crt"), str(certs / "cli.crt"), str(certs / "cli.key"))
        self.state = tmp / "state"
        self.target = f"127.0.0.1:{_free_port()}"
        self._tail: deque[str] = deque(maxlen=40)
        self._listening = threading.Event()
        argv = [
            str(BIN / "tjobs"),
            *("--host", self.target, "--state-dir", str(self.state)),
            *("--ca", str(certs / "ca.crt")),
            *("--cert", str(certs / "svc.crt"), "--key", str(certs / "svc.key")),
            *("--cpu", str(CAPS.cpu_percent), "--mem", str(CAPS.memory_mb)),
            *("--pids", str(CAPS.pids), "--rbps", str(CAPS.rbps), "--wbps", str(CAPS.wbps)),
            "--job-user",
            JOB_USER,
            *("--max-jobs", "1000", "--output-cap", str(OUTPUT_CAP), "--stop-on-exit"),
            *(RAISED_LIMITS if raised else ()),
            *extra,
        ]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._listening.wait(LISTEN_TIMEOUT) or self.proc.poll() is not None:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("tjobs did not start:\n" + "\n".join(self._tail))
        self.pid = self.proc.pid

    def _read_stderr(self) -> None:
        """Wait for "listen on", then keep draining (the server logs every Run and Stop)."""
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self._tail.append(line)
            if "listen on" in line:
                self._listening.set()
        self._listening.set()  # EOF: the server exited; the waiter checks poll()

    def launcher_pid(self) -> int:
        for pid in _children(self.pid):
            if int(_stat_fields(pid)[1]) == self.pid and b"tjob.launcher" in _cmdline(pid):
                return pid
        raise RuntimeError("the launcher of tjobs was not found")

    def close(self) -> list[str]:
        """SIGTERM, then stop whatever is left through an engine; returns problems found."""
        problems = []
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            problems.append("tjobs did not exit within 30 s of SIGTERM: killed")
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        if self.proc.returncode != 0:
            problems.append(f"tjobs exited {self.proc.returncode}: " + " | ".join(self._tail))
        eng = tjob.Engine(self.state)
        try:
            jobs = eng.jobs()
            left = [j for j in jobs if not j.status().state.finished]
            if left:
                problems.append(
                    f"jobs still running after tjobs exited: {[j.short_id for j in left]}"
                )
            for job in left:
                job.stop(grace=0)
            leaked = {j.id for j in jobs} & eng.diagnostics().cgroups
            if leaked:
                problems.append(f"cgroups left behind: {sorted(c[:8] for c in leaked)}")
        finally:
            eng.close(stop_jobs=True, grace=0)
        return problems


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- a warm grpcio client -----------------------------------------------------------------------


class Client:
    """One grpcio channel over mutual TLS, as the CLI makes it."""

    def __init__(self, target: str, certs: Certs) -> None:
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
        import grpc

        from tjob.api.tjob.v1 import tjob_pb2
        from tjob.api.tls import client_credentials

        self.pb = tjob_pb2
        creds = client_credentials(*certs.files)
        self.channel = grpc.secure_channel(target, creds, options=[("grpc.enable_retries", 0)])
        self.run = self._unary("Run", tjob_pb2.JobStatus)
        self.stop = self._unary("Stop", tjob_pb2.JobStatus)
        self.status = self._unary("Status", tjob_pb2.JobStatus)
        self.list = self._unary("List", tjob_pb2.ListResponse)
        self.wait = self._unary("Wait", tjob_pb2.JobStatus)
        self.remove = self._unary("Remove", tjob_pb2.JobStatus)
        self.logs = self.channel.unary_stream(
            SERVICE + "Logs",
            request_serializer=_serialize,
            response_deserializer=tjob_pb2.LogChunk.FromString,
        )

    def _unary(self, method: str, response: Any) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        return self.channel.unary_unary(
            SERVICE + method,
            request_serializer=_serialize,
            response_deserializer=response.FromString,
        )

    def start(self, argv: list[str]) -> pb.JobStatus:
        st: pb.JobStatus = self.run(self.pb.RunRequest(argv=argv), timeout=60)
        if st.state == self.pb.JOB_STATE_FAILED:
            raise RuntimeError(f"job {argv} failed to start: {st.error}")
        return st

    def clear(self) -> None:
        """Stop (grace 0) and remove every job of ours, so the next benchmark starts empty."""
        jobs = self.list(self.pb.ListRequest(), timeout=60).jobs
        stops = [self.stop.future(self.pb.StopRequest(id=j.id, grace_seconds=0)) for j in jobs]
        for f in stops:
            f.result(timeout=120)
        removes = [self.remove.future(self.pb.JobRef(id=j.id)) for j in jobs]
        for f in removes:
            f.result(timeout=120)

    def close(self) -> None:
        self.channel.close()


def _serialize(msg: Any) -> bytes:
    data: bytes = msg.SerializeToString()
    return data


# --- /proc --------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [0] is field 3 (state)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _children(root: int) -> list[int]:
    """Every descendant of ``root``."""
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                kids.setdefault(int(_stat_fields(int(name))[1]), []).append(int(name))
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [root]
    while todo:
        for kid in kids.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid)
    return out


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _kib(pid: int, file: str, key: str) -> int:
    with open(f"/proc/{pid}/{file}") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/{file}")


def _cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (all threads)
    return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def library(tmp: Path) -> Iterator[tjob.Engine]:
    """An engine in this process with the server's caps: the floor of B1' and B2'."""
    try:
        with tjob.Engine(
            tmp / "lib", cgroup_parent=LIB_CGROUP, defaults=CAPS, output_cap=OUTPUT_CAP
        ) as eng:
            try:
                yield eng
            finally:
                for job in eng.jobs():
                    job.stop(grace=0)
                    eng.remove(job.id)
    finally:
        for d in [
            Path("/sys/fs/cgroup", LIB_CGROUP),
            *Path("/sys/fs/cgroup").glob("*/" + LIB_CGROUP),
        ]:
            with contextlib.suppress(OSError):
                d.rmdir()  # the engine's parent cgroup, empty now


# --- B1' ----------------------------------------------------------------------------------------


def b1p(c: Client, tmp: Path, n: int) -> Result:
    """Run RPC -> job running, interleaved with its parts: the library's start() of the same
    job (same caps, same user) and a Status round trip (the RPC's own cost)."""
    true = ["true"]
    spec = tjob.JobSpec(true, user=JOB_USER)
    with library(tmp) as eng:
        for _ in range(10):  # warm-up: connection, TLS session, code paths, spares
            c.start(true)
            eng.start(spec)
        ref = c.pb.JobRef(id=c.start(true).id)
        run_ms, lib_ms, status_ms = [], [], []
        for _ in range(n):
            run_ms.append(timed(partial(c.start, true)))
            lib_ms.append(timed(partial(eng.start, spec)))
            status_ms.append(timed(partial(c.status, ref, timeout=60)))
    c.clear()
    run = Figure("Run", run_ms, "ms")
    lib = Figure("library start()", lib_ms, "ms")
    rtt = Figure("Status RPC", status_ms, "ms")
    return Result(
        "B1'",
        "`Run` RPC over mTLS → job running (`true`), warm grpcio client",
        [run, lib, rtt],
        f"p50 {run.p50:.1f} ms, p99 {run.p99:.1f} ms ({run.p50 / lib.p50:.2f}x library start)",
        "p50 <= 10 ms, p99 <= 30 ms",
        run.p50 <= 10 and run.p99 <= 30,
        "make bench BENCH=B1p",
        [
            f"p50: Run {run.p50:.1f} ms = library start() {lib.p50:.1f} ms + "
            f"{run.p50 - lib.p50:.1f} ms of RPC and server (a Status round trip: {rtt.p50:.1f} ms)"
        ],
    )


# --- B2' ----------------------------------------------------------------------------------------


def b2p(c: Client, server: Server, tmp: Path, runs: int) -> Result:
    """1 GiB of job stdout to one grpcio follower, interleaved with its floors: a pipe, and a
    library follower of the same job in this process (the output path without gRPC)."""
    head = ["head", "-c", str(GIB), "/dev/zero"]
    mbps: dict[str, list[float]] = {"gRPC follower": [], "library follower": [], "pipe": []}
    server_cpu, client_cpu = [], []
    with library(tmp) as eng:
        for _ in range(runs):
            t = time.perf_counter()
            run_quiet(["sh", "-c", "head -c 1G /dev/zero | cat > /dev/null"])
            mbps["pipe"].append(GIB / (time.perf_counter() - t) / 1e6)

            t = time.perf_counter()
            job = eng.start(tjob.JobSpec(head, user=JOB_USER))
            got = sum(len(chunk.data) for chunk in job.output(streams=tjob.Stream.STDOUT))
            mbps["library follower"].append(GIB / (time.perf_counter() - t) / 1e6)
            if got != GIB or job.wait(60).exit_code != 0:
                raise RuntimeError(f"B2': the library follower got {got} bytes of {GIB}")
            eng.remove(job.id)

            cpu = _cpu_seconds([server.pid]), _own_cpu()
            t = time.perf_counter()
            st = c.start(head)
            req = c.pb.LogsRequest(id=st.id, follow=True, streams=c.pb.STREAM_SELECT_STDOUT)
            got = sum(len(chunk.data) for chunk in c.logs(req, timeout=600))
            wall = time.perf_counter() - t
            mbps["gRPC follower"].append(GIB / wall / 1e6)
            server_cpu.append((_cpu_seconds([server.pid]) - cpu[0]) / wall * 100)
            client_cpu.append((_own_cpu() - cpu[1]) / wall * 100)
            end = c.wait(c.pb.JobRef(id=st.id), timeout=60)
            if got != GIB or end.exit_code != 0:
                raise RuntimeError(f"B2': the gRPC follower got {got} bytes of {GIB}, job {end}")
            c.clear()
    tj, lib, pf = (Figure(k, v, "MB/s") for k, v in mbps.items())
    ratio = tj.p50 / pf.p50
    return Result(
        "B2'",
        "1 GiB job stdout → one grpcio `Logs` follower over mTLS (byte count checked)",
        [tj, lib, pf],
        f"{ratio:.2f}x pipe ({tj.p50 / lib.p50:.2f}x the library follower)",
        ">= 0.25x pipe",
        ratio >= 0.25,
        "make bench BENCH=B2p",
        [
            f"library follower: {lib.p50 / pf.p50:.2f}x pipe (B2's path, same run)",
            "CPU during the gRPC transfer (p50, % of one CPU): "
            f"tjobs {statistics.median(server_cpu):.0f}%, "
            f"the grpcio client {statistics.median(client_cpu):.0f}%",
        ],
    )


def _own_cpu() -> float:
    """CPU seconds of this process, every thread (grpcio's included)."""
    t = os.times()
    return t.user + t.system


# --- followers in client processes (B3, B5) -----------------------------------------------------


@dataclass(frozen=True)
class Followed:
    got: int
    sha1: str
    ended: float  # time.monotonic(), comparable across processes


def _follower_process(conn: Connection, target: str, certs: Certs, job_id: str, n: int) -> None:
    """A client process: ``n`` Logs followers of one job over grpc.aio.

    Sends ("ready", None) once every follower has its first chunk, then ("done", [Followed])
    or ("error", text).
    """
    try:
        conn.send(("done", asyncio.run(_follow(conn, target, certs, job_id, n))))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


async def _follow(
    conn: Connection, target: str, certs: Certs, job_id: str, n: int
) -> list[Followed | str]:
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    import grpc

    from tjob.api.tjob.v1 import tjob_pb2
    from tjob.api.tls import client_credentials

    creds = client_credentials(*certs.files)
    # A channel per STREAMS_PER_CHANNEL followers, each its own connection (no shared pool).
    channels = [
        grpc.aio.secure_channel(target, creds, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(-(-n // STREAMS_PER_CHANNEL))
    ]
    req = tjob_pb2.LogsRequest(id=job_id, follow=True, streams=tjob_pb2.STREAM_SELECT_STDOUT)
    waiting = n

    async def one(channel: grpc.aio.Channel) -> Followed:
        nonlocal waiting
        logs = channel.unary_stream(
            SERVICE + "Logs",
            request_serializer=_serialize,
            response_deserializer=tjob_pb2.LogChunk.FromString,
        )
        h, got, first = hashlib.sha1(), 0, True
        async for chunk in logs(req):
            if first:
                first = False
                waiting -= 1
                if not waiting:
                    conn.send(("ready", None))
            h.update(chunk.data)  # releases the GIL for the grpc core's threads
            got += len(chunk.data)
        return Followed(got, h.hexdigest(), time.monotonic())

    try:
        done = await asyncio.gather(
            *(one(channels[i // STREAMS_PER_CHANNEL]) for i in range(n)), return_exceptions=True
        )
    finally:
        for ch in channels:
            await ch.close(None)
    return [d if isinstance(d, Followed) else f"{type(d).__name__}: {d}" for d in done]


class Followers:
    """``n`` followers of one job spread over client processes (one per core)."""

    def __init__(self, server: Server, job_id: str, n: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that loaded grpc
        procs = min(n, os.cpu_count() or 1)
        self.processes, self.connections = procs, 0
        self._kids: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        for i in range(procs):
            share = n // procs + (i < n % procs)
            self.connections += -(-share // STREAMS_PER_CHANNEL)
            ours, theirs = ctx.Pipe(duplex=False)
            p = ctx.Process(
                target=_follower_process,
                args=(theirs, server.target, server.certs, job_id, share),
                daemon=True,
            )
            p.start()
            theirs.close()
            self._kids.append((p, ours))

    def ready(self, timeout: float) -> None:
        """Every follower has received its first chunk."""
        for _, conn in self._kids:
            self._expect(conn, "ready", timeout)

    def results(self, timeout: float) -> list[Followed | str]:
        out: list[Followed | str] = []
        for p, conn in self._kids:
            out += self._expect(conn, "done", timeout)
            p.join(10)
        return out

    def _expect(self, conn: Connection, what: str, timeout: float) -> Any:
        if not conn.poll(timeout):
            raise TimeoutError(f"followers: no {what!r} within {timeout:.0f} s")
        try:
            kind, payload = conn.recv()
        except EOFError:
            codes = [p.exitcode for p, _ in self._kids]
            raise RuntimeError(f"a follower process died (exit codes {codes})") from None
        if kind != what:
            raise RuntimeError(f"followers: {kind}: {payload}")
        return payload

    def close(self) -> None:
        for p, conn in self._kids:
            if p.is_alive():
                p.kill()
            p.join(10)
            conn.close()


@contextlib.contextmanager
def followers(server: Server, job_id: str, n: int) -> Iterator[Followers]:
    f = Followers(server, job_id, n)
    try:
        yield f
    finally:
        f.close()


def _release(fifo: Path, timeout: float = 60) -> None:
    """Let a job blocked in ``read x < FIFO`` go on (the open blocks until its reader opens)."""

    def go() -> None:
        with open(fifo, "w") as f:
            f.write("go\n")

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"the job never opened {fifo}")


# --- B3 -----------------------------------------------------------------------------------------


def b3(c: Client, server: Server, n: int, size: int) -> Result:
    """n followers of one job writing ``size`` random bytes; each must get them exactly."""
    wall = time.perf_counter()
    pub = server.tmp / "pub"  # readable by the job's user (nobody)
    pub.mkdir(mode=0o755, exist_ok=True)
    data_file, fifo = pub / "data", pub / "go"
    data = os.urandom(size)
    data_file.write_bytes(data)
    data_file.chmod(0o644)
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo, 0o666)
    fifo.chmod(0o666)
    # "ready" first so every follower can show it is attached; the 100 MiB only once all are.
    expect_sha1 = hashlib.sha1(b"ready\n" + data).hexdigest()
    expect_len = len(data) + len(b"ready\n")
    del data

    rss_before = _kib(server.pid, "status", "VmRSS")
    with open(f"/proc/{server.pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM: the peak of this benchmark, not of the earlier ones
    st = c.start(["sh", "-c", f"echo ready; read x < {fifo}; exec cat {data_file}"])
    with followers(server, st.id, n) as fol:
        fol.ready(timeout=300)
        attached = time.perf_counter() - wall
        start = time.monotonic()
        cpu = _cpu_seconds([server.pid])
        _release(fifo)
        results = fol.results(timeout=900)
        cpu = _cpu_seconds([server.pid]) - cpu
        conns, procs = fol.connections, fol.processes
    peak = _kib(server.pid, "status", "VmHWM") / 1024
    end = c.wait(c.pb.JobRef(id=st.id), timeout=60)
    c.clear()
    data_file.unlink()
    fifo.unlink()
    wall = time.perf_counter() - wall

    ok = [r for r in results if isinstance(r, Followed)]
    exact = sum(1 for r in ok if r.got == expect_len and r.sha1 == expect_sha1)
    errors = [r for r in results if isinstance(r, str)]
    done_s = [r.ended - start for r in ok] or [float("nan")]
    agg = n * size / max(done_s) / 1e6
    figs = [
        Figure("follower done after release", done_s, "s"),
        Figure("aggregate", [agg], "MB/s"),
        Figure("server peak RSS", [peak], "MiB"),
    ]
    notes = [
        f"{n} followers x {size // MIB} MiB over {conns} connections from {procs} grpc.aio "
        f"client processes; all attached "
        f"{attached:.1f} s after the start, total wall time {wall:.0f} s",
        f"server RSS before {rss_before / 1024:.0f} MiB, peak during {peak:.0f} MiB (VmHWM), "
        f"{(peak - rss_before / 1024) / n * 1024:.0f} KiB more per follower",
        f"tjobs CPU during the transfer: {cpu / max(done_s) * 100:.0f}% of one CPU",
        f"job ended: exit {end.exit_code}",
    ]
    if errors:
        notes.append(f"{len(errors)} followers failed, e.g. {errors[0]}")
    return Result(
        "B3",
        f"{n} concurrent gRPC followers of one job writing {size // MIB} MiB",
        figs,
        f"{exact}/{n} byte-exact, peak RSS {peak:.0f} MiB",
        "all byte-exact; peak RSS <= 200 MiB",
        exact == n and peak <= 200,
        "make bench BENCH=B3",
        notes,
    )


# --- B4 -----------------------------------------------------------------------------------------


def b4(c: Client, server: Server, jobs: int, n: int) -> Result:
    """List and Status latency with ``jobs`` sleeping jobs, and PSS of all tjob processes.

    Interleaved, for the breakdown: reading every job's cgroup usage from this process (what
    a running job's status costs), and Run latency as the jobs fill up.
    """
    ids, run_ms = [], []
    for _ in range(jobs):
        t = time.perf_counter()
        ids.append(c.start(["sleep", "100000"]).id)
        run_ms.append((time.perf_counter() - t) * 1000)
    listed = len(c.list(c.pb.ListRequest(), timeout=60).jobs)
    fs = server.launcher_pid()
    roles: dict[str, list[tuple[int, int]]] = {}  # role -> [(Pss, Private_Dirty) in KiB]
    parents = {pid: int(_stat_fields(pid)[1]) for pid in _tjob_processes(server.pid)}
    for pid, ppid in parents.items():
        role = {server.pid: "tjobs", fs: "launcher"}.get(pid)
        if role is None:  # tjob-shim: the zygote forks supervisors, which fork inits
            role = {fs: "zygote"}.get(ppid) or ("supervisor" if parents.get(ppid) == fs else "init")
        rollup = (_kib(pid, "smaps_rollup", "Pss"), _kib(pid, "smaps_rollup", "Private_Dirty"))
        roles.setdefault(role, []).append(rollup)
    cg = cgroups.detect(parent=SERVER_CGROUP)
    cg.setup()  # finds the hierarchies; the parent exists already (the server's)
    req = c.pb.ListRequest()
    list_ms, status_ms, usage_ms = [], [], []
    for _ in range(n):
        list_ms.append(timed(partial(c.list, req, timeout=60)))
        usage_ms.append(timed(lambda: [cg.usage(i) for i in ids]))
        for _ in range(2):  # Status is the cheaper call: twice the samples for its p99
            ref = c.pb.JobRef(id=random.choice(ids))
            status_ms.append(timed(partial(c.status, ref, timeout=60)))
    c.clear()
    total = sum(pss for pairs in roles.values() for pss, _ in pairs) / 1024
    per_job = total / jobs
    lf, sf = Figure("List", list_ms, "ms"), Figure("Status", status_ms, "ms")
    uf = Figure(f"cgroup usage of {jobs} jobs, read here", usage_ms, "ms")
    rf = Figure(f"Run with {jobs * 9 // 10}..{jobs} running", run_ms[jobs * 9 // 10 :], "ms")
    r0 = Figure("Run", run_ms[: max(1, jobs // 10)], "ms")
    met = lf.p99 <= 50 and sf.p99 <= 50 and per_job <= 2
    breakdown = ", ".join(
        f"{len(v)} {k} {sum(p for p, _ in v) / 1024:.0f} MiB"
        + (
            f" ({sum(p for p, _ in v) / len(v):.0f} KiB each, of it private dirty "
            f"{sum(d for _, d in v) / len(v):.0f})"
            if len(v) > 1
            else ""
        )
        for k, v in roles.items()
    )
    return Result(
        "B4",
        f"{jobs} running jobs (`sleep`): `List`, `Status`; PSS of every tjob process / jobs",
        [lf, sf, Figure("PSS per job", [per_job], "MiB"), uf, rf],
        f"p99 List {lf.p99:.1f} / Status {sf.p99:.1f} ms; {per_job:.2f} MiB per job",
        "p99 <= 50 ms; <= 2 MiB per job",
        met,
        "make bench BENCH=B4",
        [
            f"List returns {listed} jobs; p50 {lf.p50:.0f} ms, of which reading their cgroup "
            f"usage takes {uf.p50:.0f} ms when done from this process",
            f"Run p50 {r0.p50:.1f} ms with under {jobs // 10} jobs running, {rf.p50:.1f} ms with "
            f"{jobs * 9 // 10} or more",
            f"PSS {total:.0f} MiB: {breakdown}",
        ],
    )


# --- B10 ----------------------------------------------------------------------------------------


def _ready_jobs(c: Client, argv: list[str], n: int) -> list[str]:
    """Start ``n`` jobs that print a line once set up; return once each has printed it."""
    ids = [c.start(argv).id for _ in range(n)]
    for job_id in ids:
        stream: Any = c.logs(c.pb.LogsRequest(id=job_id, follow=True), timeout=60)
        next(iter(stream))
        stream.cancel()  # grpc-stubs leave it untyped
    return ids


def _load(other: Client, victims: list[str], started: list[str]) -> None:
    """Stop ``victims`` (grace 0) and start 50 ``true`` jobs, all at once; wait for all."""
    stops = [other.stop.future(other.pb.StopRequest(id=i, grace_seconds=0)) for i in victims]
    runs = [other.run.future(other.pb.RunRequest(argv=["true"]), timeout=60) for _ in range(50)]
    for f in stops:
        f.result(timeout=120)
    started += [f.result(timeout=120).id for f in runs]


@dataclass
class _Sched:
    """A thread's CPU time and its time runnable but waiting for a CPU, so far, in ms
    (``/proc/.../schedstat``: the kernel's own accounting of one thread)."""

    ran: float
    waited: float

    @classmethod
    def of(cls, path: str) -> _Sched:
        with open(path) as f:
            ran, waited, _ = f.read().split()
        return cls(int(ran) / 1e6, int(waited) / 1e6)


@dataclass
class _Call:
    """One Status call under load, with what its two ends' threads did meanwhile (ms)."""

    ms: float
    loop_ran: float  # tjobs's event-loop thread on a CPU
    loop_waited: float  # ... runnable, waiting for a CPU
    client_waited: float  # the calling client thread, runnable, waiting for a CPU


def _timed_call(c: Client, ref: pb.JobRef, loop: str) -> _Call:
    """Status, timed exactly as idle; the schedstat reads sit outside the timed span."""
    me = "/proc/thread-self/schedstat"
    l0, c0 = _Sched.of(loop), _Sched.of(me)
    ms = timed(partial(c.status, ref, timeout=60))
    l1, c1 = _Sched.of(loop), _Sched.of(me)
    return _Call(ms, l1.ran - l0.ran, l1.waited - l0.waited, c1.waited - c0.waited)


def _cpu_ticks() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of every CPU so far, from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return sum(ticks), ticks[3] + ticks[4]


def _where(busy: list[_Call], slow_ms: float, idle_share: float) -> str:
    """Where the time of the calls slower than ``slow_ms`` went: the kernel's scheduler
    accounting of tjobs's event-loop thread and of the calling thread during those calls."""
    slow = [b for b in busy if b.ms > slow_ms]
    if not slow:
        return f"no call above {slow_ms:.1f} ms; CPUs idle {idle_share:.0%} during the load"
    total = sum(b.ms for b in slow)
    waited = sum(b.loop_waited for b in slow) / total
    ran = sum(b.loop_ran for b in slow) / total
    client = sum(b.client_waited for b in slow) / total
    return (
        f"{len(slow)} calls above {slow_ms:.1f} ms (2x the idle p99), {total:.0f} ms in all: "
        f"tjobs's event-loop thread was runnable but waiting for a CPU {waited:.0%} of that "
        f"time and running {ran:.0%} (the rest: asleep, waiting for input or the GIL); "
        f"the calling client thread waited for a CPU {client:.0%}; CPUs idle "
        f"{idle_share:.0%} during the load (/proc/*/schedstat, /proc/stat)"
    )


def b10(c: Client, server: Server, rounds: int, idle_n: int) -> Result:
    """Status RPC latency while another client stops ten 100-process jobs at once and starts
    50 jobs, against the idle Status latency of the same run: the server's event loop must
    not wait on any of that work. The notes say where the slow calls' time went."""
    other = Client(server.target, server.certs)
    many = ["sh", "-c", "for i in $(seq 100); do sleep 1000 & done; echo ready; wait"]
    loop = f"/proc/{server.pid}/task/{server.pid}/schedstat"  # tjobs runs asyncio in main
    try:
        ref = c.pb.JobRef(id=c.start(["sleep", "100000"]).id)
        for _ in range(20):  # warm-up
            c.status(ref, timeout=60)
        idle_ms = [timed(partial(c.status, ref, timeout=60)) for _ in range(idle_n)]
        busy: list[_Call] = []
        ticks = idle_ticks = 0
        for _ in range(rounds):
            victims = _ready_jobs(other, many, 10)
            started: list[str] = []
            loader = threading.Thread(target=_load, args=(other, victims, started))
            all0, idle0 = _cpu_ticks()
            loader.start()
            while loader.is_alive():
                busy.append(_timed_call(c, ref, loop))
            loader.join()
            all1, idle1 = _cpu_ticks()
            ticks, idle_ticks = ticks + all1 - all0, idle_ticks + idle1 - idle0
            # Only what this round made: both clients are the same user, and ``ref`` stays.
            for job_id in victims + started:
                other.wait(other.pb.JobRef(id=job_id), timeout=60)
                other.remove(other.pb.JobRef(id=job_id), timeout=60)
    finally:
        other.close()
    c.clear()
    idle = Figure("Status, idle", idle_ms, "ms")
    loaded = Figure("Status, under load", [b.ms for b in busy], "ms")
    ratio = loaded.p99 / idle.p99
    return Result(
        "B10",
        "`Status` p99 while another client stops ten 100-process jobs at once and starts 50",
        [idle, loaded],
        f"p99 {loaded.p99:.1f} ms under load vs {idle.p99:.1f} ms idle ({ratio:.2f}x)",
        "<= 2x the idle p99",
        ratio <= 2,
        "make bench BENCH=B10",
        [
            f"{len(busy)} Status calls during {rounds} rounds of load",
            _where(busy, 2 * idle.p99, idle_ticks / max(1, ticks)),
        ],
    )


def _tjob_processes(root: int) -> list[int]:
    """tjobs and its descendants that are tjob's own: the launcher, and tjob-shim's zygote,
    supervisors and inits."""
    return [root] + [p for p in _children(root) if b"tjob" in _cmdline(p)]


# --- B5 -----------------------------------------------------------------------------------------


def b5(c: Client, server: Server, n: int, window: float) -> Result:
    """Server CPU while ``n`` followers wait on a job that prints one line and then nothing."""
    st = c.start(["sh", "-c", "echo ready; exec sleep 100000"])
    pids = [server.pid, server.launcher_pid()]
    with followers(server, st.id, n) as fol:
        fol.ready(timeout=120)
        samples = []
        slices = max(1, round(window))
        before = _cpu_seconds(pids)
        first = before
        for _ in range(slices):
            time.sleep(window / slices)  # the measurement window itself
            now = _cpu_seconds(pids)
            samples.append((now - before) / (window / slices) * 100)
            before = now
        percent = (before - first) / window * 100
        c.stop(c.pb.StopRequest(id=st.id, grace_seconds=0), timeout=60)
        results = fol.results(timeout=120)
    c.clear()
    ended = sum(1 for r in results if isinstance(r, Followed) and r.got == len(b"ready\n"))
    tick = os.sysconf("SC_CLK_TCK")
    return Result(
        "B5",
        f"{n} followers of a silent job for {window:.0f} s: CPU of tjobs + its launcher",
        [Figure("server CPU per second", samples, "%")],
        f"{percent:.2f}% of one CPU",
        "< 1% of one CPU",
        percent < 1,
        "make bench BENCH=B5",
        [
            f"utime+stime from /proc/PID/stat, in ticks of {1000 / tick:.0f} ms "
            f"({100 / tick / window:.2f}% over the window); "
            f"{ended}/{n} followers ended cleanly when the job was stopped",
        ],
    )


# --- B8 -----------------------------------------------------------------------------------------


def b8(server: Server, tmp: Path, n: int) -> Result:
    """Whole-process `tjob ps` and `tjob run true`, against a bare interpreter and runc."""
    certs = server.certs
    cli = [str(BIN / "tjob"), "--host", server.target, "--ca", certs.ca]
    cli += ["--cert", certs.cert, "--key", certs.key]
    commands: dict[str, list[str]] = {
        "tjob ps": [*cli, "ps"],
        "tjob run true": [*cli, "run", "true"],
        "python -I -S -c pass": [os.path.realpath(sys.executable), "-I", "-S", "-c", "pass"],
    }
    bundle = _runc_bundle(tmp / "runc") if shutil.which("runc") else None
    if bundle is not None:
        # runc makes (and on exit removes) the cgroup /<container id>: never a tjob parent's name.
        commands["runc run true"] = ["runc", "run", "--bundle", str(bundle), "tjob-bench-cli"]
    try:
        samples: dict[str, list[float]] = {k: [] for k in commands}
        for argv in commands.values():
            run_quiet(argv)  # warm the page cache
        for _ in range(n):
            for name, argv in commands.items():
                samples[name].append(timed(partial(run_quiet, argv)))
    finally:
        _unmount_runc(tmp)
    figs = [Figure(k, v, "ms") for k, v in samples.items()]
    bare = figs[2].p50
    worst = max(figs[0].p50, figs[1].p50)
    notes = [f"{f.name}: {f.p50 / bare:.1f}x the bare interpreter" for f in figs[:2]]
    if bundle is None:
        notes.append("runc is not installed: no runc figure")
    return Result(
        "B8",
        "whole-process CLI: `tjob ps`, `tjob run true` against a warm server",
        figs,
        f"p50 ps {figs[0].p50:.0f} / run {figs[1].p50:.0f} ms ({worst / bare:.1f}x bare python)",
        "p50 <= 150 ms",
        worst <= 150,
        "make bench BENCH=B8",
        notes,
    )


# --- all ----------------------------------------------------------------------------------------


def _b9(tmp: Path, quick: bool) -> Result:
    tmp.mkdir(mode=0o711)
    server = Server(tmp, raised=False)
    try:
        client = Client(server.target, server.certs)
        try:
            result = hostile.b9(client, server, 3.0 if quick else 10.0, 1.0 if quick else 3.0)
        finally:
            client.close()
    finally:
        problems = server.close()
    if problems:
        result.notes.append("cleanup after tjobs: " + "; ".join(problems))
    return result


def run(selected: set[str], quick: bool) -> list[Result]:
    """The selected API benchmarks, in order, against one server; --quick scales them down."""
    wanted = selected & IDS
    if not wanted:
        return []
    steps: list[tuple[str, Callable[[Client, Server, Path], Result]]] = [
        ("B1p", lambda c, s, t: b1p(c, t, 50 if quick else 200)),
        ("B2p", lambda c, s, t: b2p(c, s, t, 1 if quick else 3)),
        ("B3", lambda c, s, t: b3(c, s, 100, 10 * MIB) if quick else b3(c, s, 1000, 100 * MIB)),
        ("B4", lambda c, s, t: b4(c, s, 100 if quick else 500, 30 if quick else 100)),
        ("B5", lambda c, s, t: b5(c, s, 100, 3.0 if quick else 10.0)),
        ("B8", lambda c, s, t: b8(s, t, 10 if quick else 30)),
        ("B10", lambda c, s, t: b10(c, s, 1 if quick else 5, 200 if quick else 1000)),
    ]
    out: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="tjob-bench-api-", dir=BENCH_DIR) as d:
        tmp = Path(d)
        tmp.chmod(0o711)  # jobs run as nobody and read B3's file under it
        problems: list[str] = []
        if wanted - {"B9"}:
            server = Server(tmp)
            try:
                client = Client(server.target, server.certs)
                try:
                    for bid, step in steps:
                        if bid in wanted:
                            out.append(step(client, server, tmp))
                            client.clear()  # each benchmark starts with no jobs
                finally:
                    client.close()
            finally:
                problems = server.close()
        if "B9" in wanted:  # a server of its own, with the product's limits
            out.append(_b9(tmp / "b9", quick))
    if problems:  # a leak is a finding: reported with the figures, not instead of them
        print("bench: cleanup after tjobs: " + "; ".join(problems), file=sys.stderr)
        for r in out:
            r.notes.append("cleanup after tjobs: " + "; ".join(problems))
    return out
