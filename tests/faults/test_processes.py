"""Faults of processes and clocks: a stalled or killed launcher, many jobs ending while no
engine runs, a deleted lock file, a shutdown with jobs ignoring SIGTERM, a wall-clock step."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from faultkit import check_nothing_unlisted, stop_all

from tjob import Engine, JobSpec, JobState, launcher_client
from tjob.adopt import NEVER_STARTED
from tjob.errors import StateDirInUse
from tjob.jobdir import END_FILE
from tjob.procs import readable, supervisors

pytestmark = pytest.mark.root


def test_a_start_past_the_timeout_is_not_reported_lost(
    tmp_path: Path, cgroup_parent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launcher_client, "START_TIMEOUT", 0.5)
    eng = Engine(tmp_path / "state", cgroup_parent=cgroup_parent)
    try:
        eng.start(JobSpec(["true"])).wait(30)  # the launcher is up
        launcher = eng._launcher.pid
        assert launcher is not None
        os.kill(launcher, signal.SIGSTOP)
        try:
            job = eng.start(JobSpec(["sh", "-c", "echo late; exit 4"]))
            st = job.status()
            assert (st.state, st.pid, st.state.finished) == (JobState.STARTING, None, False)
            kinds = [e.kind for e in eng.events.recent() if e.id == job.id]
            assert kinds == ["starting"]  # not "started": it has not been
            # A follower of a starting job waits for its start, then streams what it writes.
            got: list[bytes] = []
            follower = threading.Thread(
                target=lambda: got.extend(c.data for c in job.output(follow=True))
            )
            follower.start()
            held = eng.start(JobSpec(["sleep", "1000"]))
            stopper = threading.Thread(target=held.stop, args=(0,))
            stopper.start()  # stopped while it is still starting
        finally:
            os.kill(launcher, signal.SIGCONT)
        st = job.wait(30)
        assert (st.state, st.exit_code) == (JobState.EXITED, 4)  # the truth, once it came
        follower.join(30)
        assert got == [b"late\n"]
        stopper.join(60)
        assert held.wait(30).state is JobState.STOPPED
        check_nothing_unlisted(eng, cgroup_parent)  # every end step has run after this
        kinds = [e.kind for e in eng.events.recent() if e.id == job.id]
        assert kinds == ["starting", "started", "exited"]
    finally:
        stop_all(eng)
        eng.close()


_DIES_STARTING = """
import os, signal, sys
from tjob import Engine, JobSpec, JobState, launcher_client
launcher_client.START_TIMEOUT = 0.5
eng = Engine(sys.argv[1], cgroup_parent=sys.argv[2])
eng.start(JobSpec(["true"])).wait(30)
os.kill(eng._launcher.pid, signal.SIGSTOP)
job = eng.start(JobSpec(["sh", "-c", "exit 4"]))
assert job.status().state is JobState.STARTING
print(job.id, eng._launcher.pid, flush=True)
os._exit(9)  # as a kill -9 would: the stalled launcher stays, holding the start
"""


def test_a_start_in_flight_when_the_engine_died_is_resolved_and_never_runs_after(
    tmp_path: Path, cgroup_parent: str
) -> None:
    state = tmp_path / "state"
    out = subprocess.run(
        [sys.executable, "-c", _DIES_STARTING, str(state), cgroup_parent],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 9, out.stderr
    job_id, launcher = out.stdout.split()
    old = os.pidfd_open(int(launcher))  # the stalled launcher of the dead engine
    try:
        eng = Engine(state, cgroup_parent=cgroup_parent)
        try:
            assert readable(old)  # ended by the new engine: it can hand nothing over now
            st = eng.get(job_id).status()
            assert (st.state, st.error) == (JobState.FAILED, NEVER_STARTED)
            assert st.started_at is None and list(eng.get(job_id).output(follow=False)) == []
            assert job_id not in supervisors()
            check_nothing_unlisted(eng, cgroup_parent)
        finally:
            stop_all(eng)
            eng.close()
    finally:
        os.close(old)


_HANDED_OVER_STOPPED = """
import os, signal, sys
from tjob import Engine, JobSpec, JobState, launcher_client
from tjob.procs import children
launcher_client.START_TIMEOUT = 0.5
eng = Engine(sys.argv[1], cgroup_parent=sys.argv[2])
eng.start(JobSpec(["true"])).wait(30)
zygote = eng.diagnostics().zygote_pid  # settled: its children are spares only
os.kill(zygote, signal.SIGSTOP)  # a spare asked for and not forked yet stays so
spares = children(zygote)
for pid in spares:
    os.kill(pid, signal.SIGSTOP)  # before it has its job: without its mark
job = eng.start(JobSpec(["printf", "<%s>", "ran"]))  # handed to a stopped spare
assert job.status().state is JobState.STARTING
print(job.id, zygote, *spares, flush=True)
os._exit(9)  # its launcher sees the end, and exits
"""


def test_a_job_handed_to_a_supervisor_without_its_mark_yet_never_runs_after_its_end(
    tmp_path: Path, cgroup_parent: str
) -> None:
    """The launcher hands a job to a spare and dies (with its engine) before the spare took
    the job's mark: the next engine, finding no supervisor, records the job as never started;
    the spare, going on, sees that end and gives the job up (the job directory's lock)."""
    state = tmp_path / "state"
    # The dead engine's processes in a cgroup of their own, to wait for every one of them.
    v1 = Path("/sys/fs/cgroup/pids")
    cg = (v1 if v1.is_dir() else Path("/sys/fs/cgroup")) / f"{cgroup_parent}-procs"
    cg.mkdir()
    try:
        out = subprocess.run(
            ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh", sys.executable,
             "-c", _HANDED_OVER_STOPPED, str(state), cgroup_parent],
            check=False, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 9, out.stderr
        job_id, zygote, *spares = out.stdout.split()
        zfd = os.pidfd_open(int(zygote))  # stopped: still there
        eng = Engine(state, cgroup_parent=cgroup_parent)
        try:
            st = eng.get(job_id).status()
            assert (st.state, st.error) == (JobState.FAILED, NEVER_STARTED)
            for pid in (zygote, *spares):
                os.kill(int(pid), signal.SIGCONT)
            assert readable(zfd, 30)  # it forked what it was asked for, saw the end, exited
            for pid in (cg / "cgroup.procs").read_text().split():  # the spares, their inits
                with contextlib.suppress(ProcessLookupError):
                    fd = os.pidfd_open(int(pid))
                    try:
                        assert readable(fd, 30), f"process {pid} of the dead engine stays"
                    finally:
                        os.close(fd)
            jdir = state / "jobs" / job_id
            assert list(eng.get(job_id).output(follow=False)) == []  # it never ran
            assert b"<ran>" not in (jdir / "output.log").read_bytes()
            assert not (jdir / "run.json").exists()
            assert not (jdir / END_FILE).exists()  # given up: not a start that failed
            assert json.loads((jdir / "status.json").read_bytes())["error"] == NEVER_STARTED
            check_nothing_unlisted(eng, cgroup_parent)
        finally:
            os.close(zfd)
            stop_all(eng)
            eng.close()
    finally:
        cg.rmdir()


def test_a_launcher_killed_mid_start_is_named_and_the_job_readable(
    tmp_path: Path, cgroup_parent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launcher_client, "START_TIMEOUT", 0.5)
    eng = Engine(tmp_path / "state", cgroup_parent=cgroup_parent)
    try:
        eng.start(JobSpec(["true"])).wait(30)
        launcher = eng._launcher.pid
        assert launcher is not None
        os.kill(launcher, signal.SIGSTOP)
        job = eng.start(JobSpec(["true"]))  # sent, unanswered: starting
        os.kill(launcher, signal.SIGKILL)
        st = job.wait(30)
        assert st.state is JobState.LOST and st.error == "the launcher died before the job started"
        assert list(job.output(follow=True)) == []  # an empty log, not an error
        assert eng.start(JobSpec(["true"])).wait(30).state is JobState.EXITED  # a new launcher
        check_nothing_unlisted(eng, cgroup_parent)
    finally:
        stop_all(eng)
        eng.close()


def _rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def _interpreters() -> list[int]:
    """Processes recording an end in Python (the model this replaces)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if b"record_main()" in cmdline and b"zygote" not in cmdline:
                found.append(int(entry))
    return found


N_ENDS = int(os.environ.get("TJOB_FAULT_ENDS", "100"))  # the 500: TJOB_FAULT_ENDS=500


def test_many_ends_without_an_engine_cost_no_process_each(
    tmp_path: Path, cgroup_parent: str
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    hold = os.open(fifo, os.O_RDWR)  # the jobs' opens do not block; closing it ends them all
    state = tmp_path / "state"
    eng = Engine(state, cgroup_parent=cgroup_parent)
    script = f"read x < {fifo}; exit 3"
    ids = [eng.start(JobSpec(["sh", "-c", script])).id for _ in range(N_ENDS)]
    eng.close()
    sups = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_sup(int(p), ids)]
    assert len(sups) == N_ENDS
    before = _rss_kib(sups)
    os.close(hold)  # every job ends now, with no engine and no launcher
    peak_extra = 0
    deadline = time.monotonic() + 60
    while any(os.path.exists(f"/proc/{p}") for p in sups) and time.monotonic() < deadline:
        peak_extra = max(peak_extra, len(_interpreters()))
        time.sleep(0.02)
    assert peak_extra == 0  # no interpreter (about 4 MiB RSS each was the cost)
    assert not any(os.path.exists(f"/proc/{p}") for p in sups)
    assert all((state / "jobs" / i / END_FILE).exists() for i in ids)
    print(f"{N_ENDS} supervisors held {before} KiB in all; the ends started no process")
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        for i in ids:
            st = eng.get(i).status()
            assert (st.state, st.exit_code) == (JobState.EXITED, 3)
            assert not (state / "jobs" / i / END_FILE).exists()
        assert eng.diagnostics().cgroups == frozenset()
    finally:
        eng.close()


def _is_sup(pid: int, ids: list[str]) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return False
    return words[:2] == [b"tjob-shim", b"supervisor"] and words[2].decode() in ids


def test_deleting_the_lock_file_does_not_let_a_second_engine_in(
    tmp_path: Path, cgroup_parent: str
) -> None:
    eng = Engine(tmp_path / "state", cgroup_parent=cgroup_parent)
    try:
        (tmp_path / "state" / "lock").unlink()
        with pytest.raises(StateDirInUse):
            Engine(tmp_path / "state", cgroup_parent=cgroup_parent)
    finally:
        eng.close()


def test_stop_on_exit_stops_all_jobs_within_one_grace(tmp_path: Path, cgroup_parent: str) -> None:
    eng = Engine(tmp_path / "state", cgroup_parent=cgroup_parent)
    jobs = [eng.start(JobSpec(["sh", "-c", "trap '' TERM; sleep 1000"])) for _ in range(4)]
    t0 = time.monotonic()
    eng.close(stop_jobs=True, grace=1.0)
    took = time.monotonic() - t0
    assert took < 3.5, took  # one after another: at least 4 s
    assert all(j.status().state is JobState.STOPPED for j in jobs)


def test_a_wall_clock_step_never_prunes_a_recent_job(
    tmp_path: Path, cgroup_parent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    eng = Engine(tmp_path / "state", cgroup_parent=cgroup_parent)
    try:
        job = eng.start(JobSpec(["true"]))
        job.wait(30)
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 8 * 86400)  # the clock jumps ahead
        assert eng.prune(7 * 86400) == []
        monkeypatch.setattr(time, "time", lambda: real() - 86400)  # and back: "in the future"
        assert eng.prune(0) == []
        monkeypatch.undo()
        assert eng.prune(0) == [job.id]
    finally:
        eng.close()


def test_a_run_past_the_start_timeout_answers_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the API: Run answers STARTING (not RUNNING with no pid, not LOST), List can filter
    on it, Events say "starting" then "started", and Wait gives the truth once it came."""
    from apiharness import HANG, Harness

    from tjob.api.tjob.v1 import tjob_pb2 as pb

    monkeypatch.setattr(launcher_client, "START_TIMEOUT", 0.5)
    with Harness(tmp_path) as h:
        assert h.engine is not None
        stub = h.stub()
        assert stub.Wait(pb.JobRef(id=h.run(["true"]).id), timeout=HANG).exit_code == 0
        launcher = h.engine._launcher.pid
        assert launcher is not None
        os.kill(launcher, signal.SIGSTOP)
        try:
            st = stub.Run(pb.RunRequest(argv=["sh", "-c", "exit 4"]), timeout=HANG)
            assert st.state == pb.JOB_STATE_STARTING and not st.HasField("pid")
            listed = stub.List(pb.ListRequest(filters=["state=starting"]), timeout=HANG)
            assert [j.id for j in listed.jobs] == [st.id]
        finally:
            os.kill(launcher, signal.SIGCONT)
        end = stub.Wait(pb.JobRef(id=st.id), timeout=HANG)
        assert (end.state, end.exit_code) == (pb.JOB_STATE_EXITED, 4)
        kinds = [e.kind for e in h.engine.events.recent() if e.id == st.id]
        assert kinds[:2] == ["starting", "started"]
