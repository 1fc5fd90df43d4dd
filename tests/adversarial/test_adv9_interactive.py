"""Hostile clients of interactive jobs (issue 16): Attach by someone else, a second writer,
malformed and oversized requests, absurd window sizes, clients that vanish mid-session or leave
a write blocked on a job that never reads, and attach churn. Each is refused clearly or
documented, and the after-every-case checkup finds nothing left (fds, threads, tasks,
supervisors); the job's supervisor holds no more descriptors than before."""

from __future__ import annotations

import os
import time
from typing import Any

import grpc
import pytest
from advkit import Case, finish
from apiharness import BOB, HANG, ROOT
from support.attach import Session

from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.protocol import decode_run

pytestmark = ROOT


def run(case: Case, argv: list[str], **kw: Any) -> pb.JobStatus:
    st: pb.JobStatus = case.stub().Run(pb.RunRequest(argv=argv, **kw), timeout=HANG)
    return st


def refused(fn: Any, *args: Any, **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        fn(*args, **kw)
    return err.value


def supervisor_fds(case: Case, job_id: str) -> int:
    assert case.h.engine is not None
    job = case.h.engine.get(job_id)
    info = decode_run((job.dir / "run.json").read_bytes())
    return len(os.listdir(f"/proc/{info.supervisor_pid}/fd"))


def test_someone_elses_job_is_unauthorized(case: Case) -> None:
    job = run(case, ["cat"], stdin=True)
    for stdin in (True, False):
        err = refused(Session, case.stub(BOB), job.id, stdin=stdin)
        assert err.code() is grpc.StatusCode.NOT_FOUND and err.details() == "unauthorized"
    finish(case.stub(), job.id)


def test_one_writer_at_a_time(case: Case) -> None:
    job = run(case, ["cat"], stdin=True)
    first = Session(case.stub(), job.id)
    err = refused(Session, case.stub(), job.id)
    assert err.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "another client is attached to its stdin" in err.details()
    reader = Session(case.stub(), job.id, stdin=False)  # readers: any number
    assert not reader.attached.stdin
    first.send(data=b"one\n")
    reader.expect(b"one\n")
    first.send(detach=True)
    assert first.exit() is None  # detached: the call ends, the job runs on
    second = Session(case.stub(), job.id)
    second.send(data=b"two\n")
    second.send(eof=True)
    st = second.exit()
    assert st is not None and st.exit_code == 0
    assert reader.exit() == st


BAD_FIRST = [
    pb.AttachRequest(data=b"x"),
    pb.AttachRequest(eof=True),
    pb.AttachRequest(),
]


@pytest.mark.parametrize("first", BAD_FIRST, ids=["data", "eof", "empty"])
def test_a_session_starts_with_attach_start(case: Case, first: pb.AttachRequest) -> None:
    job = run(case, ["cat"], stdin=True)
    err = refused(lambda: list(case.stub().Attach(iter([first]), timeout=HANG)))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "AttachStart" in err.details()
    finish(case.stub(), job.id)


def test_a_second_attach_start_ends_the_call(case: Case) -> None:
    job = run(case, ["cat"], stdin=True)
    s = Session(case.stub(), job.id)
    s.send(start=pb.AttachStart(id=job.id))
    err = refused(s.exit)
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    # Its lease was given back without a word: a pipe's reader sees EOF.
    st = case.stub().Wait(pb.JobRef(id=job.id), timeout=HANG)
    assert st.exit_code == 0


@pytest.mark.parametrize("size", [(0, 80), (24, 0), (5000, 80), (24, 70000)])
def test_absurd_window_sizes_are_refused(case: Case, size: tuple[int, int]) -> None:
    ws = pb.WindowSize(rows=size[0], cols=size[1])
    err = refused(case.stub().Run, pb.RunRequest(argv=["sh"], tty=True, tty_size=ws), timeout=HANG)
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT and "window size" in err.details()
    job = run(case, ["sh"], stdin=True, tty=True)
    s = Session(case.stub(), job.id)
    s.send(resize=ws)
    err = refused(s.exit)
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT and "window size" in err.details()
    again = Session(case.stub(), job.id)  # the terminal was left as it was: attach again
    again.send(data=b"stty size; exit 0\r")
    st = again.exit()
    assert st is not None and st.exit_code == 0
    assert b"24 80" in again.output  # the default size, untouched by the refused one


def test_an_oversized_data_message_is_refused(case: Case) -> None:
    job = run(case, ["cat"], stdin=True)
    s = Session(case.stub(), job.id)
    s.send(data=b"x" * (2 << 20))  # over the 1 MiB a message may carry
    err = refused(s.exit)
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    finish(case.stub(), job.id)


def test_a_vanished_client_is_eof_for_a_pipe(case: Case) -> None:
    job = run(case, ["cat"], stdin=True)
    s = Session(case.stub(), job.id, logs=True)
    s.send(data=b"kept\n")
    s.expect(b"kept\n")
    s.cancel()
    st = case.stub().Wait(pb.JobRef(id=job.id), timeout=HANG)
    assert st.exit_code == 0  # cat saw EOF
    logs = b"".join(c.data for c in case.stub().Logs(pb.LogsRequest(id=job.id), timeout=HANG))
    assert logs == b"kept\n"


def test_a_vanished_client_leaves_a_terminal_job_running(case: Case) -> None:
    job = run(case, ["sh"], stdin=True, tty=True)
    s = Session(case.stub(), job.id, logs=True)
    s.expect(b"$ ")
    s.cancel()
    again = _attach_retrying(case, job.id, stdin=True)  # until the server has seen it go
    again.send(data=b"echo still here; exit 9\r")
    st = again.exit()
    assert st is not None and st.exit_code == 9
    assert b"still here" in again.output


def test_a_write_blocked_on_a_job_that_never_reads(case: Case) -> None:
    """The pipe fills (64 KiB), the write waits, the client goes: the handler ends."""
    job = run(case, ["sleep", "300"], stdin=True)
    block = b"y" * (60 << 10)
    start = pb.AttachRequest(start=pb.AttachStart(id=job.id, stdin=True))
    # 2.4 MiB: more than the pipe and the HTTP/2 windows hold.
    call = case.stub().Attach(iter([start] + [pb.AttachRequest(data=block)] * 40), timeout=HANG)
    assert next(call).WhichOneof("msg") == "attached"
    call.cancel()
    finish(case.stub(), job.id)


def _attach_retrying(case: Case, job_id: str, stdin: bool) -> Session:
    deadline = time.monotonic() + HANG
    while True:
        try:
            return Session(case.stub(), job_id, stdin=stdin)
        except grpc.RpcError as err:
            busy = err.code() is grpc.StatusCode.FAILED_PRECONDITION and "another client" in (
                err.details() or ""
            )
            if not busy or time.monotonic() > deadline:
                raise


def test_attach_churn_leaks_nothing(case: Case) -> None:
    job = run(case, ["sh"], stdin=True, tty=True)
    first = Session(case.stub(), job.id, logs=True)
    first.expect(b"$ ")
    first.send(detach=True)
    assert first.exit() is None
    fds = supervisor_fds(case, job.id)
    for i in range(30):
        # A cancelled client's lease is given back once the server sees the cancel, after the
        # client has moved on: the next writer may be told "busy" until then, and retries.
        s = _attach_retrying(case, job.id, stdin=i % 3 != 0)
        if i % 2:
            s.cancel()
        else:
            s.send(detach=True)
            assert s.exit() is None
    last = _attach_retrying(case, job.id, stdin=True)
    last.send(data=b"echo ok\r")
    last.expect(b"\r\nok\r\n")
    assert supervisor_fds(case, job.id) <= fds + 1  # the lease held by `last`
    last.send(data=b"exit\r")
    st = last.exit()
    assert st is not None and st.exit_code == 0
