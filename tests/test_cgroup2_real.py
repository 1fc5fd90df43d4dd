"""The engine on a real cgroup v2 kernel: what only v2 has (detection, the leaf rule, io.max,
cgroup.kill). The engine's own limit, OOM, stop and status tests in test_engine.py run here too
(those marked ``cgroup2``).

These run inside the guest that ``make test-cgroup2`` boots (tests/cgroup2/run.sh): a pure-v2
kernel whose ``/sys/fs/cgroup`` is the unified hierarchy with every controller. Elsewhere, and
on this project's cgroup v1 machines, they skip. What they check is what a fake cgroupfs cannot
show: which writes the kernel accepts (the "no internal processes" rule, ``subtree_control``,
``io.max`` syntax) and what it reports (``cpu.stat``, ``memory.events``, ``memory.peak``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
from cgparent import leftovers
from support.procs import all_ended, pidfds

import tjob
from tjob import Engine, JobSpec, JobState, Limits
from tjob.cgroups import CgroupBackend, detect
from tjob.cgroups.v2 import CgroupV2

CGROUP_ROOT = Path("/sys/fs/cgroup")
ON_V2 = os.geteuid() == 0 and (CGROUP_ROOT / "cgroup.controllers").exists()

# Not marked ``root``: under TJOB_REQUIRE_ROOT=1 a skipped root test fails, and these skip on
# every cgroup v1 host, root or not.
pytestmark = [
    pytest.mark.cgroup2,
    pytest.mark.skipif(
        not ON_V2,
        reason="needs root on a cgroup v2 host (/sys/fs/cgroup unified): make test-cgroup2",
    ),
]


def run(engine: Engine, argv: list[str], limits: Limits | None = None) -> tjob.JobStatus:
    return engine.start(JobSpec(argv, limits=limits or Limits())).wait(60)


# ------------------------------------------------------------------ detection and placement


def test_detection_chooses_v2_and_sets_up_the_parent(engine: Engine, cgroup_parent: str) -> None:
    assert engine.cgroup_version == 2
    assert isinstance(detect(CGROUP_ROOT), CgroupV2)
    # The parent passes the controllers on to the jobs (and, by the kernel's rule, holds no
    # process itself).
    enabled = (CGROUP_ROOT / cgroup_parent / "cgroup.subtree_control").read_text().split()
    assert {"cpu", "memory", "pids"} <= set(enabled)
    assert (CGROUP_ROOT / cgroup_parent / "cgroup.procs").read_text() == ""


def test_parent_under_a_cgroup_with_processes_is_refused_with_advice(
    tmp_path: Path, cgroup_parent: str
) -> None:
    # "No internal processes": a cgroup holding processes cannot enable controllers for its
    # children, so tjob's parent cannot sit below one (as under a systemd service's own cgroup).
    busy = CGROUP_ROOT / cgroup_parent
    busy.mkdir()
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        (busy / "cgroup.procs").write_text(str(sleeper.pid))
        with pytest.raises(tjob.CgroupError, match="leaf cgroup"):
            Engine(
                tmp_path / "state", cgroup_root=CGROUP_ROOT, cgroup_parent=f"{cgroup_parent}/jobs"
            )
    finally:
        sleeper.kill()
        sleeper.wait()


def test_running_job_is_in_its_own_leaf_cgroup(
    engine: Engine, cg: CgroupBackend, cgroup_parent: str
) -> None:
    job = engine.start(JobSpec(["sh", "-c", "echo ready; exec sleep 1000"]))
    next(iter(job.output()))
    assert job.pid is not None
    assert Path(f"/proc/{job.pid}/cgroup").read_text() == f"0::/{cgroup_parent}/{job.cgroup}\n"
    jdir = CGROUP_ROOT / cgroup_parent / job.cgroup
    assert job.pid in cg.pids(job.cgroup)
    assert (jdir / "pids.max").read_text().strip() == "512"
    assert (jdir / "memory.max").read_text().strip() == str(20 << 20)
    assert (jdir / "cpu.max").read_text().split() == ["20000", "100000"]
    st = job.status()
    assert st.state is JobState.RUNNING and (st.usage.pids_current or 0) >= 1
    job.stop(grace=0)
    assert engine.diagnostics().cgroups == frozenset()


# ------------------------------------------------------------------ limits


def test_direct_io_read_is_throttled_by_io_max(engine: Engine, cg: CgroupBackend) -> None:
    scratch = os.environ.get("TJOB_CGROUP2_DISK")
    if not scratch:
        pytest.skip("no scratch block device (make test-cgroup2 gives the guest one)")
    data = Path(scratch) / f"tjob-io-{uuid.uuid4().hex[:8]}"
    with open(data, "wb") as f:
        f.write(os.urandom(1 << 20) * 50)
        os.fsync(f.fileno())
    try:
        dev = os.stat(data).st_dev
        device = f"{os.major(dev)}:{os.minor(dev)}"
        job = engine.start(
            JobSpec(
                ["dd", f"if={data}", "of=/dev/null", "bs=1M", "iflag=direct"],
                limits=Limits(rbps=10 << 20, device=device),
            )
        )
        io_max = (CGROUP_ROOT / cg.parent / job.cgroup / "io.max").read_text()
        st = job.wait(60)
        assert io_max.startswith(f"{device} rbps={10 << 20} ")
        assert st.exit_code == 0 and st.limits.device == device
        assert st.ended_at and st.started_at and st.ended_at - st.started_at >= 4.0
        assert (st.usage.io_read_bytes or 0) >= 50 << 20
    finally:
        data.unlink()


# ------------------------------------------------------------------ stop and clean-up


def test_backend_kill_uses_cgroup_kill(
    engine: Engine, cg: CgroupBackend, cgroup_parent: str
) -> None:
    # Kernel 5.14+ has cgroup.kill, which the backend's kill() writes (the engine's last resort
    # when it has no pidfd of the job's init): no supervisor or init is needed.
    job = engine.start(JobSpec(["sh", "-c", "setsid sleep 1000 & echo ready; wait"]))
    next(iter(job.output()))
    assert (CGROUP_ROOT / cgroup_parent / job.cgroup / "cgroup.kill").exists()
    with pidfds(cg.pids(job.cgroup)) as fds:
        cg.kill(job.cgroup)
        assert all_ended(fds)
    st = job.wait(30)
    assert st.signal == signal.SIGKILL
    assert engine.diagnostics().cgroups == frozenset()


def test_no_cgroup_is_left_after_many_jobs(engine: Engine, cgroup_parent: str) -> None:
    jobs = [engine.start(JobSpec(["true"])) for _ in range(10)]
    jobs.append(engine.start(JobSpec(["sleep", "1000"])))
    jobs[-1].stop(grace=0)
    assert all(j.wait(30).state.finished for j in jobs)
    assert engine.diagnostics().cgroups == frozenset()
    assert leftovers(CGROUP_ROOT / cgroup_parent) == []
