"""cgroup v1: the launcher makes the next start's cgroup ahead, once an end is recorded, and a
start renames it (CgroupV1.make_spare): the job gets a cgroup no process was ever in, with its
own limits; nothing of it outlives its launcher for long."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tjob import Engine, JobSpec, Limits
from tjob.cgroups.base import SPARE_PREFIX
from tjob.cgroups.clients import client_dir
from tjob.procs import readable
from tjob.spec import MIB
from tjob.watch import Hub

pytestmark = pytest.mark.root

CG = Path("/sys/fs/cgroup")
if (CG / "cgroup.controllers").exists():
    pytest.skip("cgroup v2 renames no cgroup: no spare is made", allow_module_level=True)


def client(parent: str, ctrl: str = "pids", owner: str = "") -> Path:
    return CG / ctrl / parent / client_dir(owner)


def spare_of(eng: Engine, parent: str, owner: str = "") -> Path:
    """The launcher's spare, once it is there (a change in the client cgroup wakes the wait)."""
    pid = eng.diagnostics().launcher_pid
    spare = client(parent, owner=owner) / f"{SPARE_PREFIX}{pid}"
    hub = Hub()
    try:
        return hub.wait_until(
            str(spare.parent),
            lambda: spare if spare.is_dir() else None,
            time.monotonic() + 30,
            f"no spare cgroup {spare}",
        )
    finally:
        hub.close()


def test_a_start_takes_the_cgroup_made_ahead_with_its_own_limits(
    tmp_path: Path, cgroup_parent: str
) -> None:
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent) as eng:
        assert eng.start(JobSpec(["true"])).wait(30).exit_code == 0
        for limits in (Limits(), Limits(memory_mb=64, pids=10, cpu_percent=50), Limits()):
            spare = spare_of(eng, cgroup_parent)
            made = {ctrl: (client(cgroup_parent, ctrl) / spare.name).stat().st_ino
                    for ctrl in ("pids", "memory", "cpu")}  # fmt: skip
            job = eng.start(JobSpec(["sleep", "1000"], limits=limits))
            got = job.status().limits
            for ctrl, ino in made.items():
                assert (client(cgroup_parent, ctrl) / job.id).stat().st_ino == ino  # renamed
            pids = client(cgroup_parent, "pids") / job.id
            mem = client(cgroup_parent, "memory") / job.id
            cpu = client(cgroup_parent, "cpu") / job.id
            assert (pids / "pids.max").read_text().strip() == str(got.pids)
            assert int((mem / "memory.limit_in_bytes").read_text()) == got.memory_mb * MIB
            if (mem / "memory.memsw.limit_in_bytes").exists():
                assert int((mem / "memory.memsw.limit_in_bytes").read_text()) == got.memory_mb * MIB
            quota = int((cpu / "cpu.cfs_quota_us").read_text())
            assert quota == got.cpu_percent * 1000
            assert int((mem / "memory.max_usage_in_bytes").read_text()) > 0  # its own, fresh
            assert job.id in eng.diagnostics().cgroups
            assert not any(n.startswith(SPARE_PREFIX) for n in eng.diagnostics().cgroups)
            job.stop(0)
    # The engine closed: its launcher removed the spare.
    assert not any(p.name.startswith(SPARE_PREFIX) for p in client(cgroup_parent).iterdir())


def test_a_spare_is_its_clients_and_another_clients_start_leaves_it(
    tmp_path: Path, cgroup_parent: str
) -> None:
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent) as eng:
        eng.start(JobSpec(["true"], owner="alice")).wait(30)
        alices = spare_of(eng, cgroup_parent, "alice")
        bob = eng.start(JobSpec(["sleep", "1000"], owner="bob"))
        assert (client(cgroup_parent, owner="bob") / bob.id).is_dir()
        assert alices.is_dir()  # not taken, not removed on bob's way
        bob.stop(0)
        spare_of(eng, cgroup_parent, "bob")  # the next one is bob's...
        assert not alices.exists()  # ...instead of alice's


def test_a_spare_a_killed_launcher_left_is_removed_by_the_next(
    tmp_path: Path, cgroup_parent: str
) -> None:
    eng = Engine(tmp_path / "s", cgroup_parent=cgroup_parent)
    try:
        eng.start(JobSpec(["true"])).wait(30)
        spare = spare_of(eng, cgroup_parent)
        pid = eng.diagnostics().launcher_pid
        fd = os.pidfd_open(pid)
        os.kill(pid, signal.SIGKILL)
        assert readable(fd, 30)
        os.close(fd)
    finally:
        eng.close()
    assert spare.is_dir()  # nobody removed it
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent) as eng:
        assert eng.start(JobSpec(["true"])).wait(30).exit_code == 0  # its client made ready
        for ctrl in ("pids", "memory", "cpu", "freezer"):
            assert not (client(cgroup_parent, ctrl) / spare.name).exists()
