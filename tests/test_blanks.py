"""Blank job directories (blanks.py): a start and its end allocate and free no inode."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.state import job_dirs

from tjob import Engine, JobSpec, JobState, blanks
from tjob.jobdir import (
    EXEC_FILE,
    LOG_FILE,
    RESERVE_FILE,
    RUN_FILE,
    SPEC_FILE,
    STATUS_FILE,
    TMP_SUFFIX,
)
from tjob.statedir import StateDir

pytestmark = pytest.mark.root


def _inodes(jobs_dir: Path) -> dict[str, dict[str, int]]:
    """Each blank's inode numbers: its own (key ``.``) and its files'."""
    out = {}
    for name in os.listdir(jobs_dir):
        if name.startswith(blanks.PREFIX):
            d = jobs_dir / name
            out[name] = {".": d.stat().st_ino} | {f: (d / f).stat().st_ino for f in os.listdir(d)}
    return out


def test_a_job_is_a_blank_renamed_and_its_files_are_the_blanks(
    tmp_path: Path, cgroup_parent: str
) -> None:
    with Engine(tmp_path / "state", cgroup_parent=cgroup_parent) as eng:
        made = _inodes(eng.jobs_dir)
        assert len(made) == blanks.COUNT  # made with the engine: the first starts find one
        job = eng.start(JobSpec(["sh", "-c", "echo hi"]))
        st = job.wait(30)
        assert (st.state, st.exit_code) == (JobState.EXITED, 0)
        assert b"".join(c.data for c in job.output()) == b"hi\n"
        (blank,) = [b for b in made.values() if b["."] == job.dir.stat().st_ino]
        assert {f: (job.dir / f).stat().st_ino for f in os.listdir(job.dir)} == {
            EXEC_FILE: blank[EXEC_FILE],
            SPEC_FILE: blank[SPEC_FILE],
            LOG_FILE: blank[LOG_FILE],  # the supervisor wrote into the empty log
            RUN_FILE: blank[RUN_FILE + TMP_SUFFIX],  # its temporary, renamed
            STATUS_FILE: blank[RESERVE_FILE],  # the end wrote into the reserve
        }
        assert job.id not in eng.diagnostics().cgroups  # settled: its supervisor is gone...
        status = (job.dir / STATUS_FILE).stat()
        assert status.st_blocks * 512 <= -(-status.st_size // 4096) * 4096  # ...and gave back
        # the reserve's blocks past the status before it went
        assert eng._blanks.wait_full(30)  # made again in the background
        assert len(_inodes(eng.jobs_dir)) == blanks.COUNT
        assert job_dirs(eng.jobs_dir) == {job.id}


def test_more_starts_than_blanks_make_their_own_directories(
    tmp_path: Path, cgroup_parent: str
) -> None:
    with Engine(tmp_path / "state", cgroup_parent=cgroup_parent) as eng:
        eng._blanks.close()  # none made again: the third start finds none
        jobs = [eng.start(JobSpec(["true"])) for _ in range(blanks.COUNT + 1)]
        assert [j.wait(30).exit_code for j in jobs] == [0] * len(jobs)
        assert not _inodes(eng.jobs_dir)
        assert job_dirs(eng.jobs_dir) == {j.id for j in jobs}


def test_blanks_left_behind_are_taken_if_whole_and_never_listed(
    tmp_path: Path, cgroup_parent: str
) -> None:
    with Engine(tmp_path / "state", cgroup_parent=cgroup_parent) as eng:
        jobs_dir = eng.jobs_dir
        left = _inodes(jobs_dir)
    broken = jobs_dir / f"{blanks.PREFIX}cut-short"
    broken.mkdir()
    (broken / EXEC_FILE).write_bytes(b"")  # its other files never made: an engine died
    with Engine(tmp_path / "state", cgroup_parent=cgroup_parent) as eng:
        assert _inodes(jobs_dir) == left  # the whole ones kept, the broken one removed
        assert eng.jobs() == []


def test_the_jobs_directory_spreads_its_directories_over_ext4s_groups(tmp_path: Path) -> None:
    if subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True,
                      check=True).stdout.strip() != "ext2/ext3":  # fmt: skip
        pytest.skip("the flag is ext4's (stat -f names ext4 ext2/ext3)")
    jobs = tmp_path / "state" / "jobs"
    StateDir(tmp_path / "state").release()
    out = subprocess.run(["lsattr", "-d", str(jobs)], capture_output=True, text=True, check=True)
    assert "T" in out.stdout.split()[0]  # chattr +T: Orlov spreads what is made in it
    StateDir(tmp_path / "state").release()  # set once, kept
