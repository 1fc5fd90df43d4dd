"""Exec into a running job (issue 16), through the library on real namespaces and cgroups: the
exec'd command is in the job's PID, mount, network, UTS and IPC namespaces, its cgroup (and
limits), its user and its jail; its output and exit are its own; it ends with the job.

Marked ``cgroup2`` too: ``make test-cgroup2`` runs them on a real cgroup v2 kernel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.procs import all_ended, pidfds
from support.timeouts import HANG

import tjob
from tjob import Engine, JobSpec, Limits
from tjob.errors import JobFinished

pytestmark = [pytest.mark.root, pytest.mark.cgroup2]

STATUS_FIELDS = ("Uid", "Gid", "Groups", "NoNewPrivs", "Seccomp", "CapInh", "CapPrm", "CapEff")
STATUS_FIELDS += ("CapBnd", "CapAmb")


def sleeper(engine: Engine, **kw: object) -> tjob.Job:
    return engine.start(JobSpec(["sleep", "1000"], user="nobody", **kw))  # type: ignore[arg-type]


def run_in(job: tjob.Job, argv: list[str], **kw: object) -> tuple[bytes, bytes, object]:
    """Exec ``argv`` into ``job``; (stdout, stderr, result)."""
    ex = job.exec(argv, **kw)  # type: ignore[arg-type]
    out, err = b"", b""
    for chunk in ex.output():
        if chunk.stream is tjob.Stream.STDOUT:
            out += chunk.data
        else:
            err += chunk.data
    return out, err, ex.wait(HANG)


def test_ps_shows_the_jobs_processes_and_nothing_of_the_host(engine: Engine) -> None:
    job = sleeper(engine)
    out, _, result = run_in(job, ["ps", "-eo", "pid,args"])
    assert result == tjob.ExecResult(exit_code=0)
    lines = out.decode().splitlines()[1:]
    procs = [line.split(None, 1) for line in lines]
    assert procs == [
        ["1", "tjob-shim init"],
        ["2", "sleep 1000"],
        [procs[2][0], "ps -eo pid,args"],
    ]


def test_the_jobs_cgroup_namespaces_hostname_and_jail(engine: Engine, cgroup_parent: str) -> None:
    job = sleeper(engine)
    out, _, _ = run_in(job, ["cat", "/proc/self/cgroup"])
    where = f"/{cgroup_parent}/{job.cgroup}"
    mine = [line for line in out.decode().splitlines() if line.endswith(where)]
    assert mine, out  # v1: each of the job's hierarchies; v2: the one line
    # Every namespace of the job's command, and the same credentials, capabilities, seccomp
    # and no_new_privs (pid 2 is the job's command: the same uid may read its status).
    script = (
        "for n in mnt net uts ipc pid; do "
        '[ "$(readlink /proc/self/ns/$n)" = "$(readlink /proc/2/ns/$n)" ] || echo differs $n; '
        "done; hostname"
    )
    out, err, result = run_in(job, ["sh", "-c", script])
    assert (out, err, result) == (f"{job.short_id}\n".encode(), b"", tjob.ExecResult(0))
    pattern = "^(" + "|".join(STATUS_FIELDS) + "):"
    out, _, _ = run_in(job, ["grep", "-E", pattern, "/proc/self/status", "/proc/2/status"])
    lines = out.decode().splitlines()
    mine = sorted(line.split(":", 1)[1] for line in lines if line.startswith("/proc/self/"))
    theirs = sorted(line.split(":", 1)[1] for line in lines if line.startswith("/proc/2/"))
    assert len(mine) == len(STATUS_FIELDS) and mine == theirs
    fields = dict(line.split(":", 1)[1].split(":\t") for line in lines if "/self/" in line)
    assert fields["Uid"].split()[0] == "65534"
    assert (fields["NoNewPrivs"], fields["Seccomp"], fields["CapBnd"]) == ("1", "2", "0" * 16)


def test_env_workdir_and_exit_codes(engine: Engine) -> None:
    job = engine.start(JobSpec(["sleep", "1000"], user="nobody", env={"A": "job", "B": "job"}))
    out, _, _ = run_in(job, ["sh", "-c", "echo $A $B; pwd"], env={"B": "exec"}, cwd="/tmp")
    assert out == b"job exec\n/tmp\n"
    assert run_in(job, ["sh", "-c", "exit 3"])[2] == tjob.ExecResult(exit_code=3)
    assert run_in(job, ["sh", "-c", "kill -9 $$"])[2] == tjob.ExecResult(signal=9)
    result = run_in(job, ["no-such-command"])[2]
    assert isinstance(result, tjob.ExecResult)
    assert result.error == "exec no-such-command: No such file or directory"
    assert result.shell_exit_code == 127
    assert run_in(job, ["true"], cwd="/nonexistent")[2].error.startswith("chdir")  # type: ignore[attr-defined]
    assert [e.n for e in job.execs()] == [1, 2, 3, 4, 5]
    with pytest.raises(tjob.InvalidSpec):
        job.exec([])


def test_exec_into_a_finished_or_queued_job_is_refused(
    engine: Engine, tmp_path: Path, cgroup_parent: str
) -> None:
    done = engine.start(JobSpec(["true"]))
    done.wait(HANG)
    with pytest.raises(JobFinished, match="has ended"):
        done.exec(["true"])
    with Engine(tmp_path / "q", cgroup_parent=cgroup_parent, max_running=1) as eng:
        first = eng.start(JobSpec(["sleep", "1000"]))
        queued = eng.enqueue(JobSpec(["true"]))
        assert queued.queued
        with pytest.raises(JobFinished, match="queued"):
            queued.exec(["true"])
        first.stop(0)
        queued.wait(HANG)


def test_the_jobs_memory_limit_applies_to_the_exec(engine: Engine) -> None:
    job = sleeper(engine, limits=Limits(memory_mb=32))
    # 256 MiB touched: far over the job's limit (the host has plenty).
    hog = ["python3", "-c", "b = b'x' * (256 << 20)"]
    result = run_in(job, hog)[2]
    assert result == tjob.ExecResult(signal=9)
    assert job.running  # the exec's OOM kill is its own


def test_stopping_the_job_kills_exec_d_processes(engine: Engine) -> None:
    job = sleeper(engine)
    script = "setsid sleep 999 </dev/null >/dev/null 2>&1 & echo forked; exec sleep 998"
    ex = job.exec(["sh", "-c", script])
    assert next(iter(ex.output())).data == b"forked\n"
    pids = engine._cg.pids(job.cgroup)
    with pidfds(pids) as fds:
        assert ex.pid in pids and len(fds) == 3  # the job's sleep, the exec's and its child
        job.stop(0)
        assert all_ended(fds)
    assert ex.wait(HANG) == tjob.ExecResult(signal=9)


def test_a_job_that_ends_takes_its_execs_along(engine: Engine, gate: Path) -> None:
    job = engine.start(JobSpec(["cat", str(gate)], user="nobody"))
    ex = job.exec(["sleep", "999"])
    assert ex.pid is not None
    with pidfds([ex.pid]) as fds:
        with open(gate, "wb"):
            pass
        assert job.wait(HANG).exit_code == 0
        assert all_ended(fds)
    assert ex.wait(HANG).signal == 9


def test_output_and_exit_survive_an_engine_restart(
    tmp_path: Path, cgroup_parent: str, gate: Path
) -> None:
    state = tmp_path / "state"
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        job = eng.start(JobSpec(["sleep", "1000"], user="nobody"))
        ex = job.exec(["sh", "-c", f"echo before; cat {gate}; echo after; exit 4"])
        assert next(iter(ex.output())).data == b"before\n"
    with open(gate, "wb"):
        pass  # it ends while no engine runs
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        job = eng.get(job.id)
        (again,) = job.execs()
        assert again.wait(HANG) == tjob.ExecResult(exit_code=4)
        assert b"".join(c.data for c in again.output()) == b"before\nafter\n"
        assert run_in(job, ["echo", "new"])[0] == b"new\n"  # exec into an adopted job
        job.stop(0)


def test_exec_async(engine: Engine) -> None:
    async def main() -> None:
        job = await engine.start_async(JobSpec(["sleep", "1000"], user="nobody"))
        ex = await job.exec_async(["sh", "-c", "echo out; echo err >&2; exit 7"])
        chunks = [c async for c in ex.output_async()]
        assert sorted(c.data for c in chunks) == [b"err\n", b"out\n"]
        assert await ex.wait_async(HANG) == tjob.ExecResult(exit_code=7)
        await job.stop_async(0)

    asyncio.run(main())


def test_exec_with_stdin_and_a_terminal(engine: Engine) -> None:
    """-i: the exec's own stdin pipe, lent as a job's; -t: a pty of the job's own devpts."""
    job = sleeper(engine)
    ex = job.exec(["sh", "-c", "tr a-z A-Z; exit 4"], stdin=True)
    lease = ex.stdin()
    lease.write(b"hello\n")
    lease.close(eof=True)
    assert b"".join(c.data for c in ex.output()) == b"HELLO\n"
    assert ex.wait(HANG) == tjob.ExecResult(exit_code=4)
    ex = job.exec(["sh", "-c", "stty size; tty; echo $TERM"], tty=True, tty_size=(33, 99))
    out = b"".join(c.data for c in ex.output())
    assert out.startswith(b"33 99\r\n/dev/pts/") and out.endswith(b"xterm\r\n"), out
    assert ex.wait(HANG) == tjob.ExecResult(exit_code=0)
    with pytest.raises(tjob.TjobError, match="was not run with stdin"):
        job.exec(["true"]).stdin()  # none: it reads /dev/null
    with pytest.raises(tjob.InvalidSpec, match="window size"):
        job.exec(["true"], tty=True, tty_size=(0, 5000))
