"""Shared fixtures. Root-only tests are marked ``root``: they skip when not root, and when
TJOB_REQUIRE_ROOT=1 (``make test`` as root, CI) a skip is turned into a failure instead."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

IS_ROOT = os.geteuid() == 0

# Jobs get /tmp, /var/tmp and /run of their own, and see the rest of the host read-only: files
# a test shares with its jobs (tmp_path, FIFOs) live in SHARED, which jobs can read (and whose
# FIFOs they can open for writing), unless TMPDIR says otherwise (the cgroup v2 guest mounts a
# tmpfs on SHARED and points TMPDIR there).
SHARED = "/var/lib/tjob-test"
if "TMPDIR" not in os.environ:
    if os.geteuid() == 0:
        os.makedirs(SHARED, mode=0o755, exist_ok=True)
        tempfile.tempdir = SHARED
    else:
        tempfile.tempdir = "/var/tmp"
REQUIRE_ROOT = os.environ.get("TJOB_REQUIRE_ROOT") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IS_ROOT:
        return
    for item in items:
        if item.get_closest_marker("root"):
            item.add_marker(pytest.mark.skip(reason="needs root (cgroups, namespaces)"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    xfail = hasattr(report, "wasxfail")  # reported as skipped, but it ran
    if REQUIRE_ROOT and report.skipped and not xfail and item.get_closest_marker("root"):
        report.outcome = "failed"
        report.longrepr = f"root-only test skipped under TJOB_REQUIRE_ROOT=1: {report.longrepr}"


@pytest.fixture
def cgroup_parent() -> Iterator[str]:
    """A cgroup parent of this test's own, so tests never see a running tjobs' jobs; it must
    hold no job cgroup when the test ends (v2: one directory; v1: one per hierarchy)."""
    name = f"tjob-test-{uuid.uuid4().hex[:8]}"
    yield name
    from cgparent import remove_parent

    remove_parent(name)


@pytest.fixture
def cg(cgroup_parent: str) -> object:
    """A cgroup backend of its own on the test's cgroup parent (the engine's is private)."""
    from tjob import cgroups

    backend = cgroups.detect(Path("/sys/fs/cgroup"), cgroup_parent)
    backend.setup()  # finds the hierarchies (and makes the parent, if no engine has yet)
    return backend


@pytest.fixture
def engine(tmp_path: Path, cgroup_parent: str) -> Iterator[object]:
    import tjob

    eng = tjob.Engine(tmp_path / "state", cgroup_parent=cgroup_parent)
    try:
        yield eng
    finally:
        for job in eng.jobs():
            if not job.status().state.finished:
                job.stop(grace=0)
        eng.close()
        shutil.rmtree(tmp_path / "state", ignore_errors=True)


@pytest.fixture
def gate() -> Iterator[Path]:
    """A FIFO a job can block on (``cat GATE``) until the test opens it: no sleeps anywhere."""
    d = Path(tempfile.mkdtemp(prefix="tjob-gate-"))
    d.chmod(0o755)  # jobs run as nobody
    fifo = d / "gate"
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    yield fifo
    fifo.unlink()
    d.rmdir()


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    """The product's certificates (ca, svc, cli/alice, other/bob, admin) in tmp/.tjob."""
    from tjob.api import pki

    d = tmp_path / ".tjob"
    pki.init_dir(d)
    return d
