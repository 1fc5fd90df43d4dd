"""CgroupV2 against a fake cgroup2 filesystem, and against the kernel's own cgroup2 mount.

This machine runs cgroup v1: its unified cgroup2 mount has no controllers, so limits are checked
against a fake built in a temporary directory. The fake models what the kernel does, not what
the backend would like:

* ``mkdir`` of a cgroup populates it as the kernel does: the core ``cgroup.*`` files (and
  ``cpu.stat``) always, a controller's files only when the parent lists that controller in its
  ``cgroup.subtree_control``. ``rmdir`` takes those files along, and fails with EBUSY while
  ``cgroup.procs`` lists a process or a child cgroup exists. The fake does this by wrapping
  ``os.mkdir`` and ``os.rmdir`` for paths under its root; every other file operation is real.
* Writes land in plain files, so a test reads back exactly what the backend wrote. The only
  kernel parsing the fake does is to read the ``+controller`` tokens last written to a
  ``cgroup.subtree_control`` when deciding which files a new child cgroup gets.
* A write the kernel refuses is a file replaced by a symlink to a read-only sysctl: writing
  it fails with EACCES for everyone, root included.
* Which files exist depends on the kernel (``cgroup.freeze`` 5.2, ``cgroup.kill`` 5.14,
  ``memory.peak`` 5.19; ``memory.swap.max`` only with swap accounting): the fake takes a version.

The backend never creates an interface file, so a test that forgot to enable a controller fails
here as it would on a real kernel, instead of silently creating a plain file.

The tests marked ``root`` use the kernel's own cgroup2 mount (here the controller-less
``/sys/fs/cgroup/unified``) for what needs no controller: membership, ``cgroup.kill``, the
freezer, removal, and the refusal to create limit files a controller has not made.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tjob.cgroups.base import ResolvedLimits
from tjob.cgroups.v2 import CgroupV2
from tjob.errors import CgroupError
from tjob.spec import MIB

# Readable, and refuses writes with EACCES even for root: a kernel saying no.
REFUSING = Path("/proc/sys/kernel/osrelease")
NO_SUCH_PID = 1 << 22  # above PID_MAX_LIMIT: never a live process

Kernel = tuple[int, int]


class FakeCgroup2:
    """A cgroup2 tree in a directory: see the module docstring for what it models."""

    def __init__(
        self,
        root: Path,
        controllers: str = "cpuset cpu io memory hugetlb pids rdma misc",
        kernel: Kernel = (6, 1),
        swap_accounting: bool = True,
    ) -> None:
        self.root = root
        self.kernel = kernel
        self.swap_accounting = swap_accounting
        # Names of interface files that new cgroups get in a write-refusing state.
        self.refusing: set[str] = set()
        # Cgroups whose next rmdir fails with EBUSY although cgroup.procs is empty, as the
        # kernel's can while killed members are still on their way out.
        self.busy_once: set[Path] = set()
        root.mkdir()
        (root / "cgroup.controllers").write_text(controllers + "\n")
        (root / "cgroup.subtree_control").write_text("")
        (root / "cgroup.procs").write_text("1\n")
        (root / "cpu.stat").write_text("usage_usec 0\nuser_usec 0\nsystem_usec 0\n")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_mkdir, real_rmdir = os.mkdir, os.rmdir

        def mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
            real_mkdir(path, mode, dir_fd=dir_fd)
            if self._inside(path, dir_fd):
                self._populate(Path(path))

        def rmdir(path: Any, *, dir_fd: int | None = None) -> None:
            if self._inside(path, dir_fd) and Path(path).is_dir():
                if Path(path) in self.busy_once:
                    self.busy_once.remove(Path(path))
                    raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
                self._depopulate(Path(path))
            real_rmdir(path, dir_fd=dir_fd)

        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(os, "rmdir", rmdir)

    def _inside(self, path: Any, dir_fd: int | None) -> bool:
        p = Path(os.fsdecode(path))
        return dir_fd is None and p.is_relative_to(self.root) and p != self.root

    @staticmethod
    def enabled(cgroup: Path) -> set[str]:
        """What ``cgroup`` passes to its children, as the kernel would have parsed the writes."""
        on: set[str] = set()
        for token in (cgroup / "cgroup.subtree_control").read_text().split():
            if token.startswith("-"):
                on.discard(token[1:])
            else:
                on.add(token.removeprefix("+"))
        return on

    def _populate(self, d: Path) -> None:
        given = self.enabled(d.parent) & set((d.parent / "cgroup.controllers").read_text().split())
        files = {
            "cgroup.controllers": " ".join(sorted(given)) + "\n",
            "cgroup.subtree_control": "",
            "cgroup.procs": "",
            "cgroup.type": "domain\n",
            "cgroup.events": "populated 0\nfrozen 0\n",
            "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
        }
        if self.kernel >= (5, 2):
            files["cgroup.freeze"] = "0\n"
        if self.kernel >= (5, 14):
            files["cgroup.kill"] = ""
        if "cpu" in given:
            files |= {"cpu.max": "max 100000\n", "cpu.weight": "100\n"}
        if "memory" in given:
            files |= {
                "memory.max": "max\n",
                "memory.current": "0\n",
                "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
            }
            if self.kernel >= (5, 19):
                files["memory.peak"] = "0\n"
            if self.swap_accounting:
                files["memory.swap.max"] = "max\n"
        if "pids" in given:
            files |= {"pids.max": "max\n", "pids.current": "0\n"}
        if "io" in given:
            files |= {"io.max": "", "io.stat": ""}
        for name, text in files.items():
            if name in self.refusing:
                (d / name).symlink_to(REFUSING)
            else:
                (d / name).write_text(text)

    @staticmethod
    def _depopulate(d: Path) -> None:
        entries = list(d.iterdir())
        has_child = any(e.is_dir() and not e.is_symlink() for e in entries)
        if has_child or (d / "cgroup.procs").read_text().split():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(d))
        for e in entries:
            e.unlink()


MakeFake = Callable[..., FakeCgroup2]


@pytest.fixture
def make_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeFake:
    def make(**kwargs: Any) -> FakeCgroup2:
        fake = FakeCgroup2(tmp_path / "cgroup", **kwargs)
        fake.install(monkeypatch)
        return fake

    return make


@pytest.fixture
def fake(make_fake: MakeFake) -> FakeCgroup2:
    return make_fake()


def limits(**overrides: Any) -> ResolvedLimits:
    fields: dict[str, Any] = {
        "cpu_percent": 20,
        "memory_mb": 20,
        "pids": 512,
        "rbps": 20 * MIB,
        "wbps": 10 * MIB,
        "device": "254:0",
    }
    fields.update(overrides)
    return ResolvedLimits(**fields)


def ready(fake: FakeCgroup2, parent: str = "tjob") -> CgroupV2:
    backend = CgroupV2(fake.root, parent)
    backend.setup()
    return backend


def read(path: Path) -> str:
    return path.read_text()


# --- setup ---------------------------------------------------------------------------------


def test_setup_enables_controllers_down_to_the_parent(fake: FakeCgroup2) -> None:
    backend = ready(fake)
    assert read(fake.root / "cgroup.subtree_control") == "+cpu +memory +pids +io"
    assert read(fake.root / "tjob" / "cgroup.subtree_control") == "+cpu +memory +pids +io"
    assert set(read(fake.root / "tjob" / "cgroup.controllers").split()) == {
        "cpu",
        "memory",
        "pids",
        "io",
    }
    assert backend.io_available


def test_setup_leaves_an_already_enabled_level_unwritten(fake: FakeCgroup2) -> None:
    # Nothing may be written where nothing is missing: the level may not be ours to write.
    (fake.root / "cgroup.subtree_control").write_text("cpuset cpu io memory pids\n")
    ready(fake)
    assert read(fake.root / "cgroup.subtree_control") == "cpuset cpu io memory pids\n"
    assert read(fake.root / "tjob" / "cgroup.subtree_control") == "+cpu +memory +pids +io"


def test_setup_writes_the_whole_set_when_one_is_missing(fake: FakeCgroup2) -> None:
    (fake.root / "cgroup.subtree_control").write_text("cpu memory\n")
    ready(fake)
    assert read(fake.root / "cgroup.subtree_control") == "+cpu +memory +pids +io"


def test_setup_twice_is_harmless(fake: FakeCgroup2) -> None:
    ready(fake)
    ready(fake)
    assert FakeCgroup2.enabled(fake.root / "tjob") == {"cpu", "memory", "pids", "io"}


def test_setup_nested_parent_enables_every_level(fake: FakeCgroup2) -> None:
    backend = ready(fake, "tjobs.service/jobs")
    for level in (fake.root, fake.root / "tjobs.service", fake.root / "tjobs.service" / "jobs"):
        assert FakeCgroup2.enabled(level) == {"cpu", "memory", "pids", "io"}, level
    backend.create("j1", limits())
    assert read(fake.root / "tjobs.service" / "jobs" / "j1" / "pids.max") == "512"


def test_setup_without_io_succeeds_and_disk_limits_are_skipped(make_fake: MakeFake) -> None:
    fake = make_fake(controllers="cpuset cpu memory pids")
    backend = ready(fake)
    assert not backend.io_available
    assert read(fake.root / "tjob" / "cgroup.subtree_control") == "+cpu +memory +pids"
    backend.create("j1", limits(device="8:0"))
    job = fake.root / "tjob" / "j1"
    assert read(job / "cpu.max") == "20000 100000"
    assert not (job / "io.max").exists()


@pytest.mark.parametrize("offered", ["", "cpu io pids", "cpuset cpu memory"])
def test_setup_names_missing_controllers(make_fake: MakeFake, offered: str) -> None:
    fake = make_fake(controllers=offered)
    with pytest.raises(CgroupError, match="not available") as err:
        CgroupV2(fake.root).setup()
    for c in {"cpu", "memory", "pids"} - set(offered.split()):
        assert c in str(err.value)
    assert not (fake.root / "tjob").exists()


def test_setup_on_a_directory_that_is_not_cgroup2(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="no cgroup v2 filesystem"):
        CgroupV2(tmp_path).setup()


@pytest.mark.parametrize("level", ["", "tjob"])
def test_setup_reports_a_refused_subtree_control_write(fake: FakeCgroup2, level: str) -> None:
    d = fake.root / level
    if level:
        os.mkdir(d)
    (d / "cgroup.subtree_control").unlink()
    (d / "cgroup.subtree_control").symlink_to(REFUSING)
    with pytest.raises(CgroupError, match=r"cgroup\.subtree_control") as err:
        CgroupV2(fake.root).setup()
    assert str(d / "cgroup.subtree_control") in str(err.value)
    assert "leaf cgroup" in str(err.value)


# --- create --------------------------------------------------------------------------------


def test_create_writes_every_limit(fake: FakeCgroup2) -> None:
    backend = ready(fake)
    backend.create("j1", limits())
    job = fake.root / "tjob" / "j1"
    assert read(job / "cpu.max") == "20000 100000"
    assert read(job / "memory.max") == str(20 * 1024 * 1024)
    assert read(job / "memory.swap.max") == "0"
    assert read(job / "pids.max") == "512"
    assert read(job / "io.max") == f"254:0 rbps={20 * MIB} wbps={10 * MIB}"
    assert backend.procs_files("j1") == [str(job / "cgroup.procs")]


def test_create_cpu_quota_scales_past_one_cpu(fake: FakeCgroup2) -> None:
    backend = ready(fake)
    backend.create("j1", limits(cpu_percent=250, memory_mb=1))
    job = fake.root / "tjob" / "j1"
    assert read(job / "cpu.max") == "250000 100000"
    assert read(job / "memory.max") == "1048576"


def test_create_without_a_device_leaves_io_alone(fake: FakeCgroup2) -> None:
    ready(fake).create("j1", limits(device=None))
    assert read(fake.root / "tjob" / "j1" / "io.max") == ""


def test_create_without_swap_accounting(make_fake: MakeFake) -> None:
    fake = make_fake(swap_accounting=False)
    ready(fake).create("j1", limits())
    job = fake.root / "tjob" / "j1"
    assert not (job / "memory.swap.max").exists()
    assert read(job / "memory.max") == str(20 * MIB)


def test_create_refuses_an_existing_job(fake: FakeCgroup2) -> None:
    backend = ready(fake)
    backend.create("j1", limits(pids=7))
    with pytest.raises(CgroupError, match="exists"):
        backend.create("j1", limits(pids=9))
    assert read(fake.root / "tjob" / "j1" / "pids.max") == "7"


def test_create_before_setup_fails(fake: FakeCgroup2) -> None:
    with pytest.raises(CgroupError, match="cannot create cgroup"):
        CgroupV2(fake.root).create("j1", limits())


def test_create_where_controllers_are_not_enabled_fails_and_cleans_up(fake: FakeCgroup2) -> None:
    # Someone made the parent but never enabled controllers in it: the job gets no limit files.
    os.mkdir(fake.root / "tjob")
    with pytest.raises(CgroupError, match="cpu controller is not enabled"):
        CgroupV2(fake.root).create("j1", limits())
    assert not (fake.root / "tjob" / "j1").exists()
    assert not (fake.root / "tjob" / "cpu.max").exists()


@pytest.mark.parametrize("name", ["cpu.max", "memory.max", "memory.swap.max", "pids.max", "io.max"])
def test_create_refused_write_raises_and_removes_the_cgroup(fake: FakeCgroup2, name: str) -> None:
    backend = ready(fake)
    fake.refusing.add(name)
    with pytest.raises(CgroupError, match=name):
        backend.create("j1", limits())
    assert not (fake.root / "tjob" / "j1").exists()
    assert backend.job_ids() == []


# --- reading -------------------------------------------------------------------------------


def test_pids_reads_members_once_each(fake: FakeCgroup2) -> None:
    backend = ready(fake)
    backend.create("j1", limits())
    assert backend.pids("j1") == []
    (fake.root / "tjob" / "j1" / "cgroup.procs").write_text("41\n42\n41\n")
    assert backend.pids("j1") == [41, 42]
    assert backend.pids("gone") == []


def test_usage_reads_every_counter(fake: FakeCgroup2) -> None:
    backend = ready(fake)
    backend.create("j1", limits())
    job = fake.root / "tjob" / "j1"
    (job / "cpu.stat").write_text(
        "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\nnr_periods 3\n"
    )
    (job / "memory.peak").write_text("8388608\n")
    (job / "memory.current").write_text("4194304\n")
    (job / "pids.current").write_text("3\n")
    (job / "io.stat").write_text(
        "254:0 rbytes=1000 wbytes=2000 rios=1 wios=2 dbytes=0 dios=0\n"
        "8:16 rbytes=30 wbytes=40 rios=3 wios=4 dbytes=5 dios=6\n"
    )
    u = backend.usage("j1")
    assert u.cpu_seconds == 1.5
    assert u.memory_peak_bytes == 8 * MIB
    assert u.memory_current_bytes == 4 * MIB
    assert u.pids_current == 3
    assert (u.io_read_bytes, u.io_write_bytes) == (1030, 2040)


def test_usage_of_an_idle_job_is_zero_not_unknown(fake: FakeCgroup2) -> None:
    backend = ready(fake)
    backend.create("j1", limits())
    u = backend.usage("j1")
    assert (u.cpu_seconds, u.memory_peak_bytes, u.pids_current) == (0.0, 0, 0)
    assert (u.io_read_bytes, u.io_write_bytes) == (0, 0)  # io.stat is empty until I/O happens


def test_usage_on_a_kernel_without_memory_peak(make_fake: MakeFake) -> None:
    fake = make_fake(kernel=(5, 15))
    backend = ready(fake)
    backend.create("j1", limits())
    (fake.root / "tjob" / "j1" / "memory.current").write_text("4096\n")
    u = backend.usage("j1")
    assert u.memory_peak_bytes is None
    assert u.memory_current_bytes == 4096


def test_usage_without_io_controller_is_unknown(make_fake: MakeFake) -> None:
    fake = make_fake(controllers="cpu memory pids")
    backend = ready(fake)
    backend.create("j1", limits())
    u = backend.usage("j1")
    assert (u.io_read_bytes, u.io_write_bytes) == (None, None)
    assert u.cpu_seconds == 0.0


def test_usage_of_a_removed_job_is_unknown(fake: FakeCgroup2) -> None:
    u = ready(fake).usage("gone")
    assert u.cpu_seconds is None
    assert u.memory_current_bytes is None
    assert u.io_read_bytes is None


def test_oom_kills(fake: FakeCgroup2) -> None:
    backend = ready(fake)
    backend.create("j1", limits())
    assert backend.oom_kills("j1") == 0
    (fake.root / "tjob" / "j1" / "memory.events").write_text(
        "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 1\n"
    )
    assert backend.oom_kills("j1") == 2
    assert backend.oom_kills("gone") == 0


# --- kill ----------------------------------------------------------------------------------


class RecordingV2(CgroupV2):
    """Records signal() calls with the freezer state at that moment; the fake has no processes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.sent: list[tuple[int, str | None]] = []

    def signal(self, job_id: str, sig: int) -> int:
        freeze = self.root / self.parent / job_id / "cgroup.freeze"
        self.sent.append((sig, freeze.read_text() if freeze.exists() else None))
        return 0


def test_kill_writes_cgroup_kill(fake: FakeCgroup2) -> None:
    backend = RecordingV2(fake.root)
    backend.setup()
    backend.create("j1", limits())
    backend.kill("j1")
    job = fake.root / "tjob" / "j1"
    assert read(job / "cgroup.kill") == "1"
    assert read(job / "cgroup.freeze") == "0\n"  # the freezer is not involved
    assert backend.sent == []


def test_kill_before_5_14_freezes_kills_each_and_thaws(make_fake: MakeFake) -> None:
    fake = make_fake(kernel=(5, 10))
    backend = RecordingV2(fake.root)
    backend.setup()
    backend.create("j1", limits())
    job = fake.root / "tjob" / "j1"
    assert not (job / "cgroup.kill").exists()
    # This fake kernel completes the freeze at once.
    (job / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    backend.kill("j1")
    assert backend.sent == [(signal.SIGKILL, "1")]
    assert read(job / "cgroup.freeze") == "0"
    assert not (job / "cgroup.kill").exists()


def test_kill_goes_ahead_when_the_freeze_never_completes(make_fake: MakeFake) -> None:
    # A task in uninterruptible sleep can hold a freeze off; the kill must not wait forever.
    fake = make_fake(kernel=(5, 10))
    backend = RecordingV2(fake.root)
    backend.freeze_timeout = 0.0
    backend.setup()
    backend.create("j1", limits())
    backend.kill("j1")
    assert backend.sent == [(signal.SIGKILL, "1")]
    assert read(fake.root / "tjob" / "j1" / "cgroup.freeze") == "0"


def test_kill_before_5_2_signals_without_a_freezer(make_fake: MakeFake) -> None:
    fake = make_fake(kernel=(4, 19))
    backend = RecordingV2(fake.root)
    backend.setup()
    backend.create("j1", limits())
    backend.kill("j1")
    assert backend.sent == [(signal.SIGKILL, None)]


def test_kill_of_a_removed_job_does_nothing(fake: FakeCgroup2) -> None:
    ready(fake).kill("gone")
    assert not (fake.root / "tjob" / "gone").exists()


# --- remove, job_ids -----------------------------------------------------------------------


def test_remove_and_job_ids(fake: FakeCgroup2) -> None:
    backend = CgroupV2(fake.root)
    assert backend.job_ids() == []
    backend.setup()
    assert backend.job_ids() == []
    backend.create("b", limits())
    backend.create("a", limits())
    assert backend.job_ids() == ["a", "b"]  # directories only, not the parent's files
    backend.remove("a")
    assert not (fake.root / "tjob" / "a").exists()
    assert backend.job_ids() == ["b"]
    backend.remove("a")  # already gone is fine


def test_remove_tries_again_after_a_transient_busy(fake: FakeCgroup2) -> None:
    backend = ready(fake)
    backend.create("j1", limits())
    fake.busy_once.add(fake.root / "tjob" / "j1")
    backend.remove("j1")
    assert not (fake.root / "tjob" / "j1").exists()


def test_remove_a_cgroup_that_stays_busy_raises(fake: FakeCgroup2) -> None:
    backend = ready(fake)
    backend.create("j1", limits())
    # A member the kernel still lists but that cannot be waited for (no pidfd to be had).
    (fake.root / "tjob" / "j1" / "cgroup.procs").write_text(f"{NO_SUCH_PID}\n")
    with pytest.raises(CgroupError, match="busy") as err:
        backend.remove("j1")
    assert str(NO_SUCH_PID) in str(err.value)
    assert backend.job_ids() == ["j1"]


# --- the kernel's own cgroup2 mount --------------------------------------------------------


def _cgroup2_mount() -> Path | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return Path(fields[4])
    return None


@pytest.fixture
def real_v2() -> Iterator[CgroupV2]:
    """A parent cgroup of our own on the real cgroup2 mount, with no controllers enabled."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make cgroups")
    mount = _cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 filesystem is mounted")
    backend = CgroupV2(mount, f"tjob-test-{uuid.uuid4().hex[:12]}")
    os.mkdir(mount / backend.parent)
    try:
        yield backend
    finally:
        for job_id in backend.job_ids():
            backend.kill(job_id)
            backend.remove(job_id)
        os.rmdir(mount / backend.parent)


def _start_tree(backend: CgroupV2, job_id: str) -> subprocess.Popen[str]:
    """A shell in the job's cgroup with a child, and a setsid'd grandchild shell with its own."""
    os.mkdir(backend.root / backend.parent / job_id)
    script = (
        f"echo 0 > {backend.procs_files(job_id)[0]}\n"
        "sleep 300 &\n"
        "setsid sh -c 'sleep 300 & echo inner; wait' &\n"
        "echo outer\n"
        "wait\n"
    )
    proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    # Both lines printed: every process of the tree has been forked.
    assert {proc.stdout.readline(), proc.stdout.readline()} == {"outer\n", "inner\n"}
    return proc


@pytest.mark.root
def test_real_kill_takes_the_whole_tree(real_v2: CgroupV2) -> None:
    if not (real_v2.root / real_v2.parent / "cgroup.kill").exists():
        pytest.skip("kernel older than 5.14: no cgroup.kill")
    proc = _start_tree(real_v2, "j1")
    try:
        members = real_v2.pids("j1")
        assert proc.pid in members
        assert len(members) >= 4
        assert real_v2.usage("j1").cpu_seconds is not None
        real_v2.kill("j1")
        assert proc.wait(timeout=10) == -signal.SIGKILL
        real_v2.remove("j1")  # succeeds only once no live process is left in the cgroup
        assert real_v2.job_ids() == []
    finally:
        proc.kill()
        proc.wait()


class FreezeCheckingV2(CgroupV2):
    """Notes, for each signal() call, whether the cgroup was frozen and how many were hit."""

    def __init__(self, root: Path, parent: str) -> None:
        super().__init__(root, parent)
        self.calls: list[tuple[bool, int]] = []

    def signal(self, job_id: str, sig: int) -> int:
        events = (self.root / self.parent / job_id / "cgroup.events").read_text()
        sent = super().signal(job_id, sig)
        self.calls.append(("frozen 1" in events.splitlines(), sent))
        return sent


@pytest.mark.root
def test_real_freeze_fallback_takes_the_whole_tree(real_v2: CgroupV2) -> None:
    # This kernel has cgroup.kill, so kill() never takes the pre-5.14 path: drive it directly.
    backend = FreezeCheckingV2(real_v2.root, real_v2.parent)
    backend.freeze_timeout = 10.0  # a guard against a hang, not an expectation
    proc = _start_tree(backend, "j1")
    job = backend.root / backend.parent / "j1"
    try:
        members = backend.pids("j1")
        assert len(members) >= 4
        backend._freeze_and_kill("j1")
        # The kill went out once the freeze had completed, to every member.
        assert backend.calls == [(True, len(members))]
        assert proc.wait(timeout=10) == -signal.SIGKILL
        assert read(job / "cgroup.freeze").strip() == "0"
        backend.remove("j1")
        assert not job.exists()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.root
def test_real_create_never_invents_limit_files(real_v2: CgroupV2) -> None:
    # No controller is enabled in our parent, so the kernel makes no cpu.max in the job.
    with pytest.raises(CgroupError, match="cpu controller is not enabled"):
        real_v2.create("j1", limits())
    assert real_v2.job_ids() == []


def test_real_setup_without_controllers_says_which() -> None:
    mount = _cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 filesystem is mounted")
    offered = set((mount / "cgroup.controllers").read_text().split())
    if offered >= {"cpu", "memory", "pids"}:
        pytest.skip(f"{mount} offers every controller tjob needs")
    with pytest.raises(CgroupError, match="not available"):
        CgroupV2(mount, "tjob-never-made").setup()
    assert not (mount / "tjob-never-made").exists()
