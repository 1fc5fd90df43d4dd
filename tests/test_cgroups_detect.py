"""detect(): which cgroup backend a host's cgroup filesystem calls for.

The layouts are built in a temporary directory with the files detect() looks at; the last test
checks the answer for this host against how its ``/sys/fs/cgroup`` is mounted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tjob.cgroups import backend, detect
from tjob.cgroups.v1 import CgroupV1
from tjob.cgroups.v2 import CgroupV2
from tjob.errors import CgroupError

V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "blkio", "pids", "freezer", "devices")


def unified(root: Path, controllers: str = "cpuset cpu io memory pids") -> Path:
    root.mkdir(exist_ok=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("")
    (root / "cgroup.procs").write_text("1\n")
    return root


def per_controller(root: Path, controllers: tuple[str, ...] = V1_CONTROLLERS) -> Path:
    # /sys/fs/cgroup on a v1 host is a tmpfs holding one mount per controller.
    root.mkdir(exist_ok=True)
    for c in controllers:
        (root / c).mkdir()
        (root / c / "cgroup.procs").write_text("1\n")
        (root / c / "tasks").write_text("1\n")
    return root


def test_unified_root_is_v2(tmp_path: Path) -> None:
    backend = detect(unified(tmp_path / "cg"), "jobs")
    assert isinstance(backend, CgroupV2)
    assert backend.version == 2
    assert backend.root == tmp_path / "cg"
    assert backend.parent == "jobs"


def test_unified_root_without_controllers_is_still_v2(tmp_path: Path) -> None:
    # detect() picks the interface; setup() is what says which controllers are missing.
    backend = detect(unified(tmp_path / "cg", controllers=""))
    assert isinstance(backend, CgroupV2)
    with pytest.raises(CgroupError, match="not available"):
        backend.setup()


def test_per_controller_root_is_v1(tmp_path: Path) -> None:
    backend = detect(per_controller(tmp_path / "cg"), "jobs")
    assert isinstance(backend, CgroupV1)
    assert backend.version == 1
    assert backend.root == tmp_path / "cg"
    assert backend.parent == "jobs"


@pytest.mark.parametrize("only", ["memory", "cpu"])
def test_either_memory_or_cpu_hierarchy_marks_v1(tmp_path: Path, only: str) -> None:
    assert isinstance(detect(per_controller(tmp_path / "cg", (only,))), CgroupV1)


def test_hybrid_host_is_v1(tmp_path: Path) -> None:
    # v1 controllers plus a controller-less v2 mount at unified/ (systemd's hybrid layout).
    root = per_controller(tmp_path / "cg")
    unified(root / "unified", controllers="")
    assert isinstance(detect(root), CgroupV1)


def test_default_parent_is_tjob(tmp_path: Path) -> None:
    assert detect(unified(tmp_path / "cg")).parent == "tjob"


@pytest.mark.parametrize(("version", "cls"), [(1, CgroupV1), (2, CgroupV2)])
def test_backend_of_a_known_version(tmp_path: Path, version: int, cls: type) -> None:
    # No look at the filesystem: the caller already knows (a re-adopting server, say).
    b = backend(version, tmp_path / "nowhere", "jobs")
    assert type(b) is cls
    assert (b.version, b.root, b.parent) == (version, tmp_path / "nowhere", "jobs")


@pytest.mark.parametrize(
    "layout",
    [
        "empty",  # nothing mounted there
        "missing",  # no such directory
        "other",  # v1-looking directories without cgroup.procs: not controllers
    ],
)
def test_neither_raises(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "cg"
    if layout != "missing":
        root.mkdir()
    if layout == "other":
        (root / "memory").mkdir()
        (root / "cpu").mkdir()
    with pytest.raises(CgroupError, match="no cgroup filesystem") as err:
        detect(root)
    assert str(root) in str(err.value)


def test_this_host() -> None:
    root = Path("/sys/fs/cgroup")
    fstype = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(root):
                fstype = fields[fields.index("-") + 1]
    if fstype is None:
        pytest.skip(f"nothing is mounted at {root}")
    expected = CgroupV2 if fstype == "cgroup2" else CgroupV1
    assert type(detect(root)) is expected
