"""The engine against the real kernel: real processes, namespaces and cgroup limits.

Here on the host's cgroup v1; the tests marked ``cgroup2`` also run, unchanged, on a real
cgroup v2 kernel in the VM of ``make test-cgroup2``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import select
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
from support.procs import all_ended, pidfds
from support.state import job_dirs

import tjob
from tjob import Engine, InvalidSpec, JobSpec, JobState, Limits, Stream
from tjob.cgroups import CgroupBackend

pytestmark = pytest.mark.root


def run(engine: Engine, argv: list[str], **kw: object) -> tjob.JobStatus:
    return engine.start(JobSpec(argv, **kw)).wait(30)  # type: ignore[arg-type]


def out(job: tjob.Job, streams: Stream = Stream.BOTH) -> bytes:
    return b"".join(c.data for c in job.output(follow=True, streams=streams))


# ------------------------------------------------------------------ status


@pytest.mark.cgroup2
def test_exit_code_is_reported_exactly(engine: Engine) -> None:
    st = run(engine, ["sh", "-c", "exit 3"])
    assert (st.state, st.exit_code, st.signal) == (JobState.EXITED, 3, None)
    assert st.started_at is not None and st.ended_at is not None
    assert st.created_at <= st.started_at <= st.ended_at


@pytest.mark.cgroup2
def test_signal_is_reported_exactly(engine: Engine) -> None:
    st = run(engine, ["sh", "-c", "kill -KILL $$"])
    assert (st.state, st.exit_code, st.signal, st.signal_name) == (
        JobState.EXITED,
        None,
        9,
        "SIGKILL",
    )
    assert st.shell_exit_code == 137


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["no-such-command-xyz"], "No such file"),
        (["/etc/passwd"], "Permission denied"),
        (["/nonexistent/dir/cmd"], "No such file"),
    ],
)
def test_command_that_cannot_start_fails_with_reason(
    engine: Engine, argv: list[str], reason: str
) -> None:
    job = engine.start(JobSpec(argv))
    st = job.status()
    assert st.state is JobState.FAILED
    assert st.error is not None and reason in st.error and argv[0] in st.error
    assert st.exit_code is None and st.pid is None
    assert list(job.output(follow=True)) == []


def test_bad_workdir_fails_with_reason(engine: Engine) -> None:
    st = engine.start(JobSpec(["true"], cwd="/no/such/dir")).status()
    assert st.state is JobState.FAILED and "chdir /no/such/dir" in (st.error or "")


@pytest.mark.cgroup2
def test_usage_is_reported_at_end(engine: Engine) -> None:
    st = run(engine, ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
    assert st.exit_code == 0
    assert st.usage.cpu_seconds is not None and st.usage.cpu_seconds > 0
    assert st.usage.memory_peak_bytes is not None and st.usage.memory_peak_bytes > 0
    assert st.limits.memory_mb == 20 and st.limits.cpu_percent == 20


# ------------------------------------------------------------------ isolation


def test_job_sees_only_its_own_processes(engine: Engine) -> None:
    job = engine.start(JobSpec(["ps", "-eo", "pid="]))
    st = job.wait(30)
    assert st.exit_code == 0
    assert sorted(int(p) for p in out(job).split()) == [1, 2]
    assert st.pid is not None and st.pid > 2  # the host's view of the command


def test_job_has_only_loopback_and_it_is_up(engine: Engine) -> None:
    job = engine.start(JobSpec(["sh", "-c", "ls /sys/class/net; cat /proc/net/route"]))
    assert job.wait(30).exit_code == 0
    lines = out(job).decode().splitlines()
    assert lines[0] == "lo"
    assert len(lines) == 2 and lines[1].startswith("Iface")  # no route to anywhere
    if shutil.which("ping") is None:
        pytest.skip("ping is not installed (.ci/run installs iputils-ping)")
    job = engine.start(JobSpec(["ping", "-c1", "-W2", "127.0.0.1"], user="nobody"))
    assert job.wait(30).exit_code == 0, out(job)


def test_hostname_is_the_short_id_and_host_unchanged(engine: Engine) -> None:
    before = os.uname().nodename
    # A root job (no user) has no capabilities either (issue 13): it cannot rename its host.
    job = engine.start(JobSpec(["sh", "-c", "hostname; hostname changed 2>/dev/null; hostname"]))
    assert job.wait(30).exit_code == 0
    assert out(job).decode().split() == [job.short_id, job.short_id]
    assert os.uname().nodename == before


def test_mounts_do_not_reach_the_host(engine: Engine, tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    # Root in the job has no CAP_SYS_ADMIN, and seccomp refuses mount(2) (issue 13).
    job = engine.start(JobSpec(["sh", "-c", f"mount -t tmpfs none {target} && touch {target}/x"]))
    assert job.wait(30).exit_code != 0, out(job)
    assert list(target.iterdir()) == []
    assert str(target) not in Path("/proc/self/mountinfo").read_text()


def test_ipc_namespace_is_private(engine: Engine) -> None:
    host = Path("/proc/self/ns/ipc").resolve() if False else os.readlink("/proc/self/ns/ipc")
    job = engine.start(JobSpec(["readlink", "/proc/self/ns/ipc"]))
    assert job.wait(30).exit_code == 0
    assert out(job).decode().strip() not in ("", host)


def test_environment_is_explicit(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TJOB_SECRET_OF_THE_HOST", "leak")
    job = engine.start(JobSpec(["env"], env={"GREETING": "hi"}))
    assert job.wait(30).exit_code == 0
    env = dict(line.split("=", 1) for line in out(job).decode().splitlines())
    assert "TJOB_SECRET_OF_THE_HOST" not in env
    assert env["GREETING"] == "hi" and env["PATH"].startswith("/usr/local/sbin")


def test_runs_as_user_with_groups_dropped_and_no_new_privs(engine: Engine) -> None:
    job = engine.start(
        JobSpec(
            ["sh", "-c", "id -u; id -G; grep NoNewPrivs /proc/self/status; pwd"],
            user="nobody",
            cwd="/tmp",
        )
    )
    assert job.wait(30).exit_code == 0
    uid, groups, nnp, cwd = out(job).decode().splitlines()
    assert uid == "65534" and groups.split() == ["65534"]
    assert nnp.split() == ["NoNewPrivs:", "1"] and cwd == "/tmp"


def test_missing_user_is_refused(engine: Engine) -> None:
    with pytest.raises(InvalidSpec, match="no such user"):
        engine.start(JobSpec(["true"], user="no-such-user-xyz"))


# ------------------------------------------------------------------ limits


@pytest.mark.cgroup2
def test_memory_hog_is_oom_killed_and_reported(engine: Engine) -> None:
    st = run(engine, ["tail", "/dev/zero"], limits=Limits(memory_mb=20))
    assert st.signal == signal.SIGKILL and st.oom_killed and st.state is JobState.EXITED
    assert st.usage.memory_peak_bytes is not None
    assert st.usage.memory_peak_bytes <= 20 * 1024 * 1024


@pytest.mark.cgroup2
def test_cpu_limit_holds_by_the_cgroups_own_accounting(engine: Engine) -> None:
    # Its output to /dev/null: a log written at the CPU's pace would make the share the disk's.
    job = engine.start(JobSpec(["sh", "-c", "exec yes > /dev/null"], limits=Limits(cpu_percent=20)))
    with pytest.raises(TimeoutError):
        job.wait(3)  # let it run 3 s
    st = job.stop(grace=0)
    assert st.started_at is not None and st.ended_at is not None
    share = (st.usage.cpu_seconds or 0) / (st.ended_at - st.started_at)
    assert 0.05 < share <= 0.25, share


@pytest.mark.cgroup2
def test_fork_bomb_is_held_at_pids_max_and_fully_killed(engine: Engine, cg: CgroupBackend) -> None:
    job = engine.start(
        JobSpec(
            ["sh", "-c", "f() { f | f & }; f; exec sleep 1000"],
            limits=Limits(pids=64, memory_mb=200),
        )
    )
    # The bomb hits the cap when the shell reports that it cannot fork: wait for that line.
    for chunk in job.output(streams=Stream.STDERR):
        if b"fork" in chunk.data.lower():
            break
    assert len(cg.pids(job.cgroup)) <= 64
    st = job.stop(grace=0)
    assert st.state is JobState.STOPPED and st.stopped
    assert job.id not in engine.diagnostics().cgroups


@pytest.mark.cgroup2
def test_double_forked_setsid_descendants_die_on_stop(engine: Engine, cg: CgroupBackend) -> None:
    job = engine.start(
        JobSpec(
            [
                "sh",
                "-c",
                "setsid sh -c 'sleep 1000 & echo ready; exec sleep 1001' & exec sleep 1002",
            ]
        )
    )
    next(iter(job.output()))  # "ready": the double-forked daemon exists
    pids = cg.pids(job.cgroup)
    assert len(pids) >= 3
    fds = [os.pidfd_open(p) for p in pids]
    try:
        st = job.stop(grace=1)
        assert st.state is JobState.STOPPED
        assert select.select(fds, [], [], 5)[0] and all(
            select.select([fd], [], [], 5)[0] for fd in fds
        )
    finally:
        for fd in fds:
            os.close(fd)
    assert job.id not in engine.diagnostics().cgroups


def test_direct_io_read_is_throttled(engine: Engine, tmp_path: Path) -> None:
    data = Path(tempfile.gettempdir()) / f"tjob-io-{os.getpid()}"  # jobs see it, read-only
    with open(data, "wb") as f:
        f.write(os.urandom(1 << 20) * 50)
    try:
        dev = os.stat(data).st_dev
        if engine.device != f"{os.major(dev)}:{os.minor(dev)}":
            pytest.skip(f"{data.parent} is not on the throttled device {engine.device}")
        st = run(
            engine,
            ["dd", f"if={data}", "of=/dev/null", "bs=1M", "iflag=direct"],
            limits=Limits(rbps=10 << 20),
        )
        assert st.exit_code == 0
        assert st.ended_at and st.started_at and st.ended_at - st.started_at >= 4.0
        assert (st.usage.io_read_bytes or 0) >= 50 << 20
    finally:
        data.unlink()


@pytest.mark.parametrize(
    "limits",
    [
        Limits(cpu_percent=0),
        Limits(memory_mb=-1),
        Limits(pids=10**9),
        Limits(rbps="20"),
        Limits(device="abc"),
        Limits(device="999:999"),  # type: ignore[arg-type]
        Limits(memory_mb=True),
    ],  # type: ignore[arg-type]
)
def test_invalid_limits_are_refused_before_anything_is_made(engine: Engine, limits: Limits) -> None:
    with pytest.raises(InvalidSpec):
        engine.start(JobSpec(["true"], limits=limits))
    assert engine.jobs() == [] and job_dirs(engine.jobs_dir) == set()


@pytest.mark.parametrize("argv", [[], [""], ["a\0b"], "true"])
def test_invalid_argv_is_refused(engine: Engine, argv: list[str]) -> None:
    with pytest.raises(InvalidSpec):
        engine.start(JobSpec(argv))


# ------------------------------------------------------------------ stop


def test_stop_forwards_sigterm_and_reports_the_commands_answer(engine: Engine) -> None:
    job = engine.start(JobSpec(["sh", "-c", "trap 'exit 7' TERM; echo ready; sleep 1000 & wait"]))
    next(iter(job.output()))
    st = job.stop(grace=10)
    assert (st.state, st.exit_code, st.stopped) == (JobState.STOPPED, 7, True)


@pytest.mark.cgroup2
def test_job_ignoring_sigterm_is_killed_after_the_grace(engine: Engine) -> None:
    job = engine.start(JobSpec(["sh", "-c", "trap '' TERM; echo ready; while :; do :; done"]))
    next(iter(job.output()))
    t = time.monotonic()
    st = job.stop(grace=0.5)
    assert time.monotonic() - t >= 0.5
    assert (st.state, st.signal) == (JobState.STOPPED, signal.SIGKILL)


def test_stop_is_idempotent_and_safe_on_finished_jobs(engine: Engine) -> None:
    job = engine.start(JobSpec(["true"]))
    first = job.wait(30)
    assert job.stop() == first and job.stop(grace=0) == first
    job = engine.start(JobSpec(["sleep", "1000"]))
    a = job.stop(grace=0)
    assert job.stop(grace=0) == a and a.signal == signal.SIGKILL


# ------------------------------------------------------------------ output


def test_output_is_binary_safe_and_keeps_streams_apart(engine: Engine) -> None:
    job = engine.start(JobSpec(["sh", "-c", r"printf 'a\377\000b'; printf 'E' >&2; printf 'c'"]))
    job.wait(30)
    # Two pipes have no common clock: only each stream's own order is defined.
    assert sorted(out(job)) == sorted(b"a\xff\x00bEc")
    assert out(job, Stream.STDOUT) == b"a\xff\x00bc"
    assert out(job, Stream.STDERR) == b"E"
    chunks = list(job.output(follow=False))
    assert {c.stream for c in chunks} == {Stream.STDOUT, Stream.STDERR}


def test_follow_ends_when_the_job_ends_while_reader_waits(engine: Engine) -> None:
    job = engine.start(JobSpec(["sh", "-c", "echo one; exec sleep 1000"]))
    it = job.output(follow=True)
    assert next(it).data == b"one\n"
    # The reader goes back to waiting while another thread ends the job, which writes nothing
    # more: the reader must see the end (either order of the race).
    stopper = threading.Thread(target=job.stop, kwargs={"grace": 0})
    stopper.start()
    assert list(it) == []
    stopper.join(30)
    assert job.status().state is JobState.STOPPED


def test_without_follow_output_ends_at_the_current_end(engine: Engine) -> None:
    job = engine.start(JobSpec(["sh", "-c", "echo first; exec sleep 1000"]))
    next(iter(job.output()))
    assert b"".join(c.data for c in job.output(follow=False)) == b"first\n"
    job.stop(grace=0)


def test_unread_output_never_blocks_the_job(engine: Engine) -> None:
    st = run(engine, ["head", "-c", str(20 << 20), "/dev/zero"])
    assert st.exit_code == 0


def test_hundred_readers_get_identical_bytes(engine: Engine, tmp_path: Path) -> None:
    data = tmp_path / "random"
    data.write_bytes(os.urandom(50 << 20))
    want = hashlib.sha256(data.read_bytes()).hexdigest()
    job = engine.start(JobSpec(["cat", str(data)], limits=Limits(memory_mb=64)))
    got: list[str] = []
    lock = threading.Lock()

    def read() -> None:
        h = hashlib.sha256()
        for c in job.output():
            h.update(c.data)
        with lock:
            got.append(h.hexdigest())

    threads = [threading.Thread(target=read) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert job.wait(30).exit_code == 0
    assert got == [want] * 100


def test_async_api(engine: Engine) -> None:
    async def main() -> tuple[bytes, tjob.JobStatus, tjob.JobStatus]:
        job = await engine.start_async(JobSpec(["sh", "-c", "echo hello; exit 4"]))
        data = b"".join([c.data async for c in job.output_async()])
        st = await job.wait_async(30)
        sleeper = await engine.start_async(JobSpec(["sleep", "1000"]))
        stopped = await sleeper.stop_async(grace=0)
        return data, st, stopped

    data, st, stopped = asyncio.run(main())
    assert data == b"hello\n" and st.exit_code == 4
    assert stopped.state is JobState.STOPPED and stopped.signal == signal.SIGKILL


def test_many_async_followers_share_one_watcher(engine: Engine) -> None:
    job = engine.start(JobSpec(["sh", "-c", "for i in $(seq 1 200); do echo $i; done"]))

    async def follow() -> bytes:
        return b"".join([c.data async for c in job.output_async()])

    async def main() -> list[bytes]:
        return await asyncio.gather(*(follow() for _ in range(300)))

    results = asyncio.run(main())
    want = "".join(f"{i}\n" for i in range(1, 201)).encode()
    assert results == [want] * 300
    assert threading.active_count() <= 4  # main, the one watcher, the blanks (+ pytest-timeout)


# ------------------------------------------------------------------ lifecycle


def _job_fds() -> set[str]:
    """This process's descriptors of the kinds a job uses: pidfds, inotify, unix sockets and
    pipes. (Not all of them: another test's gRPC threads may open TCP sockets any time.)"""
    with open("/proc/net/unix") as f:
        unix = {line.split()[6] for line in f.readlines()[1:]}
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            inode = target.removeprefix("socket:[").rstrip("]")
            if "pidfd" in target or "inotify" in target or "pipe:" in target or inode in unix:
                found.add(f"{fd} {target}")
    return found


@pytest.mark.cgroup2
@pytest.mark.timeout(180)  # 200 jobs one after another: ~59 s in the cgroup v2 lane's emulated VM
def test_nothing_leaks_after_200_jobs(engine: Engine) -> None:
    engine.start(JobSpec(["sleep", "1000"])).stop(grace=0)  # starts the watcher thread
    fds_before = _job_fds()
    threads_before = threading.active_count()
    for _ in range(200):
        job = engine.start(JobSpec(["true"]))
        assert job.wait(30).exit_code == 0
    # The status is written just before the supervisor exits: wait for the last one to go.
    with contextlib.suppress(ProcessLookupError):
        last = os.pidfd_open(json.loads((job.dir / "run.json").read_text())["supervisor_pid"])
        assert select.select([last], [], [], 10)[0]
        os.close(last)
    diag = engine.diagnostics()  # settles the last job, whose supervisor just exited
    assert diag.cgroups == frozenset()
    assert _job_fds() <= fds_before
    assert threading.active_count() == threads_before
    assert diag.zygote_pid is not None and diag.exit_watches == 0 and diag.watches == 0
    # Supervisors are reaped at once; the one child left is the spare for the next job.
    assert len(diag.supervisors) <= 1
    for pid in diag.supervisors:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state != "Z"


def test_the_supervisor_holds_the_jobs_mounts_so_init_exits_without_unmounting(
    engine: Engine,
) -> None:
    """The supervisor keeps the job's mount namespace open (the job's own, not the host's):
    its mounts are torn down when the supervisor exits, after the end is recorded, not in
    init's exit, which the end report waits for."""
    job = engine.start(JobSpec(["sleep", "30"]))
    sup = json.loads((job.dir / "run.json").read_text())["supervisor_pid"]
    assert job.pid is not None
    theirs = os.readlink(f"/proc/{job.pid}/ns/mnt")
    assert theirs != os.readlink("/proc/self/ns/mnt")
    held = {os.readlink(f"/proc/{sup}/fd/{fd}") for fd in os.listdir(f"/proc/{sup}/fd")}
    assert theirs in held
    job.stop(grace=0)


def test_ids_lookup_and_listing(engine: Engine) -> None:
    a = engine.start(JobSpec(["true"]))
    b = engine.start(JobSpec(["true"]))
    assert len(a.id) == 32 and int(a.id, 16) >= 0
    assert engine.get(a.id) is a and engine.get(a.id[:8]) is a
    assert [j.id for j in engine.jobs()] == [b.id, a.id]
    with pytest.raises(tjob.JobNotFound):
        engine.get("ffffffffffffffff")


def test_new_engine_finds_finished_and_running_jobs(tmp_path: Path, cgroup_parent: str) -> None:
    state = tmp_path / "state"
    with Engine(state, cgroup_parent=cgroup_parent) as first:
        done = first.start(JobSpec(["sh", "-c", "echo kept; exit 5"]))
        done.wait(30)
        running = first.start(JobSpec(["sh", "-c", "echo up; exec sleep 1000"]))
        next(iter(running.output()))
    with Engine(state, cgroup_parent=cgroup_parent) as second:
        again = second.get(done.id)
        assert again.status().exit_code == 5 and out(again) == b"kept\n"
        adopted = second.get(running.short_id)
        assert adopted.status().state is JobState.RUNNING
        st = adopted.stop(grace=0)
        assert st.state is JobState.STOPPED and st.signal == signal.SIGKILL
        assert out(adopted) == b"up\n"


def test_one_engine_per_state_dir(engine: Engine) -> None:
    with pytest.raises(tjob.StateDirInUse, match="another tjob engine"):
        Engine(engine.state_dir, cgroup_parent="unused")


def test_closed_engine_refuses_to_start(tmp_path: Path, cgroup_parent: str) -> None:
    eng = Engine(tmp_path / "s", cgroup_parent=cgroup_parent)
    eng.close()
    with pytest.raises(tjob.EngineClosed):
        eng.start(JobSpec(["true"]))


@pytest.mark.cgroup2
def test_cgroup_kill_alone_takes_every_process(engine: Engine, cg: CgroupBackend) -> None:
    """The path for a job adopted without its init: v1 freeze, SIGKILL each, thaw."""
    job = engine.start(
        JobSpec(["sh", "-c", "setsid sh -c 'sleep 1000 & echo ready; exec sleep 1001' & wait"])
    )
    next(iter(job.output()))
    with pidfds(cg.pids(job.cgroup)) as fds:
        assert len(fds) >= 3
        cg.kill(job.cgroup)
        assert all_ended(fds)
    st = job.wait(30)
    assert st.signal == signal.SIGKILL and not st.stopped
    assert job.id not in engine.diagnostics().cgroups


def test_command_starts_with_default_signal_dispositions(engine: Engine) -> None:
    """Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec: not for a job.
    (Signals 32 and 33 are glibc's own; an ignored one can be inherited from whoever started
    the engine, and glibc takes it back when it needs it.)"""
    job = engine.start(JobSpec(["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]))
    assert job.wait(30).exit_code == 0
    blocked, ignored = (int(v, 16) for v in out(job).split()[1::2])
    glibc = (1 << 31) | (1 << 32)
    assert blocked == 0 and ignored & ~glibc == 0, (hex(blocked), hex(ignored))


def test_kill_lifts_the_cpu_quota_so_the_dying_need_not_wait_for_it(
    engine: Engine, cg: CgroupBackend
) -> None:
    """A job that spent its quota would otherwise take up to a CFS period (100 ms) to die."""
    job = engine.start(JobSpec(["sleep", "1000"], limits=Limits(cpu_percent=20)))
    quota = Path("/sys/fs/cgroup/cpu") / cg.parent / job.cgroup / "cpu.cfs_quota_us"
    assert quota.read_text().strip() == "20000"
    cg.unthrottle(job.cgroup)
    assert quota.read_text().strip() == "-1"
    job.stop(grace=0)


def test_tmp_and_dev_shm_are_the_jobs_own(engine: Engine) -> None:
    host_file = Path("/tmp") / f"tjob-host-{os.getpid()}"
    left = Path("/tmp") / f"tjob-job-{os.getpid()}"  # what the job writes must not reach the host
    host_file.write_text("host")
    try:
        script = f"ls -A /tmp /dev/shm; echo job > {left}; cat {host_file}"
        job = engine.start(JobSpec(["sh", "-c", script]))
        st = job.wait(30)
        assert st.exit_code != 0  # the host's file is not there
        assert out(job, Stream.STDOUT).split() == [b"/dev/shm:", b"/tmp:"]
        assert not left.exists()
    finally:
        host_file.unlink()


def test_argv_and_environment_near_their_caps_start(engine: Engine) -> None:
    # Too big for one datagram between the processes: they travel in the job's files. (The
    # kernel caps each string at 128 KiB: E2BIG, reported as such.)
    args, env = ["a" * 50_000] * 4, {"BIG1": "v" * 100_000, "BIG2": "w" * 100_000}
    script = 'echo "$# ${#1} ${#4} ${#BIG1} ${#BIG2}"'
    job = engine.start(JobSpec(["sh", "-c", script, "sh", *args], env=env))
    assert job.wait(30).exit_code == 0, job.status().error
    assert out(job) == b"4 50000 50000 100000 100000\n"


def test_state_dir_under_tmp_works(cgroup_parent: str) -> None:
    # A job's own /tmp is a fresh tmpfs: nothing of the job's start may be read through it.
    state = Path(tempfile.mkdtemp(prefix="tjob-state-", dir="/tmp"))
    try:
        with Engine(state, cgroup_parent=cgroup_parent) as eng:
            job = eng.start(JobSpec(["echo", "from under /tmp"]))
            assert job.wait(30).exit_code == 0 and out(job) == b"from under /tmp\n"
    finally:
        shutil.rmtree(state)


def test_end_after_the_engine_closed_is_recorded_by_the_supervisor(
    tmp_path: Path, cgroup_parent: str, gate: Path
) -> None:
    state = tmp_path / "state"
    with Engine(state, cgroup_parent=cgroup_parent) as first:
        job = first.start(JobSpec(["sh", "-c", f"cat {gate}; echo released; exit 7"]))
    # The engine and its fork server are gone: the supervisor records the end itself.
    with open(gate, "w"):
        pass
    with Engine(state, cgroup_parent=cgroup_parent) as second:
        st = second.get(job.id).wait(30)
        assert (st.state, st.exit_code) == (JobState.EXITED, 7)
        assert st.usage.cpu_seconds is not None  # read from its cgroup before removing it
        assert out(second.get(job.id)) == b"released\n"


def _log_fds(job: tjob.Job) -> int:
    """How many of this process's descriptors are open on the job's output.log."""
    path = str(job.dir / "output.log")
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd) == path
    return count


def test_followers_of_one_job_share_one_descriptor(engine: Engine) -> None:
    job = engine.start(JobSpec(["sh", "-c", "echo one; echo two"]))
    job.wait(30)
    with contextlib.ExitStack() as stack:
        followers = [stack.enter_context(job.follower()) for _ in range(50)]
        assert _log_fds(job) == 1  # fifty readers, one descriptor: reads are positional
        texts = {b"".join(c.data for c in f.take(1 << 20) or []) for f in followers}
        assert texts == {b"one\ntwo\n"}  # each reads all of it at its own offset
    assert _log_fds(job) == 0  # the last one out closes it
