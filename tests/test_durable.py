"""Durable state: records in SQLite, output files, running jobs re-adopted after the engine's
process is killed, bounded output and retention."""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.state import job_dirs

from tjob import Engine, JobSpec, JobState, Stream
from tjob.logstore import LogReader
from tjob.watch import Hub

pytestmark = pytest.mark.root

HOLDER = textwrap.dedent(
    """
    import sys, tjob
    eng = tjob.Engine(sys.argv[1], cgroup_parent=sys.argv[2])
    for argv in sys.argv[3:]:
        print(eng.start(tjob.JobSpec(["sh", "-c", argv])).id, flush=True)
    sys.stdin.read()  # until killed
    """
)


def start_holder(
    state: Path, parent: str, *scripts: str
) -> tuple[subprocess.Popen[str], list[str]]:
    """An engine in another process that starts jobs, then waits to be killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state), parent, *scripts],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ids = [proc.stdout.readline().strip() for _ in scripts]
    return proc, ids


def test_kill_9_of_the_engine_process_loses_nothing(tmp_path: Path, cgroup_parent: str) -> None:
    state = tmp_path / "state"
    # A job writing a known byte stream slowly enough to span the kill, one that ends while
    # no engine is running, and one that already ended.
    proc, (writer, ender, done) = start_holder(
        state,
        cgroup_parent,
        "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done; read x; exit 9",
        "read x; exit 4",
        "echo early; exit 2",
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # `read x` got EOF from /dev/null at once: `ender` ends while no engine runs.
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        assert {j.id for j in eng.jobs()} == {writer, ender, done}
        assert eng.get(done).wait(30).exit_code == 2
        assert eng.get(ender).wait(30).exit_code == 4
        job = eng.get(writer)
        first = next(iter(job.output()))
        got_before = first.data
        # Resume where the first reader stopped, as a client reconnecting would.
        rest = b"".join(c.data for c in job.output(skip=len(got_before)))
        st = job.wait(30)
        assert st.exit_code == 9
        want = "".join(f"line-{i}\n" for i in range(3000)).encode()
        assert hashlib.sha256(got_before + rest).digest() == hashlib.sha256(want).digest()


def test_running_job_is_readopted_and_stopped_after_kill_9(
    tmp_path: Path, cgroup_parent: str
) -> None:
    state = tmp_path / "state"
    proc, (job_id,) = start_holder(state, cgroup_parent, "echo up; exec sleep 1000")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        job = eng.get(job_id[:8])
        assert job.status().state is JobState.RUNNING
        assert next(iter(job.output())).data == b"up\n"
        st = job.stop(grace=0)
        assert st.state is JobState.STOPPED and st.signal == signal.SIGKILL
        assert job_id not in eng.diagnostics().cgroups
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        assert eng.get(job_id).status() == st  # recorded, not re-derived


def test_job_whose_supervisor_died_is_lost_and_cleaned_up(
    tmp_path: Path, cgroup_parent: str
) -> None:
    state = tmp_path / "state"
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        job = eng.start(JobSpec(["sleep", "1000"]))
        assert job.pid is not None
        command = os.pidfd_open(job.pid)
        run = json.loads((job.dir / "run.json").read_text())
        os.kill(run["supervisor_pid"], signal.SIGKILL)
        st = job.wait(30)
        assert st.state is JobState.LOST and "supervisor" in (st.error or "")
        assert job.id not in eng.diagnostics().cgroups
        # init died with its supervisor (PDEATHSIG), taking the command with it.
        assert select.select([command], [], [], 10)[0]
        os.close(command)


def test_a_lost_job_is_recorded_by_the_engine_with_nobody_reading_it(
    tmp_path: Path, cgroup_parent: str
) -> None:
    """The engine notices a supervisor's end by itself: end frame, status.json and the store
    row are all written before any reader asks (reading a job changes nothing)."""
    with Engine(tmp_path / "state", cgroup_parent=cgroup_parent) as eng:
        job = eng.start(JobSpec(["sleep", "1000"]))
        run = json.loads((job.dir / "run.json").read_text())
        watch = Hub()
        try:
            with watch.subscribe(str(job.dir)) as w:
                os.kill(run["supervisor_pid"], signal.SIGKILL)
                while not (job.dir / "status.json").exists():
                    w.clear()
                    if not (job.dir / "status.json").exists():
                        assert w.wait(30), "no end recorded"
        finally:
            watch.close()
        with LogReader(str(job.dir / "output.log")) as log:
            while log.read():
                pass
            assert log.ended and b'"lost"' in (log.end_payload or b"")
        # The row comes last in the same step, a moment after the file: the settling
        # diagnostics() waits for a step under way.
        assert job.id not in eng.diagnostics().cgroups
        db = sqlite3.connect(eng.state_dir / "jobs.db")
        (row,) = db.execute("SELECT status FROM jobs WHERE id = ?", (job.id,)).fetchall()
        db.close()
        assert json.loads(row[0])["state"] == "lost"
        assert job.status().state is JobState.LOST


def test_output_cap_keeps_the_job_running_and_marks_the_cut(
    tmp_path: Path, cgroup_parent: str
) -> None:
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent, output_cap=1 << 20) as eng:
        job = eng.start(JobSpec(["sh", "-c", "head -c 5000000 /dev/zero; echo after >&2; exit 6"]))
        chunks = list(job.output())
        st = job.wait(30)
        assert st.exit_code == 6 and st.output_truncated and "cap" in (st.error or "")
        data = b"".join(c.data for c in chunks)
        assert 0 < len(data) < 1 << 20 and set(data) == {0}
        assert chunks[-1].truncated and not any(c.truncated for c in chunks[:-1])
        # The cap bounds output; the end frame (the final status) comes on top.
        assert (job.dir / "output.log").stat().st_size <= (1 << 20) + 4096


def test_full_disk_cuts_output_but_the_job_and_engine_carry_on(
    tmp_path: Path, cgroup_parent: str
) -> None:
    state = tmp_path / "small"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)], check=True)
    try:
        with Engine(state, cgroup_parent=cgroup_parent) as eng:
            job = eng.start(JobSpec(["sh", "-c", "head -c 8000000 /dev/zero; exit 3"]))
            st = job.wait(30)
            assert st.exit_code == 3 and st.output_truncated
            assert "No space left" in (st.error or "")
            assert list(job.output())[-1].truncated
            eng.remove(job.id)  # frees the space
            assert eng.start(JobSpec(["echo", "ok"])).wait(30).exit_code == 0
    finally:
        subprocess.run(["umount", "-l", str(state)], check=True)


def test_remove_and_retention(tmp_path: Path, cgroup_parent: str) -> None:
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent) as eng:
        old = eng.start(JobSpec(["true"]))
        old.wait(30)
        running = eng.start(JobSpec(["sleep", "1000"]))
        with pytest.raises(Exception, match="still running"):
            eng.remove(running.id)
        assert eng.prune(older_than=3600) == []
        assert eng.prune(older_than=0) == [old.id]
        assert not old.dir.exists()
        assert [j.id for j in eng.jobs()] == [running.id]
        running.stop(grace=0)
        eng.remove(running.short_id)
        assert eng.jobs() == []
        db = sqlite3.connect(eng.state_dir / "jobs.db")
        assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


def test_state_dir_is_private(engine: Engine) -> None:
    job = engine.start(JobSpec(["ls", str(engine.state_dir)], user="nobody"))
    st = job.wait(30)
    assert st.exit_code != 0
    assert b"Permission denied" in b"".join(c.data for c in job.output(streams=Stream.STDERR))
    assert (engine.state_dir.stat().st_mode & 0o777) == 0o700
    assert ((engine.state_dir / "jobs.db").stat().st_mode & 0o777) == 0o600


def test_burst_survives_kill_9_with_no_lost_or_duplicated_job(
    tmp_path: Path, cgroup_parent: str
) -> None:
    state = tmp_path / "state"
    script = textwrap.dedent(
        """
        import sys, tjob
        eng = tjob.Engine(sys.argv[1], cgroup_parent=sys.argv[2])
        for i in range(1000):
            job = eng.start(tjob.JobSpec(["true"]))
            print(job.id, flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(state), cgroup_parent], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acked = []
    for line in proc.stdout:
        acked.append(line.strip())
        if len(acked) == 100:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    acked += [line.strip() for line in proc.stdout]
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        jobs = eng.jobs()
        ids = [j.id for j in jobs]
        assert len(ids) == len(set(ids))
        assert set(acked) <= set(ids)  # every job a caller was told about is there
        for job in jobs:
            st = job.wait(30)
            assert st.state in (JobState.EXITED, JobState.LOST), st
            if job.id in acked:
                assert st.state is JobState.EXITED and st.exit_code == 0
        assert eng.diagnostics().cgroups == frozenset()
    assert len(job_dirs(state / "jobs")) == len(ids)


def test_a_start_repeated_with_its_request_id_returns_the_same_job(
    tmp_path: Path, cgroup_parent: str
) -> None:
    state = tmp_path / "state"
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        first = eng.start(JobSpec(["true"], owner="alice", request_id="r1"))
        again = eng.start(JobSpec(["true"], owner="alice", request_id="r1"))
        other = eng.start(JobSpec(["true"], owner="bob", request_id="r1"))  # ids are per owner
        assert again is first and other.id != first.id
        assert len(eng.jobs()) == 2
    finally:
        eng.close()
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        assert eng.start(JobSpec(["true"], owner="alice", request_id="r1")).id == first.id
        eng.get(first.id).wait(30)
        eng.remove(first.id)  # its request id goes with it
        assert eng.start(JobSpec(["true"], owner="alice", request_id="r1")).id != first.id
    finally:
        eng.close()


def test_an_acknowledged_start_is_on_the_disk(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before start() returns, the engine has fsynced the job's store record (the WAL), its
    spec.json, its directory and the jobs directory; not run.json (where living processes are,
    which a power cut leaves none of: an engine after one finds the job lost)."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    job = engine.start(JobSpec(["sleep", "30"]))
    jdir, jobs = str(job.dir), str(job.dir.parent)
    for path in (str(engine.state_dir / "jobs.db-wal"), f"{jdir}/spec.json", jdir, jobs):
        assert path in synced, (path, synced)
    assert f"{jdir}/run.json" not in synced
    job.stop(grace=0)


def test_a_job_with_no_files_from_before_a_reboot_is_lost_not_never_started(
    tmp_path: Path, cgroup_parent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a power cut, a job whose run.json and output.log never reached the disk may well
    have run: it is recorded lost. (Without a reboot, a missing output.log proves that no
    supervisor took it: tests/faults, never started.)"""
    state = tmp_path / "state"
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        job = eng.start(JobSpec(["sleep", "1000"]))
        sup = json.loads((job.dir / "run.json").read_text())["supervisor_pid"]
    fd = os.pidfd_open(sup)
    os.kill(sup, signal.SIGKILL)  # as a power cut: every process gone (init follows it)
    assert select.select([fd], [], [], 30)[0]
    os.close(fd)
    for name in ("run.json", "output.log"):
        (job.dir / name).unlink()  # never on the disk
    monkeypatch.setattr("tjob.adopt.boot_time", time.time)  # booted since
    with Engine(state, cgroup_parent=cgroup_parent) as eng:
        st = eng.get(job.id).status()
        assert st.state is JobState.LOST, st
