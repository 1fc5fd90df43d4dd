"""The launcher on its own: a request handed over a real socket, and each kind of end report
recorded (status, end frame, cgroup gone, the engine answered)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
from pathlib import Path

import pytest

from tjob import protocol as p
from tjob.cgroups import CgroupBackend
from tjob.jobdir import EXEC_FILE, LOG_FILE, SPEC_FILE, STATUS_FILE, STOP_FILE, exec_blob
from tjob.launcher import record
from tjob.launcher_client import LauncherClient
from tjob.logstore import LogReader
from tjob.recorder import Recorder
from tjob.status import JobFacts, JobState, JobStatus, ResolvedLimits

pytestmark = pytest.mark.root

LIMITS = ResolvedLimits(20, 20, 64, 1 << 20, 1 << 20, None)


def job_dir(tmp_path: Path, name: str = "0123456789abcdef0123456789abcdef") -> Path:
    jdir = tmp_path / name
    jdir.mkdir()
    facts = JobFacts(name, ("true",), "alice", 1.5, LIMITS)
    (jdir / SPEC_FILE).write_text(json.dumps(facts.to_dict()))
    return jdir


def recorded(jdir: Path) -> JobStatus:
    st = JobStatus.from_dict(json.loads((jdir / STATUS_FILE).read_bytes()))
    with LogReader(str(jdir / LOG_FILE)) as r:
        while not r.ended and r.read():
            pass
        assert r.ended and r.end_payload is not None
        assert JobStatus.from_dict(json.loads(r.end_payload)) == st  # the end frame says it too
    return st


def test_failed_start_is_recorded_and_answered(tmp_path: Path, cg: CgroupBackend) -> None:
    jdir = job_dir(tmp_path)
    cg.create(jdir.name, LIMITS)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
        failure = p.Failure("exec", "exec", 2, b"/no/such")
        record(jdir, Recorder(cg), p.encode_end_report(p.Failed(failure)), theirs)
        answer = p.decode_start_reply(ours.recv(4096))
    assert answer == p.StartReply(False, error="exec /no/such: No such file or directory")
    st = recorded(jdir)
    assert (st.state, st.error, st.owner, st.limits) == (
        JobState.FAILED,
        answer.error,
        "alice",
        LIMITS,
    )
    assert jdir.name not in cg.job_ids()


def test_init_that_died_unreported_is_a_failed_start(tmp_path: Path, cg: CgroupBackend) -> None:
    jdir = job_dir(tmp_path)
    record(jdir, Recorder(cg), p.encode_end_report(p.Failed(None)), None)
    assert recorded(jdir).error == "the job's init died before starting the command"


@pytest.mark.parametrize(
    ("report", "stop", "want"),
    [
        (p.Exited(768, 42, 10.0, None), False, (JobState.EXITED, 3, None, None)),
        (p.Exited(signal.SIGTERM, 42, 10.0, None), True, (JobState.STOPPED, None, 15, None)),
        (p.Exited(-1, 42, 10.0, None), True, (JobState.STOPPED, None, signal.SIGKILL, None)),
        (p.Exited(0, 42, 10.0, "cap"), False, (JobState.EXITED, 0, None, "cap")),
    ],
)
def test_exit_reports_are_recorded_truthfully(
    tmp_path: Path, cg: CgroupBackend, report: p.Exited, stop: bool, want: tuple[object, ...]
) -> None:
    jdir = job_dir(tmp_path)
    cg.create(jdir.name, LIMITS)
    if stop:
        (jdir / STOP_FILE).touch()
    record(jdir, Recorder(cg), p.encode_end_report(report), None)
    st = recorded(jdir)
    assert (st.state, st.exit_code, st.signal, st.error) == want
    assert (st.pid, st.started_at, st.stopped) == (42, 10.0, stop)
    assert st.output_truncated is (want[3] is not None)
    assert jdir.name not in cg.job_ids()


def test_a_request_is_handed_to_a_supervisor_that_runs_it(
    tmp_path: Path, cg: CgroupBackend
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    jdir = job_dir(state)
    procs = [os.path.relpath(p, cg.root) for p in cg.procs_files(jdir.name)]
    env = {"PATH": "/usr/bin:/bin"}
    argv = ["sh", "-c", "exit 7"]
    (jdir / EXEC_FILE).write_bytes(exec_blob("host", "/", None, procs, argv, env))
    limits = p.Limits(20, 20, 64, 1, 1, None)
    request = p.StartRequest(str(jdir), 1 << 20, jdir.name, limits)
    client = LauncherClient(state, cg)
    try:
        msg, fds, _ = client.receive(client.send(p.encode_start_request(request)))
        reply = p.decode_start_reply(msg)
        assert reply.ok and len(fds) == 2  # pidfds of the supervisor and of init
        # The supervisor exits once the launcher has recorded the end.
        assert select.select([fds[0]], [], [], 30)[0]
        for fd in fds:
            os.close(fd)
        st = recorded(jdir)
        assert (st.state, st.exit_code, st.pid) == (JobState.EXITED, 7, reply.pid)
        assert jdir.name not in cg.job_ids()
    finally:
        client.close()
    assert client.pid is None
