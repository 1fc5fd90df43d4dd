"""Durable state through the API: tjobs killed (-9) or stopped and started again on the same
state dir; running jobs re-adopted; Remove; the output cap's truncation mark on the wire."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import grpc
import pytest
from apiharness import HANG, ROOT
from support.tjobs import Tjobs

from tjob import Engine
from tjob.api.tjob.v1 import tjob_pb2 as pb

pytestmark = ROOT


def start(certs: Path, state: Path, *extra: str) -> Tjobs:
    server = Tjobs(certs, state, *extra)
    server.expect("listen on")
    return server


def kill(server: Tjobs, sig: int = signal.SIGKILL) -> None:
    server.channel.close()
    server.proc.send_signal(sig)
    server.proc.wait(HANG)


def test_kill_9_restart_resumes_followers_and_keeps_every_job(
    certs: Path, tmp_path: Path, gate: Path
) -> None:
    state = tmp_path / "state"
    first = start(certs, state)
    stub = first.stub()
    part = "seq 1 20000"
    writer = stub.Run(pb.RunRequest(argv=["sh", "-c", f"{part}; cat {gate}; {part}"]), timeout=HANG)
    ender = stub.Run(
        pb.RunRequest(argv=["sh", "-c", f"cat {gate} >/dev/null; exit 3"]), timeout=HANG
    )
    runner = stub.Run(pb.RunRequest(argv=["sh", "-c", "echo up; exec sleep 1000"]), timeout=HANG)
    want = ("".join(f"{i}\n" for i in range(1, 20001)) * 2).encode()
    got = b""
    for chunk in stub.Logs(pb.LogsRequest(id=writer.id, follow=True), timeout=HANG):
        got += chunk.data
        if len(got) >= len(want) // 2:
            break
    kill(first)  # kill -9 while the follower is mid-stream

    with open(gate, "w"):  # both gated jobs go on (and one ends) while no server runs
        pass
    second = start(certs, state)
    try:
        stub = second.stub()
        rest = stub.Logs(pb.LogsRequest(id=writer.id, follow=True, skip=len(got)), timeout=HANG)
        got += b"".join(c.data for c in rest)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(want).hexdigest()
        assert stub.Wait(pb.JobRef(id=writer.id), timeout=HANG).exit_code == 0
        ended = stub.Wait(pb.JobRef(id=ender.id[:8]), timeout=HANG)
        assert (ended.state, ended.exit_code) == (pb.JOB_STATE_EXITED, 3)
        assert stub.Status(pb.JobRef(id=runner.id), timeout=HANG).state == pb.JOB_STATE_RUNNING
        stopped = stub.Stop(pb.StopRequest(id=runner.id, grace_seconds=0), timeout=HANG)
        assert stopped.state == pb.JOB_STATE_STOPPED and stopped.signal == signal.SIGKILL
        listed = stub.List(pb.ListRequest(), timeout=HANG).jobs
        assert [j.id for j in listed] == [runner.id, ender.id, writer.id]
        assert all(j.owner == "alice" for j in listed)
        assert [list(j.argv) for j in listed][2] == list(writer.argv)
    finally:
        kill(second, signal.SIGTERM)


def test_sigterm_restart_readopts_running_jobs(certs: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = start(certs, state)
    job = first.stub().Run(
        pb.RunRequest(argv=["sh", "-c", "echo a; exec sleep 1000"]), timeout=HANG
    )
    kill(first, signal.SIGTERM)
    first.expect("1 running jobs keep running")
    second = start(certs, state)
    try:
        stub = second.stub()
        follower = stub.Logs(pb.LogsRequest(id=job.id, follow=True), timeout=HANG)
        assert next(follower).data == b"a\n"
        st = stub.Stop(pb.StopRequest(id=job.id, grace_seconds=5), timeout=HANG)
        assert st.state == pb.JOB_STATE_STOPPED and st.signal == signal.SIGTERM
        assert list(follower) == []  # the follower ends with the job
    finally:
        kill(second, signal.SIGTERM)


def test_stop_on_exit_stops_running_jobs(certs: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = start(certs, state, "--stop-on-exit")
    job = server.stub().Run(pb.RunRequest(argv=["sleep", "1000"]), timeout=HANG)
    kill(server, signal.SIGTERM)
    assert server.proc.returncode == 0
    with Engine(state) as eng:
        st = eng.get(job.id).status()
        assert st.state.value == "stopped" and st.signal == signal.SIGTERM


def test_remove_and_the_truncation_mark(certs: Path, tmp_path: Path) -> None:
    server = start(certs, tmp_path / "state", "--output-cap", "64K")
    try:
        stub = server.stub()
        big = stub.Run(pb.RunRequest(argv=["head", "-c", "1000000", "/dev/zero"]), timeout=HANG)
        chunks = list(stub.Logs(pb.LogsRequest(id=big.id, follow=True), timeout=HANG))
        assert chunks[-1].truncated and not chunks[-1].data
        assert 0 < sum(len(c.data) for c in chunks) <= 64 * 1024
        st = stub.Wait(pb.JobRef(id=big.id), timeout=HANG)
        assert st.output_truncated and st.exit_code == 0

        running = stub.Run(pb.RunRequest(argv=["sleep", "1000"]), timeout=HANG)
        with pytest.raises(grpc.RpcError) as info:
            stub.Remove(pb.JobRef(id=running.id), timeout=HANG)
        assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as info:
            server.stub("other").Remove(pb.JobRef(id=big.id), timeout=HANG)
        assert info.value.details() == "unauthorized"
        assert stub.Remove(pb.JobRef(id=big.id[:8]), timeout=HANG).id == big.id
        with pytest.raises(grpc.RpcError) as info:
            stub.Status(pb.JobRef(id=big.id), timeout=HANG)
        assert info.value.code() is grpc.StatusCode.NOT_FOUND
        stub.Stop(pb.StopRequest(id=running.id, grace_seconds=0), timeout=HANG)
    finally:
        kill(server, signal.SIGTERM)
