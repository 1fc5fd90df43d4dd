"""Hostile use of Exec (issue 16): another client's job, malformed requests, clients that
vanish mid-exec, and execs by the dozen. Every refusal has its code, and afterwards the server
holds nothing of them: no descriptor, watch, thread or process (zombies included)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import grpc
import pytest
from apiharness import ADMIN, ALICE, BOB, HANG, ROOT, Harness, rpc_error
from support.attach import Session
from support.procs import all_ended, pidfds

from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.errors import ExecLimit
from tjob.execs import MAX_LIVE

pytestmark = ROOT


def run_exec(stub: object, req: pb.ExecRequest) -> tuple[bytes, pb.ExecExit]:
    out, end = b"", None
    for msg in stub.Exec(req, timeout=HANG):  # type: ignore[attr-defined]
        if msg.HasField("exit"):
            end = msg.exit
        else:
            out += msg.output.data
    assert end is not None
    return out, end


def zombies() -> list[int]:
    """Every process in state Z."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z":
                found.append(int(entry))
    return found


def threads() -> set[str]:
    """This process's threads but the event loop's executor pool (made on demand, kept idle)."""
    return {t.name for t in threading.enumerate() if not t.name.startswith("asyncio_")}


def fds_in(state: Path) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(state)) or target.startswith("pidfd") or "pidfd" in target:
            out.append(target)
    return out


def test_exec_authorization_and_bad_requests(tmp_path: Path) -> None:
    with Harness(tmp_path) as h:
        st = h.run(["sleep", "1000"])
        req = pb.ExecRequest(id=st.id, argv=["true"])
        err = rpc_error(h.stub(BOB).Exec, req)
        assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "unauthorized")
        assert run_exec(h.stub(ADMIN), req)[1].exit_code == 0  # an admin may
        for bad, words in [
            ({"argv": []}, "argv"),
            ({"argv": ["a\0b"]}, "NUL"),
            ({"argv": ["true"], "env": {"A=B": "c"}}, "environment variable name"),
            ({"argv": ["true"], "workdir": "tmp"}, "absolute"),
            ({"argv": ["true"], "env": {"A": "x" * (1 << 20)}}, ""),
        ]:
            err = rpc_error(h.stub(ALICE).Exec, pb.ExecRequest(id=st.id, **bad))
            assert err.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.RESOURCE_EXHAUSTED,  # over the request size cap
            ), (bad, err)
            assert words in (err.details() or "")
        h.stub().Stop(pb.StopRequest(id=st.id, grace_seconds=0), timeout=HANG)
        err = rpc_error(h.stub().Exec, req)
        assert err.code() is grpc.StatusCode.FAILED_PRECONDITION


def test_execs_leave_nothing_behind(tmp_path: Path) -> None:
    with Harness(tmp_path) as h:
        assert h.engine is not None
        st = h.run(["sleep", "1000"])
        before_threads = threads()
        before_fds = fds_in(h.state)
        for i in range(30):
            argv = [["true"], ["sh", "-c", "echo x; exit 5"], ["no-such"]][i % 3]
            out, end = run_exec(h.stub(), pb.ExecRequest(id=st.id, argv=argv))
            if i % 3 < 2:
                assert (out, end.exit_code) == ([b"", b"x\n"][i % 3], [0, 5][i % 3])
            else:
                assert end.error == "exec no-such: No such file or directory"
        # A client that goes away mid-exec: the exec runs on, in the job.
        call = h.stub().Exec(pb.ExecRequest(id=st.id, argv=["sh", "-c", "echo up; sleep 999"]))
        first = next(call)
        assert first.output.data == b"up\n"
        call.cancel()
        (left,) = [x for x in h.engine.get(st.id).execs() if x.result() is None]
        pids = h.engine._cg.pids(h.engine.get(st.id).cgroup)
        with pidfds(pids) as fds:
            h.stub().Stop(pb.StopRequest(id=st.id, grace_seconds=0), timeout=HANG)
            assert all_ended(fds)
        assert left.wait(HANG).signal == 9
        assert not h.in_flight()
        diag = h.engine.diagnostics()
        assert (diag.watches, diag.exit_watches) == (0, 0)
        assert threads() <= before_threads
        after = fds_in(h.state)  # the stopped job's own two pidfds are gone too
        assert set(after) <= set(before_fds) and not [f for f in after if "pidfd" in f]
        # Exec supervisors are the zygote's children: each one reaped, none left.
        assert len(diag.supervisors) <= 1  # the spare, if it is made already
        assert [z for z in zombies() if z in _descendants(os.getpid())] == []


def _descendants(pid: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for kid in kids.get(todo.pop(), []):
            out.add(kid)
            todo.append(kid)
    return out


def test_an_exec_cannot_leave_the_job(tmp_path: Path) -> None:
    """What the job's command cannot do, an exec'd one cannot either."""
    with Harness(tmp_path) as h:
        st = h.run(["sleep", "1000"])
        script = (
            "unshare -U true 2>/dev/null && echo userns; "
            "touch /usr/x 2>/dev/null && echo wrote; "
            "ls /proc | grep -c '^[0-9]'; "
            "cat /proc/1/environ 2>/dev/null && echo environ"
        )
        out, end = run_exec(h.stub(), pb.ExecRequest(id=st.id, argv=["sh", "-c", script]))
        assert end.exit_code == 1  # the last command failed
        assert int(out.decode().strip()) <= 5, out  # init, the job, sh, ls, grep: no host pid
        h.stub().Stop(pb.StopRequest(id=st.id, grace_seconds=0), timeout=HANG)


def test_execs_running_at_once_in_a_job_are_capped(tmp_path: Path) -> None:
    """Moving a process into a cgroup is not bounded by its pids.max: the engine bounds how
    many execs one job may have running."""
    with Harness(tmp_path) as h:
        assert h.engine is not None
        st = h.run(["sleep", "1000"])
        job = h.engine.get(st.id)
        running = [job.exec(["sleep", "1000"]) for _ in range(MAX_LIVE)]
        with pytest.raises(ExecLimit, match=f"{MAX_LIVE} execs are running"):
            job.exec(["true"])
        err = rpc_error(h.stub().Exec, pb.ExecRequest(id=st.id, argv=["true"]))
        assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        os.kill(running[0].pid or 0, 9)  # one ends: room for one more
        assert running[0].wait(HANG).signal == 9
        assert run_exec(h.stub(), pb.ExecRequest(id=st.id, argv=["true"]))[1].exit_code == 0
        h.stub().Stop(pb.StopRequest(id=st.id, grace_seconds=0), timeout=HANG)
        assert all(x.wait(HANG).signal == 9 for x in running[1:])


def test_interactive_execs_refused_to_others_and_closed_when_their_client_vanishes(
    tmp_path: Path,
) -> None:
    with Harness(tmp_path) as h:
        assert h.engine is not None
        st = h.run(["sleep", "1000"])
        exec_req = pb.ExecRequest(argv=["cat"], stdin=True)
        with pytest.raises(grpc.RpcError) as err:
            Session(h.stub(BOB), st.id, exec=exec_req)
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
        err2 = rpc_error(h.stub().Exec, pb.ExecRequest(id=st.id, argv=["cat"], stdin=True))
        assert err2.code() is grpc.StatusCode.INVALID_ARGUMENT
        s = Session(h.stub(), st.id, exec=exec_req, logs=True)
        assert s.attached.stdin and not s.attached.tty
        s.send(data=b"echo\n")
        s.expect(b"echo\n")
        s.cancel()  # the client vanishes: cat's stdin sees EOF, and cat ends
        (ex,) = h.engine.get(st.id).execs()
        assert ex.wait(HANG).exit_code == 0
        # Its attach socket is gone before its end is written.
        assert {p.name for p in ex.dir.iterdir()} <= {
            "end-report",
            "exec.bin",
            "output.log",
            "reserve",
        }
        assert not h.in_flight()
        h.stub().Stop(pb.StopRequest(id=st.id, grace_seconds=0), timeout=HANG)
