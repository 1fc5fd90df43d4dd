"""Tenant isolation (issue 13, sections 1 and 4): alice's jobs against bob's, on a server that
gives each client a uid of its own and a cgroup with ceilings (the tjobs defaults), and the
per-client quotas on stored jobs.

Each case failed on the code before it (every client's jobs ran as ``nobody`` in one flat
cgroup, with nothing counted per client).

The shared place the file and socket cases use is a world-writable sticky directory on the
host's disk, as ``/var/tmp`` was to every job before the jail: now the only places two clients
can share are server-declared ``:shared`` volumes, and there the uids are what keeps them
apart. The module's server declares one, mounted at ``SHARED`` in the jobs that ask.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from advkit import Clients, finish, output, read_until
from apiharness import ALICE, BOB, HANG, ROOT, Harness
from cgparent import remove_parent

from tjob.api.quotas import StoreQuota
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.cgroups import ClientLimits
from tjob.volumes import SHARED as SHARED_MODE
from tjob.volumes import Declared

pytestmark = ROOT

CLIENT_PIDS = 64
# Holds every inotify instance its uid may have (fs.inotify.max_user_instances), then waits.
INOTIFY_HOG = """
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
fds = []
while True:
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    fds.append(fd)
print(len(fds), os.strerror(ctypes.get_errno()), flush=True)
time.sleep(1000)
"""
INOTIFY_ONE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
print("inotify", "ok" if fd >= 0 else os.strerror(ctypes.get_errno()))
"""
SOCKET_SERVER = """
import os, socket, sys, time
os.umask(0o177)
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen()
print("listening", oct(os.stat(sys.argv[1]).st_mode & 0o777), flush=True)
time.sleep(1000)
"""
SOCKET_CLIENT = """
import socket, sys
try:
    socket.socket(socket.AF_UNIX).connect(sys.argv[1])
    print("CONNECTED")
except OSError as e:
    print("refused", e.strerror)
"""

# The kernel's user keyring (@u, one per uid) through the raw system calls (no keyutils here):
# `add DESC DATA`, `read ID`, `revoke ID`, `fill` (add keys until the uid's quota refuses),
# `clear`. Prints what it got, or the error.
KEYS = """
import ctypes, os, platform, sys
libc = ctypes.CDLL(None, use_errno=True)
ADD_KEY, KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}[platform.machine()]
USER = ctypes.c_long(-4)  # KEY_SPEC_USER_KEYRING
READ, REVOKE, CLEAR = 11, 3, 7

def check(r):
    if r < 0:
        print("error", os.strerror(ctypes.get_errno()), flush=True)
        sys.exit(0)
    return r

def add(desc, data):
    return check(libc.syscall(ADD_KEY, b"user", desc.encode(), data.encode(), len(data), USER))

what = sys.argv[1]
if what == "add":
    print("added", add(sys.argv[2], sys.argv[3]))
elif what == "read":
    buf = ctypes.create_string_buffer(64)
    n = check(libc.syscall(KEYCTL, READ, ctypes.c_long(int(sys.argv[2])), buf, 64))
    print("read", buf.raw[:n].decode())
elif what == "revoke":
    check(libc.syscall(KEYCTL, REVOKE, ctypes.c_long(int(sys.argv[2]))))
    print("revoked")
elif what == "clear":
    check(libc.syscall(KEYCTL, CLEAR, USER))
    print("cleared")
else:
    n = 0
    while libc.syscall(ADD_KEY, b"user", f"k{n}".encode(), b"x" * 64, 64, USER) >= 0:
        n += 1
    print("filled", n, os.strerror(ctypes.get_errno()))
"""


def uid_range(size: int = 16) -> tuple[int, int]:
    first = 61184 + random.randrange(0, (65519 - 61184) // size) * size
    return first, first + size - 1


SHARED = "/tmp/shared"  # where jobs that ask see the shared volume


@pytest.fixture(scope="module")
def shared() -> Iterator[Path]:
    """A directory every uid may write, sticky (as /tmp and /var/tmp are), declared to the
    module's server as the ``:shared`` volume ``shared``."""
    d = Path(tempfile.mkdtemp(prefix="tjob-adv-shared-"))
    d.chmod(0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def server(shared: Path) -> Iterator[tuple[Harness, Clients]]:
    root = Path(tempfile.mkdtemp(prefix="tjob-adv-"))
    root.chmod(0o755)
    parent = f"tjob-adv-{uuid.uuid4().hex[:8]}"
    clients = ClientLimits(pids=CLIENT_PIDS)
    volumes = {"shared": Declared(str(shared), SHARED_MODE)}
    try:
        ten = {"job_user": None, "uid_range": uid_range(), "clients": clients}
        with Harness(root, cgroup_parent=parent, volumes=volumes, **ten) as h:  # type: ignore[arg-type]
            c = Clients(h)
            try:
                yield h, c
            finally:
                c.close()
    finally:
        remove_parent(parent)
        shutil.rmtree(root, ignore_errors=True)


def ran(c: Clients, stem: str, argv: list[str], volume: bool = False) -> bytes:
    """Run to its end (with the shared volume at ``SHARED`` if asked); its output (it must
    exit 0)."""
    stub = c.stub(stem)
    st = stub.Run(run_request(argv) if volume else pb.RunRequest(argv=argv), timeout=HANG)
    end = stub.Wait(pb.JobRef(id=st.id), timeout=HANG)
    out = output(stub, st.id)
    assert end.exit_code == 0, out
    return out


def run_request(argv: list[str]) -> pb.RunRequest:
    return pb.RunRequest(argv=argv, volumes=[pb.VolumeMount(name="shared", target=SHARED)])


def uid_of(c: Clients, stem: str) -> int:
    return int(ran(c, stem, ["id", "-u"]))


def test_bob_cannot_read_overwrite_or_delete_a_file_alice_left(
    server: tuple[Harness, Clients], shared: Path
) -> None:
    _, c = server
    ran(c, ALICE, ["sh", "-c", 'umask 077; echo secret > "$0/a"', SHARED], volume=True)
    alice = uid_of(c, ALICE)
    st = (shared / "a").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (alice, alice, 0o600)  # hers only
    attack = (
        'cat "$0/a" && echo READ; echo x > "$0/a" && echo WROTE; rm -f "$0/a" && echo DELETED; '
        'mv "$0/a" "$0/b" && echo MOVED; echo done'
    )
    text = ran(c, BOB, ["sh", "-c", attack, SHARED], volume=True).decode()
    assert "done" in text.split(), text
    assert not {"secret", "READ", "WROTE", "DELETED", "MOVED"} & set(text.split()), text
    assert (shared / "a").read_text() == "secret\n"


def test_bob_cannot_connect_to_alices_unix_socket(
    server: tuple[Harness, Clients], shared: Path
) -> None:
    _, c = server
    path = f"{SHARED}/sock"
    alice = c.stub(ALICE)
    st = alice.Run(run_request(["python3", "-c", SOCKET_SERVER, path]), timeout=HANG)
    try:
        assert b"listening 0o600" in read_until(alice, st.id, b"\n")
        assert (shared / "sock").stat().st_uid == uid_of(c, ALICE)  # on the host, hers
        text = ran(c, BOB, ["python3", "-c", SOCKET_CLIENT, path], volume=True).decode()
        assert text == "refused Permission denied\n", text
        mine = ran(c, ALICE, ["python3", "-c", SOCKET_CLIENT, path], volume=True)
        assert mine == b"CONNECTED\n"
    finally:
        finish(alice, st.id)


def test_alice_holding_every_inotify_instance_leaves_bob_his(
    server: tuple[Harness, Clients],
) -> None:
    _, c = server
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    alice = c.stub(ALICE)
    st = alice.Run(pb.RunRequest(argv=["python3", "-c", INOTIFY_HOG]), timeout=HANG)
    try:
        held, *why = read_until(alice, st.id, b"\n").decode().split()
        assert int(held) == limit and " ".join(why) == "Too many open files", (held, why)
        assert ran(c, BOB, ["python3", "-c", INOTIFY_ONE]) == b"inotify ok\n"
        # `tail -f` works for bob too (it would fall back to polling, silently, without).
        assert ran(c, ALICE, ["python3", "-c", INOTIFY_ONE]) != b"inotify ok\n"
    finally:
        finish(alice, st.id)


def test_a_clients_jobs_together_cannot_pass_its_pids_ceiling(
    server: tuple[Harness, Clients],
) -> None:
    h, c = server
    alice = c.stub(ALICE)
    # Each job may have 64 processes (the default caps); alice's together may have 64 too.
    fork = "n=0; while [ $n -lt 50 ]; do sleep 1000 & n=$((n+1)); done; echo made; wait"
    first = alice.Run(pb.RunRequest(argv=["sh", "-c", fork]), timeout=HANG)
    # The second starts once the first has its 50: else the two race for the 64.
    assert b"made" in read_until(alice, first.id, b"made")
    second = alice.Run(pb.RunRequest(argv=["sh", "-c", fork]), timeout=HANG)
    try:
        text = output(alice, second.id).decode()  # its forks fail: the shell gives up
        assert "fork" in text.lower() or "resource" in text.lower(), text
        assert h.engine is not None
        job = h.engine.get(first.id)
        client = job.cgroup.split("/")[0]
        pids = Path("/sys/fs/cgroup/pids") / h.cgroup_parent / client / "pids.current"
        if not pids.exists():  # cgroup v2
            pids = Path("/sys/fs/cgroup") / h.cgroup_parent / client / "pids.current"
        assert int(pids.read_text()) <= CLIENT_PIDS
        assert ran(c, BOB, ["echo", "bob runs"]) == b"bob runs\n"
    finally:
        finish(alice, first.id)
        finish(alice, second.id)


@pytest.mark.parametrize("quota", ["jobs", "disk"])
def test_a_client_over_its_stored_quota_is_refused_runs_until_it_removes_jobs(
    tmp_path: Path, quota: str
) -> None:
    tmp_path.chmod(0o755)
    parent = f"tjob-adv-{uuid.uuid4().hex[:8]}"
    store = StoreQuota(jobs=2) if quota == "jobs" else StoreQuota(disk=256 << 10)
    try:
        with Harness(tmp_path, cgroup_parent=parent, store=store) as h:
            c = Clients(h)
            try:
                stub = c.stub(ALICE)
                if quota == "jobs":
                    ids = [stub.Run(pb.RunRequest(argv=["true"]), timeout=HANG).id for _ in "ab"]
                else:  # 1 MiB of output: four times the quota, within the output cap
                    ids = [stub.Run(pb.RunRequest(argv=["head", "-c", "1M", "/dev/zero"])).id]
                for job_id in ids:
                    stub.Wait(pb.JobRef(id=job_id), timeout=HANG)
                with pytest.raises(grpc.RpcError) as info:
                    stub.Run(pb.RunRequest(argv=["true"]), timeout=HANG)
                assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert f"tjobs --client-{quota}" in (info.value.details() or "")
                assert ran(c, BOB, ["echo", "bob runs"]) == b"bob runs\n"  # his own quota
                stub.Remove(pb.JobRef(id=ids[0]), timeout=HANG)
                assert ran(c, ALICE, ["echo", "again"]) == b"again\n"
            finally:
                c.close()
    finally:
        remove_parent(parent)


def test_bob_cannot_reach_alices_keys_nor_be_starved_of_his_own(
    server: tuple[Harness, Clients],
) -> None:
    _, c = server

    def keys(stem: str, *args: str) -> str:
        return ran(c, stem, ["python3", "-c", KEYS, *args]).decode().strip()

    added = keys(ALICE, "add", "tjob-secret", "s3cret")
    if added == "error Operation not permitted":
        # A seccomp filter refuses the keyring to every job: nothing is shared, nothing to fill.
        assert keys(BOB, "add", "bobs", "own") == "error Operation not permitted"
        return
    key = added.split()[1]
    try:
        assert keys(ALICE, "read", key) == "read s3cret"  # hers, in her next job too
        for attempt in ("read", "revoke"):
            assert keys(BOB, attempt, key).startswith("error "), attempt
        filled = keys(ALICE, "fill")  # her uid's key quota, full after her job has ended
        assert filled.startswith("filled ") and filled.endswith("Disk quota exceeded"), filled
        assert keys(BOB, "add", "bobs", "own").startswith("added ")
        assert keys(ALICE, "read", key) == "read s3cret"
    finally:
        assert keys(ALICE, "clear") == "cleared"
        keys(BOB, "clear")
