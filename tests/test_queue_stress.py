"""The queue through tjobs under load (issue 15): 200 jobs queued by 3 clients on a server that
runs 4 at a time; tjobs is killed with SIGKILL midway and restarted on the same state. Every
job runs exactly once, never more than 4 at once, and none is lost."""

from __future__ import annotations

import itertools
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from test_api_tjobs import HANG, Running

from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.engine import Engine

pytestmark = pytest.mark.root

JOBS = 200
CLIENTS = ("cli", "other", "admin")
MAX_RUNNING = 4
FLAGS = ("--max-running", str(MAX_RUNNING), "--queue")


def submit(server: Running, stem: str, marks: list[str]) -> list[str]:
    stub = server.stub(stem)
    ids = []
    for mark in marks:
        st = stub.Run(pb.RunRequest(argv=["echo", mark]), timeout=HANG)
        assert st.state != pb.JOB_STATE_FAILED, st  # queued, running, or already done
        ids.append(st.id)
    return ids


def test_200_queued_jobs_3_clients_kill_9_midway(certs: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = Running(certs, state, *FLAGS)
    server.expect("listen on")
    marks = {
        stem: [f"{stem}-{i}" for i in range(i0, JOBS, len(CLIENTS))]
        for i0, stem in enumerate(CLIENTS)
    }
    try:
        with ThreadPoolExecutor(len(CLIENTS)) as pool:
            ids = dict(
                zip(CLIENTS, pool.map(lambda s: submit(server, s, marks[s]), CLIENTS), strict=True)
            )
        # Midway: once a quarter of alice's jobs have ended, kill tjobs outright.
        server.stub("cli").Wait(pb.JobRef(id=ids["cli"][len(ids["cli"]) // 4]), timeout=HANG)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(HANG)
        server = Running(certs, state, *FLAGS)
        server.expect("listen on")
        ends: list[pb.JobStatus] = []
        for stem in CLIENTS:
            stub = server.stub(stem)
            for job_id, mark in zip(ids[stem], marks[stem], strict=True):
                st = stub.Wait(pb.JobRef(id=job_id), timeout=HANG)
                assert (st.state, st.exit_code) == (pb.JOB_STATE_EXITED, 0), st
                out = b"".join(c.data for c in stub.Logs(pb.LogsRequest(id=job_id), timeout=HANG))
                assert out == f"{mark}\n".encode()  # ran once: one line
                ends.append(st)
        assert len(ends) == JOBS
        assert max_overlap(ends) <= MAX_RUNNING
        # Each client's jobs started in the order they were queued.
        for stem in CLIENTS:
            by_id = {st.id: st.started_at for st in ends}
            starts = [by_id[i] for i in ids[stem]]
            assert starts == sorted(starts), stem
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait(HANG)
        Engine(state).close(stop_jobs=True, grace=0)


def max_overlap(ends: list[pb.JobStatus]) -> int:
    """Most jobs whose [started_at, ended_at] overlap at one time."""
    edges = sorted(
        itertools.chain.from_iterable(((st.started_at, 1), (st.ended_at, -1)) for st in ends),
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    now = most = 0
    for _when, step in edges:
        now += step
        most = max(most, now)
    return most


def test_without_queue_the_refusal_says_how_many_and_the_limit(certs: Path, tmp_path: Path) -> None:
    server = Running(certs, tmp_path / "state", "--max-running", "1")
    server.expect("listen on")
    try:
        stub = server.stub("cli")
        first = stub.Run(pb.RunRequest(argv=["sleep", "600"]), timeout=HANG)
        with pytest.raises(grpc.RpcError) as err:
            stub.Run(pb.RunRequest(argv=["true"]), timeout=HANG)
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.value.details() == (
            "1 jobs are running on this server, the most it allows (tjobs --max-running 1); "
            "run with --queue to wait for a slot"
        )
        queued = stub.Run(pb.RunRequest(argv=["echo", "hi"], queue=True), timeout=HANG)
        assert queued.state == pb.JOB_STATE_QUEUED
        # Logs -f of a queued job waits for its start, then streams.
        logs = stub.Logs(pb.LogsRequest(id=queued.id, follow=True), timeout=HANG)
        stub.Stop(pb.StopRequest(id=first.id, grace_seconds=0), timeout=HANG)
        assert b"".join(c.data for c in logs) == b"hi\n"
        # A queued job stopped is cancelled: it never ran.
        blocker = stub.Run(pb.RunRequest(argv=["sleep", "600"], queue=True), timeout=HANG)
        # Running, or queued while the echo job's end is being recorded.
        assert blocker.state in (pb.JOB_STATE_RUNNING, pb.JOB_STATE_QUEUED)
        never = stub.Run(pb.RunRequest(argv=["true"], queue=True), timeout=HANG)
        st = stub.Stop(pb.StopRequest(id=never.id), timeout=HANG)
        assert (st.state, st.HasField("started_at")) == (pb.JOB_STATE_CANCELLED, False)
        stub.Stop(pb.StopRequest(id=blocker.id, grace_seconds=0), timeout=HANG)
    finally:
        server.proc.terminate()
        server.proc.wait(HANG)
        Engine(server.state).close(stop_jobs=True, grace=0)
