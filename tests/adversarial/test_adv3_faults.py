"""Faults: the server killed mid-write, cgroupfs missing or read-only, the state dir full,
commands that cannot start, the job user missing. Each must give a clear error, never a crash
or a hang, and leave nothing behind."""

from __future__ import annotations

import os
import pwd
import queue
import re
import shutil
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from advkit import (
    Case,
    Clients,
    RawGrpc,
    Tjobs,
    children_of,
    code_of,
    finish,
    health_call,
    output,
)
from apiharness import ADMIN, ALICE, HANG, ROOT, Harness
from cgparent import remove_parent

from tjob import Engine
from tjob.adopt import NEVER_STARTED
from tjob.api import pki
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.errors import CgroupError

pytestmark = ROOT

Code = grpc.StatusCode
CGROUP = Path("/sys/fs/cgroup")


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    d = tmp_path / "certs"
    pki.init_dir(d)
    return d


def no_cgroup_left(job_ids: list[str], parent: str = "tjob") -> None:
    for ctrl in ("cpu", "cpuacct", "memory", "blkio", "pids", "freezer"):
        left = [i for i in job_ids if list((CGROUP / ctrl / parent).glob(f"*/{i}"))]
        left += [i for i in job_ids if (CGROUP / ctrl / parent / i).exists()]
        assert not left, f"cgroups left in {ctrl}: {left}"


# --- the server killed while it writes ----------------------------------------------------------


def test_kill_9_during_runs_loses_no_acknowledged_job(certs: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = Tjobs(certs, state)
    first.expect("listen on")
    stub = first.stub(ALICE)
    acked: queue.Queue[str] = queue.Queue()

    def writer() -> None:  # Runs back to back, until the server dies under one
        req = pb.RunRequest(argv=["sh", "-c", "echo out; echo err >&2; exit 5"])
        while True:
            try:
                acked.put(stub.Run(req, timeout=HANG).id)
            except grpc.RpcError:
                return

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    ids = [acked.get(timeout=HANG) for _ in range(40)]
    first.proc.send_signal(signal.SIGKILL)  # while Runs are in flight
    first.stop()
    t.join(HANG)
    while not acked.empty():
        ids.append(acked.get())

    second = Tjobs(certs, state)
    try:
        second.expect("listen on")
        admin = second.stub(ADMIN)
        listed = [j.id for j in admin.List(pb.ListRequest(), timeout=HANG).jobs]
        assert len(listed) == len(set(listed))  # no job twice
        assert set(ids) <= set(listed)  # every job a client was told about is there
        for job_id in listed:
            st = admin.Wait(pb.JobRef(id=job_id), timeout=HANG)
            if job_id in ids:
                assert (st.state, st.exit_code) == (pb.JOB_STATE_EXITED, 5), st
                assert output(admin, job_id) in (b"out\nerr\n", b"err\nout\n")
            else:  # caught mid-Run by the kill: it ran, is lost, or never reached a supervisor
                never_started = (st.state, st.error) == (pb.JOB_STATE_FAILED, NEVER_STARTED)
                assert st.state in (pb.JOB_STATE_EXITED, pb.JOB_STATE_LOST) or never_started, (
                    f"{pb.JobState.Name(st.state)}: {st.error}"
                )
        no_cgroup_left(listed)
        assert health_call(second.raw())
    finally:
        assert second.stop() == 0


# --- cgroupfs missing or read-only --------------------------------------------------------------


def test_engine_without_cgroups_raises_a_clear_error(tmp_path: Path) -> None:
    kids = children_of(os.getpid())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CgroupError, match=r"no cgroup filesystem found at .*empty"):
        Engine(tmp_path / "state", cgroup_root=empty)
    # A v1 host where one controller is not mounted.
    v1 = tmp_path / "v1"
    for ctrl in ("cpu", "cpuacct", "memory", "blkio", "freezer"):
        (v1 / ctrl).mkdir(parents=True)
        (v1 / ctrl / "cgroup.procs").touch()
    with pytest.raises(CgroupError, match=r"cgroup v1 controller 'pids' is not mounted at"):
        Engine(tmp_path / "state", cgroup_root=v1)
    # A v2 host whose root does not offer the pids controller.
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu memory io\n")
    with pytest.raises(CgroupError, match=r"cgroup v2 controller\(s\) pids not available"):
        Engine(tmp_path / "state", cgroup_root=v2)
    # Nothing half-made: no state dir, no fork server.
    assert not (tmp_path / "state").exists()
    assert children_of(os.getpid()) == kids


def in_private_mounts(script: str, *args: str) -> tuple[str, ...]:
    """A prefix that runs tjobs after ``script`` changed the mounts of a private mount
    namespace (the host's stay as they are)."""
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, *args)


def test_missing_cgroup_controller_refuses_at_startup(certs: Path, tmp_path: Path) -> None:
    prefix = in_private_mounts('umount /sys/fs/cgroup/pids && exec "$@"', "sh")
    server = Tjobs(certs, tmp_path / "state", prefix=prefix)
    line = server.refusal()
    assert line == (
        "tjobs: cannot manage jobs: cgroup v1 controller 'pids' is not mounted at "
        "/sys/fs/cgroup/pids"
    )


@pytest.fixture
def empty_cgroup() -> Iterator[Path]:
    """A real, empty pids cgroup; bound over the pids mount it looks like a fresh hierarchy."""
    d = CGROUP / "pids" / f"tjob-adv-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    yield d
    for sub in sorted(d.glob("**/"), key=lambda p: len(p.parts), reverse=True):
        sub.rmdir()


READ_ONLY_PIDS = (
    'mount --bind "$0" /sys/fs/cgroup/pids && '
    'mount -o remount,ro,bind /sys/fs/cgroup/pids && exec "$@"'
)


def test_read_only_cgroupfs_refuses_at_startup(
    certs: Path, tmp_path: Path, empty_cgroup: Path
) -> None:
    server = Tjobs(
        certs, tmp_path / "state", prefix=in_private_mounts(READ_ONLY_PIDS, str(empty_cgroup))
    )
    line = server.refusal()
    assert line == (
        "tjobs: cannot manage jobs: cannot create /sys/fs/cgroup/pids/tjob: Read-only file system"
    )


def test_cgroupfs_read_only_after_startup_fails_each_job_clearly(
    certs: Path, tmp_path: Path, empty_cgroup: Path
) -> None:
    (empty_cgroup / "tjob").mkdir()  # the parent exists, so start-up has nothing to write
    server = Tjobs(
        certs, tmp_path / "state", prefix=in_private_mounts(READ_ONLY_PIDS, str(empty_cgroup))
    )
    try:
        server.expect("listen on")
        stub = server.stub(ALICE)
        st = stub.Run(pb.RunRequest(argv=["echo", "never"]), timeout=HANG)
        assert st.state == pb.JOB_STATE_FAILED
        # Its client's cgroup is the first thing made for it (the job's own goes in there).
        assert re.fullmatch(
            r"cannot create client cgroup c-alice-\w+: Read-only file system", st.error
        )
        assert stub.Wait(pb.JobRef(id=st.id), timeout=HANG).state == pb.JOB_STATE_FAILED
        assert output(stub, st.id) == b""
        no_cgroup_left([st.id])  # what it made in the writable hierarchies is gone again
        assert health_call(server.raw())
    finally:
        assert server.stop() == 0


# --- the state dir full -------------------------------------------------------------------------


def test_state_dir_full(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(state)], check=True)
    parent = f"tjob-adv-{uuid.uuid4().hex[:8]}"
    try:
        with Harness(tmp_path, cgroup_parent=parent) as h:
            clients = Clients(h)
            try:
                stub = clients.stub(ALICE)
                # A job's output fills the disk: it runs on, its output is cut and marked.
                flood = stub.Run(
                    pb.RunRequest(argv=["sh", "-c", "head -c 8000000 /dev/zero; exit 3"]),
                    timeout=HANG,
                )
                chunks = list(stub.Logs(pb.LogsRequest(id=flood.id, follow=True), timeout=HANG))
                st = stub.Wait(pb.JobRef(id=flood.id), timeout=HANG)
                assert (st.exit_code, st.output_truncated) == (3, True)
                assert "No space left on device" in st.error and chunks[-1].truncated
                # With the disk full to the last byte, a Run is refused with the reason.
                filler = state / "filler"
                subprocess.run(
                    ["dd", "if=/dev/zero", f"of={filler}", "bs=64k"],
                    capture_output=True,
                    check=False,
                    timeout=HANG,
                )
                with pytest.raises(grpc.RpcError) as info:
                    stub.Run(pb.RunRequest(argv=["echo", "x"]), timeout=HANG)
                assert info.value.code() is Code.RESOURCE_EXHAUSTED
                assert "disk is full" in str(info.value.details()), info.value.details()
                assert [j.id for j in stub.List(pb.ListRequest(), timeout=HANG).jobs] == [flood.id]
                assert health_call(RawGrpc.to(h))
                # Room again: it carries on.
                filler.unlink()
                stub.Remove(pb.JobRef(id=flood.id), timeout=HANG)
                ok = stub.Run(pb.RunRequest(argv=["echo", "back"]), timeout=HANG)
                assert output(stub, ok.id) == b"back\n"
                assert h.engine is not None and h.engine.diagnostics().cgroups == frozenset()
            finally:
                clients.close()
    finally:
        subprocess.run(["umount", "-l", str(state)], check=True)
        remove_parent(parent, check=False)


# --- commands that cannot start -----------------------------------------------------------------


def unstartable(scratch: Path) -> dict[str, tuple[list[str], str, str]]:
    """name -> (argv, workdir, what the error must say)."""
    bad_shebang = scratch / "bad-shebang"
    bad_shebang.write_text("#!/no/such/interpreter\n")
    garbage = scratch / "garbage"
    garbage.write_bytes(b"\x7fELF but not really\x00\x01")
    root_only = scratch / "root-only"
    shutil.copy("/bin/true", root_only)
    root_dir = scratch / "root-dir"
    root_dir.mkdir(mode=0o700)
    for p in (bad_shebang, garbage):
        p.chmod(0o755)
    root_only.chmod(0o700)
    return {
        "no such path": (["/no/such/cmd"], "", "exec /no/such/cmd: No such file or directory"),
        "not on PATH": (["no-such-command-xyz"], "", "No such file or directory"),
        "not executable": (["/etc/passwd"], "", "exec /etc/passwd: Permission denied"),
        "a directory": (["/tmp"], "", "exec /tmp: Permission denied"),
        "bad interpreter": ([str(bad_shebang)], "", "No such file or directory"),
        "not a program": ([str(garbage)], "", "Exec format error"),
        "root's only": ([str(root_only)], "", "Permission denied"),
        "no such workdir": (["true"], "/no/such/dir", "chdir /no/such/dir: No such file"),
        "root's workdir": (["true"], str(root_dir), "Permission denied"),
    }


CANNOT_START = [
    "no such path",
    "not on PATH",
    "not executable",
    "a directory",
    "bad interpreter",
    "not a program",
    "root's only",
    "no such workdir",
    "root's workdir",
]


@pytest.mark.parametrize("what", CANNOT_START)
def test_command_that_cannot_start_is_a_failed_job(case: Case, scratch: Path, what: str) -> None:
    argv, workdir, reason = unstartable(scratch)[what]
    stub = case.stub()
    st = stub.Run(pb.RunRequest(argv=argv, workdir=workdir), timeout=HANG)
    assert st.state == pb.JOB_STATE_FAILED and reason in st.error, st.error
    assert not st.HasField("exit_code") and not st.HasField("pid")
    assert stub.Wait(pb.JobRef(id=st.id), timeout=HANG).error == st.error
    assert output(stub, st.id) == b""
    assert finish(stub, st.id).state == pb.JOB_STATE_FAILED  # stopping it is harmless


# --- the job user missing -----------------------------------------------------------------------


def unused_uid() -> int:
    uid = 54321
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def test_missing_job_user_is_refused_at_startup(certs: Path, tmp_path: Path) -> None:
    line = Tjobs(certs, tmp_path / "state", "--job-user", "nosuchuser").refusal()
    assert line == "tjobs: --job-user 'nosuchuser': no such user on this host"


def test_numeric_job_user_without_an_account_is_refused_at_startup(
    certs: Path, tmp_path: Path
) -> None:
    server = Tjobs(certs, tmp_path / "state", "--job-user", str(unused_uid()))
    try:
        # Its first line is either the refusal or, today, the "listen on" of a started server.
        first = server.next_line()
        assert first.startswith("tjobs: ") and "no such user" in first, first
    finally:
        server.stop()


def test_job_user_gone_while_serving_refuses_runs_clearly(tmp_path: Path) -> None:
    # The account was there when tjobs started (it checks) and has been removed since.
    parent = f"tjob-adv-{uuid.uuid4().hex[:8]}"
    try:
        with Harness(tmp_path, job_user="tjob-adv-removed", cgroup_parent=parent) as h:
            clients = Clients(h)
            try:
                stub = clients.stub(ALICE)
                with pytest.raises(grpc.RpcError) as info:
                    stub.Run(pb.RunRequest(argv=["true"]), timeout=HANG)
                assert info.value.code() is Code.INVALID_ARGUMENT
                assert info.value.details() == "no such user: tjob-adv-removed"
                assert stub.List(pb.ListRequest(), timeout=HANG).jobs == []  # nothing was made
                assert code_of(stub.List, pb.ListRequest()) is Code.OK
            finally:
                clients.close()
    finally:
        remove_parent(parent, check=False)
