"""The API server end to end: real engine, real jobs, real mutual TLS, grpcio clients."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from apiharness import (
    ADMIN,
    ALICE,
    BOB,
    HANG,
    ROOT,
    Harness,
    fds_under,
    logs,
    open_gate,
    rpc_error,
)
from grpclib.health.v1 import health_pb2
from grpclib.reflection.v1 import reflection_pb2

from tjob.api import tls
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.api.tjob.v1.tjob_pb2_grpc import JobServiceStub
from tjob.spec import Limits

pytestmark = ROOT

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with Harness(tmp_path_factory.mktemp("server")) as harness:
        yield harness


def healthy(h: Harness) -> bool:
    check = h.channel(ALICE).unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    resp = check(health_pb2.HealthCheckRequest(service="tjob.v1.JobService"), timeout=HANG)
    return resp.status == health_pb2.HealthCheckResponse.SERVING


# --- the RPCs -----------------------------------------------------------------------------------


def test_run_wait_logs(h: Harness) -> None:
    stub = h.stub(ALICE)
    st = h.run(["sh", "-c", "echo out; echo err >&2; exit 3"], env={"X": "1"}, workdir="/tmp")
    assert st.owner == "alice" and len(st.id) == 32
    assert st.limits.cpu_percent == 20 and st.limits.memory_mb == 20  # the caps as defaults
    final = stub.Wait(pb.JobRef(id=st.id[:8]), timeout=HANG)
    assert final.state == pb.JOB_STATE_EXITED and final.exit_code == 3
    assert not final.HasField("signal")
    assert logs(stub, st.id, follow=False) == b"out\nerr\n"
    assert logs(stub, st.id, streams=pb.STREAM_SELECT_STDOUT) == b"out\n"
    assert logs(stub, st.id, streams=pb.STREAM_SELECT_STDERR) == b"err\n"
    assert logs(stub, st.id, skip=5) == b"rr\n"  # resuming after 5 bytes
    assert logs(stub, st.id, skip=1, streams=pb.STREAM_SELECT_STDERR) == b"rr\n"
    chunks = list(stub.Logs(pb.LogsRequest(id=st.id, follow=True), timeout=HANG))
    assert {(c.stream, c.data) for c in chunks} == {
        (pb.STREAM_STDOUT, b"out\n"),
        (pb.STREAM_STDERR, b"err\n"),
    }


def test_run_sees_env_and_workdir(h: Harness) -> None:
    st = h.run(["sh", "-c", 'echo "$X $(pwd) $(id -un)"'], env={"X": "hello"}, workdir="/tmp")
    assert logs(h.stub(ALICE), st.id) == b"hello /tmp nobody\n"


def test_requested_limits_within_caps_apply(h: Harness) -> None:
    st = h.run(["true"], limits=pb.Limits(cpu_percent=10, memory_mb=15, pids=8))
    assert (st.limits.cpu_percent, st.limits.memory_mb, st.limits.pids) == (10, 15, 8)


def test_a_command_that_cannot_start_is_a_failed_job(h: Harness) -> None:
    st = h.run(["/no/such/command"])
    final = h.stub(ALICE).Wait(pb.JobRef(id=st.id), timeout=HANG)
    assert final.state == pb.JOB_STATE_FAILED and "No such file" in final.error


def test_stop_sigterm_then_sigkill(h: Harness) -> None:
    stub = h.stub(ALICE)
    polite = h.run(["sh", "-c", "echo up; exec sleep 300"])
    next(iter(stub.Logs(pb.LogsRequest(id=polite.id, follow=True), timeout=HANG)))  # it is running
    st = stub.Stop(pb.StopRequest(id=polite.id), timeout=HANG)
    assert st.state == pb.JOB_STATE_STOPPED and st.stopped and st.signal == 15

    stubborn = h.run(["sh", "-c", "trap '' TERM; echo up; while :; do sleep 1; done"])
    next(
        iter(stub.Logs(pb.LogsRequest(id=stubborn.id, follow=True), timeout=HANG))
    )  # the trap is set
    st = stub.Stop(pb.StopRequest(id=stubborn.id, grace_seconds=0.2), timeout=HANG)
    assert st.state == pb.JOB_STATE_STOPPED and st.signal == 9
    # Stopping a finished job is harmless and answers its status.
    again = stub.Stop(pb.StopRequest(id=stubborn.id), timeout=HANG)
    assert again.state == pb.JOB_STATE_STOPPED and again.signal == 9


def test_wait_returns_when_the_job_ends(h: Harness) -> None:
    stub = h.stub(ALICE)
    st = h.run(["sleep", "300"])
    waiting = stub.Wait.future(pb.JobRef(id=st.id), timeout=HANG)
    stub.Stop(pb.StopRequest(id=st.id, grace_seconds=0), timeout=HANG)
    assert waiting.result(HANG).state == pb.JOB_STATE_STOPPED


def test_list_newest_first_and_state_filter(h: Harness) -> None:
    stub = h.stub(BOB)
    done = [h.run(["true"], BOB).id for _ in range(3)]
    for i in done:
        stub.Wait(pb.JobRef(id=i), timeout=HANG)
    running = h.run(["sleep", "300"], BOB).id
    everything = [j.id for j in stub.List(pb.ListRequest(), timeout=HANG).jobs]
    assert everything[:4] == [running, *reversed(done)]
    only = stub.List(pb.ListRequest(state=pb.JOB_STATE_RUNNING), timeout=HANG).jobs
    assert [j.id for j in only] == [running]
    stub.Stop(pb.StopRequest(id=running, grace_seconds=0), timeout=HANG)


def test_stats_of_a_cpu_bound_job(h: Harness) -> None:
    stub = h.stub(ALICE)
    st = h.run(["sh", "-c", "while :; do :; done"])
    req = pb.StatsRequest(ids=[st.id], interval_seconds=1.0)
    (resp,) = list(stub.Stats(req, timeout=HANG))
    (row,) = resp.jobs
    assert row.id == st.id and row.state == pb.JOB_STATE_RUNNING
    # Capped at 20% of a CPU: a generous band, not a measurement.
    assert 5.0 < row.cpu_percent < 40.0, row.cpu_percent
    assert row.memory_limit_bytes == 20 * 1024 * 1024 and row.pids >= 1
    # Without ids: the caller's running jobs.
    (resp,) = list(stub.Stats(pb.StatsRequest(interval_seconds=0.2), timeout=HANG))
    assert st.id in {j.id for j in resp.jobs}
    # A stream of a named job ends once the job has ended.
    stream = stub.Stats(pb.StatsRequest(ids=[st.id], stream=True, interval_seconds=0.2))
    first = next(stream)
    assert first.jobs[0].state == pb.JOB_STATE_RUNNING
    stub.Stop(pb.StopRequest(id=st.id, grace_seconds=0), timeout=HANG)
    rest = list(stream)
    assert rest and rest[-1].jobs[0].state == pb.JOB_STATE_STOPPED


def test_health_and_reflection(h: Harness) -> None:
    assert healthy(h)
    info = h.channel(ALICE).stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    reqs = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="tjob.v1.JobService"),
    ]
    listed, symbol = list(info(iter(reqs), timeout=HANG))
    names = {s.name for s in listed.list_services_response.service}
    assert {"tjob.v1.JobService", "grpc.health.v1.Health"} <= names
    assert symbol.file_descriptor_response.file_descriptor_proto


def test_state_changes_are_logged(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="tjobs")
    st = h.run(["sleep", "300"], ADMIN)
    h.stub(ADMIN).Stop(pb.StopRequest(id=st.id, grace_seconds=0), timeout=HANG)
    lines = [r.getMessage() for r in caplog.records if r.name == "tjobs"]
    assert any(m.startswith(f"run admin {st.id[:8]} sleep 300") for m in lines), lines
    assert any(m.startswith(f"stop admin {st.id[:8]} grace 0s: stopped") for m in lines), lines


# --- bad requests -------------------------------------------------------------------------------

JOB = "0123456789abcdef" * 2

BAD: list[tuple[str, str, Any, str]] = [
    ("Run", "empty argv", pb.RunRequest(argv=[]), "non-empty"),
    ("Run", "empty command", pb.RunRequest(argv=[""]), "must not be empty"),
    ("Run", "NUL in argv", pb.RunRequest(argv=["echo", "a\0b"]), "NUL"),
    ("Run", "1 MB argv", pb.RunRequest(argv=["echo", "x" * (1 << 20)]), "bytes, more than"),
    (
        "Run",
        "cpu over cap",
        pb.RunRequest(argv=["true"], limits=pb.Limits(cpu_percent=21)),
        "cpu_percent 21 is above the server's cap of 20",
    ),
    (
        "Run",
        "mem over cap",
        pb.RunRequest(argv=["true"], limits=pb.Limits(memory_mb=4096)),
        "memory_mb 4096 is above the server's cap of 20",
    ),
    (
        "Run",
        "pids over cap",
        pb.RunRequest(argv=["true"], limits=pb.Limits(pids=513)),
        "cap of 512",
    ),
    ("Run", "rbps over cap", pb.RunRequest(argv=["true"], limits=pb.Limits(rbps=1 << 30)), "rbps"),
    (
        "Run",
        "device",
        pb.RunRequest(argv=["true"], limits=pb.Limits(device="8:0")),
        "chosen by the server",
    ),
    ("Run", "bad env name", pb.RunRequest(argv=["true"], env={"1X": "y"}), "not valid"),
    ("Run", "relative workdir", pb.RunRequest(argv=["true"], workdir="tmp"), "absolute"),
    ("Status", "short id", pb.JobRef(id="0123456"), "at least 8"),
    ("Status", "empty id", pb.JobRef(id=""), "at least 8"),
    ("Status", "neither id nor name", pb.JobRef(id="zz zz"), "at least 8"),
    ("Status", "long id", pb.JobRef(id=JOB + "0"), "at least 8"),
    ("Wait", "bad id", pb.JobRef(id="../../etc"), "at least 8"),
    ("Stop", "negative grace", pb.StopRequest(id=JOB, grace_seconds=-1), "grace"),
    ("Stop", "nan grace", pb.StopRequest(id=JOB, grace_seconds=float("nan")), "grace"),
    ("Logs", "unknown streams", pb.LogsRequest(id=JOB, streams=7), "stream selection"),  # type: ignore[arg-type]
    ("Logs", "bad id", pb.LogsRequest(id="x!"), "at least 8"),
    ("List", "unknown state", pb.ListRequest(state=99), "job state 99"),  # type: ignore[arg-type]
    ("Stats", "tiny interval", pb.StatsRequest(interval_seconds=0.001), "interval"),
    ("Stats", "bad id", pb.StatsRequest(ids=["no pe"]), "at least 8"),
]


@pytest.mark.parametrize(("rpc", "what", "req", "message"), BAD, ids=[b[1] for b in BAD])
def test_bad_requests_are_invalid_argument(
    h: Harness, rpc: str, what: str, req: Any, message: str
) -> None:
    err = rpc_error(getattr(h.stub(ALICE), rpc), req)
    assert err.code() is INVALID, (what, err.code(), err.details())
    assert message in err.details(), err.details()
    assert healthy(h)
    h.stub(ALICE).List(pb.ListRequest(), timeout=HANG)  # and still serving


def test_oversized_request_is_refused_unread(h: Harness) -> None:
    huge = pb.RunRequest(argv=["echo", "x" * (5 << 20)])
    err = rpc_error(h.stub(ALICE).Run, huge)
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
    assert "more than the 4194304" in err.details()
    assert healthy(h)


def test_undecodable_request_is_invalid(h: Harness) -> None:
    raw = h.channel(ALICE).unary_unary(
        "/tjob.v1.JobService/Status",
        request_serializer=lambda b: b,
        response_deserializer=pb.JobStatus.FromString,
    )
    err = rpc_error(raw, b"\xff\xff\xff")
    assert err.code() is INVALID and "not a valid JobRef" in err.details()
    assert healthy(h)


def test_unknown_job_is_not_found(h: Harness) -> None:
    err = rpc_error(h.stub(ALICE).Status, pb.JobRef(id=JOB))
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "unauthorized")


# --- streams: many followers, cancelled followers -----------------------------------------------


def test_200_concurrent_followers_get_identical_bytes(h: Harness, gate: Path) -> None:
    size = 1_000_000
    st = h.run(["sh", "-c", f"echo ready; cat {gate}; head -c {size} /dev/urandom"])
    followers = 200

    async def follow_all() -> list[bytes]:
        creds = tls.client_credentials(*h.files(ALICE))
        channels = [grpc.aio.secure_channel(h.target, creds) for _ in range(4)]
        ready = asyncio.Event()
        started = 0

        async def follow(ch: grpc.aio.Channel) -> bytes:
            nonlocal started
            stub = JobServiceStub(ch)
            out = bytearray()
            first = True
            async for chunk in stub.Logs(pb.LogsRequest(id=st.id, follow=True), timeout=HANG):
                out += chunk.data
                if first:
                    first = False
                    started += 1
                    if started == followers:
                        ready.set()
            return bytes(out)

        tasks = [asyncio.create_task(follow(channels[i % 4])) for i in range(followers)]
        await asyncio.wait_for(ready.wait(), HANG)  # every follower is attached mid-job
        await asyncio.get_running_loop().run_in_executor(None, open_gate, gate)
        results = await asyncio.wait_for(asyncio.gather(*tasks), HANG)
        for ch in channels:
            await ch.close()
        return results

    results = asyncio.run(follow_all())
    whole = logs(h.stub(ALICE), st.id, follow=False)
    assert len(whole) == len(b"ready\n") + size
    assert all(r == whole for r in results)


def server_tasks(h: Harness) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks()) - 1  # not this one

    return h.call(count())


@pytest.mark.parametrize("chatty", [False, True], ids=["silent job", "busy job"])
def test_cancelled_follower_frees_its_task_and_files(h: Harness, chatty: bool) -> None:
    stub = h.stub(ALICE)
    cmd = "echo up; exec yes" if chatty else "echo up; exec sleep 300"
    st = h.run(["sh", "-c", cmd])
    job_dir = h.state / "jobs" / st.id
    base_tasks, base_fds = server_tasks(h), len(fds_under(h.state))

    for _ in range(3):
        call = stub.Logs(pb.LogsRequest(id=st.id, follow=True), timeout=HANG)
        assert next(call).data.startswith(b"up\n")
        serving = h.in_flight()
        assert serving and fds_under(job_dir)  # a handler task holds the log open
        call.cancel()
        # Wait for exactly those handler tasks to end (the hang guard is the only timeout).
        h.call(asyncio.wait_for(asyncio.wait(serving), HANG))
        assert not h.in_flight()
        assert fds_under(job_dir) == []
        assert len(fds_under(h.state)) == base_fds
        assert server_tasks(h) == base_tasks

    stub.Stop(pb.StopRequest(id=st.id, grace_seconds=0), timeout=HANG)
    assert healthy(h)


# --- the per-identity cap, and shutdown ---------------------------------------------------------


def test_per_identity_running_job_cap(tmp_path: Path) -> None:
    with Harness(tmp_path, max_jobs=2) as h2:
        alice = h2.stub(ALICE)
        first = [h2.run(["sleep", "300"]).id for _ in range(2)]
        err = rpc_error(alice.Run, pb.RunRequest(argv=["true"]))
        assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "2 running jobs" in err.details()
        h2.run(["sleep", "300"], BOB)  # another identity has its own allowance
        alice.Stop(pb.StopRequest(id=first[0], grace_seconds=0), timeout=HANG)
        h2.run(["true"])  # room again

        # Concurrent Runs cannot overshoot the cap between check and start.
        for i in first[1:]:
            alice.Stop(pb.StopRequest(id=i, grace_seconds=0), timeout=HANG)
        for job in alice.List(pb.ListRequest(state=pb.JOB_STATE_RUNNING), timeout=HANG).jobs:
            alice.Stop(pb.StopRequest(id=job.id, grace_seconds=0), timeout=HANG)
        req = pb.RunRequest(argv=["sleep", "300"])
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda _: _run_code(alice, req), range(8)))
        assert outcomes.count(grpc.StatusCode.OK) == 2
        assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 6


def _run_code(stub: JobServiceStub, req: pb.RunRequest) -> grpc.StatusCode:
    try:
        stub.Run(req, timeout=HANG)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def test_caps_come_from_the_server(tmp_path: Path) -> None:
    caps = Limits(cpu_percent=50, memory_mb=64, pids=100, rbps=1 << 20, wbps=1 << 20)
    with Harness(tmp_path, caps=caps) as h2:
        st = h2.run(["true"])
        assert (st.limits.cpu_percent, st.limits.memory_mb, st.limits.pids) == (50, 64, 100)
        err = rpc_error(h2.stub(ALICE).Run, pb.RunRequest(argv=["true"], limits={"pids": 101}))
        assert err.code() is INVALID and "cap of 100" in err.details()


def test_shutdown_ends_open_streams_cleanly(tmp_path: Path) -> None:
    with Harness(tmp_path) as h2:
        stub = h2.stub(ALICE)
        st = h2.run(["sh", "-c", "echo up; exec sleep 300"])
        follower = stub.Logs(pb.LogsRequest(id=st.id, follow=True), timeout=HANG)
        assert next(follower).data == b"up\n"
        waiter = stub.Wait.future(pb.JobRef(id=st.id), timeout=HANG)
        assert h2.api is not None
        h2.call(h2.api.shutdown(HANG))
        with pytest.raises(grpc.RpcError) as info:
            next(follower)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert info.value.details() == "tjobs is shutting down"
        err = waiter.exception(HANG)
        assert isinstance(err, grpc.RpcError) and err.code() is grpc.StatusCode.UNAVAILABLE
