"""B11: a queued job's start after a slot frees (issue 15).

A server that runs one job at a time holds a job blocked on a FIFO; a second job waits in its
queue. The bench opens the FIFO for writing and closes it (the first job's ``read`` returns and
it exits), and measures from just before that to the queued job's ``started_at`` (the wall-clock
time its supervisor saw the command exec'd): the end seen, recorded, the slot freed, the queued
job handed to the launcher and started. Measured through the API (both jobs queued with ``Run``
over mutual TLS to a real ``tjobs --max-running 1``; also when the client's ``Events`` stream
says it started), and on a library engine in this process, the floor, in the same run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import tjob

from .api import SERVICE, Client, Server
from .common import BENCH_DIR, Figure, Result

CGROUP = "tjob-bench-queue"
HANG = 30.0


def _one(eng: tjob.Engine, fifo: Path) -> float:
    holder = eng.enqueue(tjob.JobSpec(["sh", "-c", f"read x < {fifo}"]))
    queued = eng.enqueue(tjob.JobSpec(["true"]))
    assert queued.status().state is tjob.JobState.QUEUED
    fd = os.open(fifo, os.O_WRONLY)  # blocks until the holder's shell opens it to read
    t0 = time.time()
    os.close(fd)
    st = queued.wait(HANG)
    assert st.exit_code == 0 and st.started_at is not None, st
    holder.wait(HANG)
    eng.remove(holder.id)
    eng.remove(queued.id)
    return (st.started_at - t0) * 1000


def _library(tmp: Path, fifo: Path, n: int) -> list[float]:
    with tjob.Engine(tmp / "lib", cgroup_parent=CGROUP, max_running=1) as eng:
        for _ in range(5):
            _one(eng, fifo)  # warm-up
        return [_one(eng, fifo) for _ in range(n)]


class _Api:
    """One round over gRPC: the holder and the queued job both Run with ``queue``; the
    client's Events stream (opened once) tells when the queued job started."""

    def __init__(self, c: Client, fifo: Path) -> None:
        self.c, self.pb, self.fifo = c, c.pb, fifo
        events = c.channel.unary_stream(
            SERVICE + "Events",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=c.pb.Event.FromString,
        )
        self.stream: Any = events(c.pb.EventsRequest(filters=["kind=started"]))
        self.events: Any = iter(self.stream)

    def run(self, argv: list[str]) -> Any:
        return self.c.run(self.pb.RunRequest(argv=argv, queue=True), timeout=HANG)

    def started(self, job_id: str) -> float:
        """When the Events stream says ``job_id`` started."""
        for e in self.events:
            if e.id == job_id:
                return time.time()
        raise RuntimeError("the Events stream ended")

    def one(self) -> tuple[float, float]:
        holder = self.run(["sh", "-c", f"read x < {self.fifo}"])
        queued = self.run(["true"])
        assert queued.state == self.pb.JOB_STATE_QUEUED, queued
        fd = os.open(self.fifo, os.O_WRONLY)  # the holder runs: its shell opened the FIFO
        t0 = time.time()
        os.close(fd)
        seen = self.started(queued.id)
        st = self.c.wait(self.pb.JobRef(id=queued.id), timeout=HANG)
        assert st.exit_code == 0 and st.HasField("started_at"), st
        for job in (holder, queued):
            self.c.wait(self.pb.JobRef(id=job.id), timeout=HANG)
            self.c.remove(self.pb.JobRef(id=job.id), timeout=HANG)
        return (st.started_at - t0) * 1000, (seen - t0) * 1000


def _api(tmp: Path, fifo: Path, n: int) -> tuple[list[float], list[float]]:
    server = Server(tmp / "api", extra=("--max-running", "1"))
    try:
        c = Client(server.target, server.certs)
        rounds = _Api(c, fifo)
        try:
            for _ in range(5):
                rounds.one()  # warm-up
            pairs = [rounds.one() for _ in range(n)]
        finally:
            rounds.stream.cancel()
            c.channel.close()
    finally:
        problems = server.close()
    if problems:
        raise RuntimeError("; ".join(problems))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def b11(tmp: Path, n: int) -> Result:
    fifo = tmp / "fifo"
    os.mkfifo(fifo, 0o666)
    os.chmod(tmp, 0o755)  # the server's jobs run as nobody: they open the FIFO through it
    (tmp / "api").mkdir()
    started, seen = _api(tmp, fifo, n)
    lib = Figure("library engine (floor): end → started_at", _library(tmp, fifo, n), "ms")
    api = Figure("Run over gRPC (tjobs --max-running 1): end → started_at", started, "ms")
    event = Figure("Run over gRPC: end → the client's Events stream says started", seen, "ms")
    return Result(
        "B11",
        "queued job: the running job's end → the queued job running (max_running 1)",
        [api, event, lib],
        f"gRPC p50 {api.p50:.1f} ms, p99 {api.p99:.1f} ms ({api.p50 / lib.p50:.2f}x the "
        f"library's p50 {lib.p50:.1f} ms); seen by the client p50 {event.p50:.1f} ms",
        "p50 <= 20 ms (gRPC)",
        api.p50 <= 20,
        "make bench BENCH=B11",
    )


def run(selected: set[str], quick: bool) -> list[Result]:
    if "B11" not in selected:
        return []
    with tempfile.TemporaryDirectory(prefix="tjob-bench-q-", dir=BENCH_DIR) as d:
        out = [b11(Path(d), 30 if quick else 100)]
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            with contextlib.suppress(OSError):
                (hierarchy / CGROUP).rmdir()
    return out
