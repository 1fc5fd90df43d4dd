"""What every fault test needs: a state directory with jobs in each state, made by a real
engine, and the checks that a later engine over it is whole."""

from __future__ import annotations

import os
import select
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from support.state import job_dirs

from tjob import Engine, JobSpec, JobState
from tjob.procs import supervisors


@dataclass
class Jobs:
    """Ids of a state dir's jobs: one exited 4, one running (sleep), one victim to damage."""

    exited: str
    running: str
    victim: str


def make_state(state: Path, parent: str, victim: list[str]) -> Jobs:
    """An engine starts three jobs and closes, leaving the running ones running."""
    eng = Engine(state, cgroup_parent=parent)
    try:
        done = eng.start(JobSpec(["sh", "-c", "echo out; exit 4"], owner="alice"))
        assert done.wait(30).exit_code == 4
        running = eng.start(JobSpec(["sleep", "1000"], owner="bob"))
        vic = eng.start(JobSpec(victim, owner="carol"))
        if victim[0] != "sleep":
            vic.wait(30)
        return Jobs(done.id, running.id, vic.id)
    finally:
        eng.close()


def unfinish(state: Path, job_id: str) -> None:
    """Make the store forget a job's end, as if it ended while no engine ran."""
    db = sqlite3.connect(state / "jobs.db")
    db.execute("UPDATE jobs SET status = NULL, ended_at = NULL WHERE id = ?", (job_id,))
    db.commit()
    db.close()


def check_intact(eng: Engine, jobs: Jobs) -> None:
    """The undamaged jobs are whole and controllable: the exited one reads back, the running
    one is listed, running and stops."""
    ids = {j.id for j in eng.jobs()}
    assert {jobs.exited, jobs.running} <= ids
    ex = eng.get(jobs.exited).status()
    assert (ex.state, ex.exit_code, ex.owner) == (JobState.EXITED, 4, "alice")
    assert b"".join(c.data for c in eng.get(jobs.exited).output(follow=False)) == b"out\n"
    run = eng.get(jobs.running)
    assert run.status().state is JobState.RUNNING and run.owner == "bob"
    assert run.stop(grace=0).state is JobState.STOPPED


def check_nothing_unlisted(eng: Engine, parent: str) -> None:
    """Every live supervisor and job cgroup belongs to a listed running job."""
    running = {j.id for j in eng.jobs() if j.status().state is JobState.RUNNING}
    ours = _job_ids(eng)
    for job_id, pid in supervisors().items():
        if job_id in ours and job_id not in running:
            _exits(pid)  # the supervisor of an ended job is on its way out: it must get there
    assert set(eng.diagnostics().cgroups) <= running


def _exits(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], 10)[0], f"supervisor {pid} of an ended job still runs"
    finally:
        os.close(fd)


def _job_ids(eng: Engine) -> set[str]:
    return job_dirs(eng.jobs_dir)


def stop_all(eng: Engine) -> None:
    for job in eng.jobs():
        if job.status().state is JobState.RUNNING:
            job.stop(grace=0)
