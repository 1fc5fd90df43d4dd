"""A state directory on a real ext4 loop device that fills up: out of blocks, out of inodes.
A running job's end is still recorded truthfully (its reserve: blocks and an inode, sized for
its biggest status), a new run is refused clearly and leaves nothing behind, and a restarted
engine finds exactly the jobs that were acknowledged."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tjob import Engine, JobSpec, JobState, blanks
from tjob.errors import NoSpace
from tjob.jobdir import STATUS_FILE

pytestmark = pytest.mark.root


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB ext4 filesystem with 128 inodes, mounted; no blocks reserved for root."""
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(24 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-N", "128", "-m", "0", str(image)], check=True)
    dev = subprocess.run(
        ["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        subprocess.run(["mount", dev, str(mnt)], check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", "-l", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


def _fill_inodes(where: Path) -> None:
    where.mkdir()
    for i in range(100000):
        try:
            os.close(os.open(where / str(i), os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as e:
            assert e.errno == errno.ENOSPC
            return


def _fill_blocks(where: Path) -> None:
    with open(where, "wb") as f:
        block = b"\0" * (1 << 20)
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    with open(where, "ab") as f:  # the last partial MiB
        try:
            while True:
                os.write(f.fileno(), b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC


def _waiting_job(eng: Engine, fifo: Path, *extra: str) -> str:
    """A job that exits 4 once ``fifo``'s last writer closes it; returned once it holds it
    open (opened after that close, it would wait for a writer for ever)."""
    script = f"exec 3< {fifo}; echo ready; read x <&3; exit 4"
    job = eng.start(JobSpec(["sh", "-c", script, "sh", *extra]))
    assert next(iter(job.output())).data == b"ready\n"
    return job.id


@pytest.mark.parametrize("fill", [_fill_inodes, _fill_blocks], ids=["inodes", "blocks"])
def test_a_full_disk_records_the_truth_and_refuses_new_runs_cleanly(
    ext4: Path, tmp_path: Path, cgroup_parent: str, fill: object
) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    hold = os.open(fifo, os.O_RDWR)
    state = ext4 / "state"
    big = "a" * (120 << 10)  # a status that repeats it would not fit a fixed 16 KiB reserve
    eng = Engine(state, cgroup_parent=cgroup_parent)
    try:
        small = _waiting_job(eng, fifo)
        large = _waiting_job(eng, fifo, big)
        assert callable(fill)
        fill(ext4 / "fill")
        made: list[str] = []
        with pytest.raises(NoSpace, match="no room"):
            for _ in range(blanks.COUNT + 1):
                made.append(eng.start(JobSpec(["true"])).id)
        # Only a blank made before the disk filled can still start a job (its inodes are
        # there; on a full disk its files cannot be written either): each ends truthfully.
        assert len(made) <= (blanks.COUNT if fill is _fill_inodes else 0)
        assert {j.id for j in eng.jobs()} == {small, large, *made}  # nothing of the refused run
        for job_id in made:
            assert eng.get(job_id).wait(30).exit_code == 0
        os.close(hold)
        for job_id in (small, large):
            st = eng.get(job_id).wait(30)
            assert (st.state, st.exit_code) == (JobState.EXITED, 4), st
        assert eng.get(large).status().argv[-1] == big
    finally:
        eng.close()
    eng = Engine(state, cgroup_parent=cgroup_parent)  # on the still-full disk
    try:
        assert {j.id for j in eng.jobs()} == {small, large, *made}  # no phantom
        for job_id in (small, large):
            assert eng.get(job_id).status().exit_code == 4
            assert (state / "jobs" / job_id / STATUS_FILE).stat().st_size > 0
        eng.remove(small)
    finally:
        eng.close()
