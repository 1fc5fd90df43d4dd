"""A cgroup per client (tjob.cgroups.clients): jobs in ``<parent>/<client>/<job>``, the client
ceilings written and holding for all of a client's jobs together, the CPU shared between
clients first, and jobs made in the older ``<parent>/<job>`` still found.

On the host's cgroup v1 here; the tests marked ``cgroup2`` also run in ``make test-cgroup2``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import tjob.prepare
from tjob import Engine, JobSpec, JobState, Limits
from tjob.cgroups import ClientLimits
from tjob.cgroups.clients import client_dir

pytestmark = [pytest.mark.root, pytest.mark.cgroup2]

CG = Path("/sys/fs/cgroup")
V2 = (CG / "cgroup.controllers").exists()
MIB = 1 << 20
# Forks `n` children that exec `sleep`, prints how many it made, and waits to be stopped.
FORKER = """
import os, sys, time
n = 0
for _ in range(int(sys.argv[1])):
    try:
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "1000"])
        n += 1
    except OSError:
        pass
print(n, flush=True)
time.sleep(1000)
"""


def client_file(parent: str, owner: str, v1: str, v2: str) -> Path:
    """A client cgroup's interface file: ``v1`` is "controller/file", ``v2`` the file."""
    if V2:
        return CG / parent / client_dir(owner) / v2
    ctrl, name = v1.split("/")
    return CG / ctrl / parent / client_dir(owner) / name


def cpu_usage(parent: str, owner: str) -> float:
    """Seconds of CPU the client's cgroup has used (its jobs together)."""
    f = client_file(parent, owner, "cpuacct/cpuacct.usage", "cpu.stat")
    if V2:
        usec = next(int(x.split()[1]) for x in f.read_text().splitlines() if "usage_usec" in x)
        return usec / 1e6
    return int(f.read_text()) / 1e9


def first_line(job: tjob.Job) -> str:
    return next(iter(job.output())).data.decode().strip()


def test_jobs_live_in_their_clients_cgroup_with_its_ceilings(
    tmp_path: Path, cgroup_parent: str
) -> None:
    clients = ClientLimits(pids=300, memory_mb=100, cpu_percent=150)
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent, clients=clients) as eng:
        job = eng.start(JobSpec(["sleep", "1000"], owner="al/../ice"))
        assert job.cgroup == f"{client_dir('al/../ice')}/{job.id}"
        pids = client_file(cgroup_parent, "al/../ice", "pids/pids.max", "pids.max")
        mem = client_file(cgroup_parent, "al/../ice", "memory/memory.limit_in_bytes", "memory.max")
        cpu = client_file(cgroup_parent, "al/../ice", "cpu/cpu.cfs_quota_us", "cpu.max")
        assert pids.read_text().strip() == "300"
        assert int(mem.read_text()) == 100 * MIB
        assert cpu.read_text().split()[0] == "150000"
        assert (pids.parent / job.id).is_dir()
        assert eng.diagnostics().cgroups == {job.id}
        job.stop(0)
        assert eng.diagnostics().cgroups == frozenset()  # settled: its supervisor gone, after it
        assert not (pids.parent / job.id).exists()
    # A restart with other flags writes them again ("no ceiling" included).
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent) as eng:
        assert eng.start(JobSpec(["true"], owner="al/../ice")).wait(30).exit_code == 0
        assert pids.read_text().strip() == "max"
        assert cpu.read_text().split()[0] in ("max", "-1")


def test_a_clients_jobs_together_stay_under_its_pids_ceiling(
    tmp_path: Path, cgroup_parent: str
) -> None:
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent, clients=ClientLimits(pids=40)) as eng:
        big = Limits(pids=100, memory_mb=100)
        spec = JobSpec(["python3", "-c", FORKER, "30"], owner="alice", limits=big)
        first = eng.start(spec)
        made = [int(first_line(first))]
        second = eng.start(spec)
        made.append(int(first_line(second)))
        other = eng.start(JobSpec(["python3", "-c", FORKER, "30"], owner="bob", limits=big))
        bob_made = int(first_line(other))
        current = client_file(cgroup_parent, "alice", "pids/pids.current", "pids.current")
        assert int(current.read_text()) <= 40
        for job in (first, second, other):
            job.stop(0)
    # Each job alone may have 100; alice's two together got at most 40, bob his own 40.
    assert made[0] == 30 and made[1] < 30 and sum(made) + 2 <= 40, made
    assert bob_made == 30


def test_a_clients_jobs_together_stay_under_its_memory_ceiling(
    tmp_path: Path, cgroup_parent: str
) -> None:
    clients = ClientLimits(memory_mb=40)
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent, clients=clients) as eng:
        hog = "import time; b = b'x' * (60 << 20); print('kept', flush=True); time.sleep(1000)"
        job = eng.start(
            JobSpec(["python3", "-c", hog], owner="alice", limits=Limits(memory_mb=200))
        )
        st = job.wait(60)
    assert st.state is JobState.EXITED and st.signal == 9 and st.oom_killed, st


def test_clients_share_the_cpu_equally_however_many_jobs_each_runs(
    tmp_path: Path, cgroup_parent: str
) -> None:
    busy = JobSpec(["sh", "-c", "while :; do :; done"], limits=Limits(cpu_percent=100))
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent) as eng:
        jobs = [eng.start(JobSpec(busy.argv, owner="many", limits=busy.limits)) for _ in range(8)]
        jobs += [eng.start(JobSpec(busy.argv, owner="few", limits=busy.limits)) for _ in range(2)]
        try:
            before = cpu_usage(cgroup_parent, "many"), cpu_usage(cgroup_parent, "few")
            time.sleep(2.0)  # the measurement window itself, not a wait for an event
            after = cpu_usage(cgroup_parent, "many"), cpu_usage(cgroup_parent, "few")
        finally:
            for job in jobs:
                job.stop(0)
    many, few = after[0] - before[0], after[1] - before[1]
    # Shared per job, "many" would get 4x what "few" gets; per client, as much (both can use
    # the whole machine: 2 busy jobs of 100% fill 2 CPUs).
    assert few > 0 and many / few < 2.0, (many, few)


def test_jobs_made_before_client_cgroups_are_still_followed_and_stopped(
    tmp_path: Path, cgroup_parent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An engine of before this change put each job in <parent>/<job>.
    monkeypatch.setattr(tjob.prepare, "job_cgroup", lambda owner, job_id: job_id)
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent) as old:
        job = old.start(JobSpec(["sh", "-c", "echo up; exec sleep 1000"], owner="alice"))
        assert first_line(job) == "up"
    monkeypatch.undo()
    top = CG / cgroup_parent if V2 else CG / "pids" / cgroup_parent
    assert (top / job.id).is_dir()
    with Engine(tmp_path / "s", cgroup_parent=cgroup_parent) as eng:
        found = eng.get(job.id)
        assert found.cgroup == job.id and found.status().state is JobState.RUNNING
        assert found.status().usage.pids_current == 1
        assert eng.diagnostics().cgroups == {job.id}
        st = found.stop(0)
        assert st.state is JobState.STOPPED
        assert job.id not in eng.diagnostics().cgroups  # settled: its supervisor gone, after it
        assert not (top / job.id).exists()
        new = eng.start(JobSpec(["true"], owner="alice"))
        assert new.wait(30).exit_code == 0 and new.cgroup.startswith(client_dir("alice"))
