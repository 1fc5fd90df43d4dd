"""Volumes (issue 13, section 2): server-declared host directories mounted into the jobs that
ask for them, with real jobs on the real kernel; and every bad input refused up front."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from apiharness import ALICE, BOB, HANG, Harness

import tjob
from tjob import Engine, InvalidSpec, JobSpec, JobState, Volume
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.volumes import (
    RO,
    SHARED,
    Declared,
    VolumeError,
    check_declared,
    client_dir,
    parse_declaration,
    parse_request,
)

NOBODY = pwd.getpwnam("nobody")


def run(engine: Engine, script: str, volumes: list[Volume], owner: str = "alice") -> tjob.Job:
    spec = JobSpec(["sh", "-c", script], user="nobody", owner=owner, volumes=volumes)
    job = engine.start(spec)
    job.wait(30)
    return job


def out(job: tjob.Job) -> str:
    return b"".join(c.data for c in job.output(follow=True)).decode()


@pytest.fixture
def host() -> Iterator[Path]:
    """World-readable: ``rw`` (per client), ``ro`` (with a file), ``shared`` (mode 1777)."""
    d = Path(tempfile.mkdtemp(prefix="tjob-vol-"))
    d.chmod(0o755)
    for name in ("rw", "ro", "shared"):
        (d / name).mkdir()
    (d / "ro" / "hello").write_text("hello from the host\n")
    (d / "shared").chmod(0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def vengine(tmp_path: Path, cgroup_parent: str, host: Path) -> Iterator[Engine]:
    volumes = {
        "data": str(host / "rw"),
        "ref": Declared(str(host / "ro"), RO),
        "pool": Declared(str(host / "shared"), SHARED),
    }
    eng = Engine(tmp_path / "state", cgroup_parent=cgroup_parent, volumes=volumes)
    try:
        yield eng
    finally:
        for job in eng.jobs():
            if not job.status().state.finished:
                job.stop(grace=0)
        eng.close()


# ------------------------------------------------------------------ real jobs


@pytest.mark.root
@pytest.mark.cgroup2
def test_writable_volume_is_the_clients_own_directory_owned_by_the_jobs_uid(
    vengine: Engine, host: Path
) -> None:
    job = run(vengine, "echo written > /tmp/d/f && ls -A /tmp/d", [Volume("data", "/tmp/d")])
    assert job.status().exit_code == 0, out(job)
    assert out(job) == "f\n"  # its own directory: nothing of anyone else's
    mine = host / "rw" / "alice"
    assert (mine / "f").read_text() == "written\n"
    st, dst = (mine / "f").stat(), mine.stat()
    assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert (dst.st_uid, dst.st_gid, dst.st_mode & 0o777) == (NOBODY.pw_uid, NOBODY.pw_gid, 0o700)


@pytest.mark.root
@pytest.mark.cgroup2
def test_read_only_volume_reads_and_refuses_writes(vengine: Engine, host: Path) -> None:
    job = run(
        vengine,
        "cat /var/tmp/ref/hello; echo x > /var/tmp/ref/new || echo refused; "
        "grep ' /var/tmp/ref ' /proc/self/mounts",
        [Volume("ref", "/var/tmp/ref")],
    )
    text = out(job)
    assert text.startswith("hello from the host\n"), text
    assert "Read-only file system" in text and "refused" in text
    # stdout and stderr are two pipes: the mounts line is not always the last one read.
    (mount,) = [line for line in text.splitlines() if " /var/tmp/ref " in line]
    options = mount.split()[3].split(",")
    assert {"ro", "nosuid", "nodev"} <= set(options)
    assert sorted(os.listdir(host / "ro")) == ["hello"]


@pytest.mark.root
def test_writable_volume_asked_read_only_is_read_only(vengine: Engine, host: Path) -> None:
    job = run(vengine, "echo x > /tmp/d/f || echo refused", [Volume("data", "/tmp/d", True)])
    assert "Read-only file system" in out(job) and "refused" in out(job)
    assert not (host / "rw" / "alice" / "f").exists()


@pytest.mark.root
@pytest.mark.cgroup2
def test_clients_never_see_each_others_directories(vengine: Engine, host: Path) -> None:
    alice = run(vengine, "echo secret > /tmp/d/mine", [Volume("data", "/tmp/d")])
    assert alice.status().exit_code == 0
    bob = run(
        vengine,
        "ls -A /tmp/d; cat /tmp/d/../alice/mine /tmp/d/mine 2>&1; "
        "grep -c ' /tmp/d ' /proc/self/mounts",
        [Volume("data", "/tmp/d")],
        owner="bob",
    )
    text = out(bob)
    assert "secret" not in text, text
    assert text.splitlines()[-1] == "1"  # one mount there: bob's directory, not the volume
    assert sorted(os.listdir(host / "rw")) == ["alice", "bob"]
    assert os.listdir(host / "rw" / "bob") == []


@pytest.mark.root
def test_a_volume_asked_for_twice_is_the_same_directory_each_time(
    vengine: Engine, host: Path
) -> None:
    (host / "ro" / "a").mkdir()
    # The second "data" comes from the first one's mount, not from its path, which "ref"
    # (read-only, with an "a" of its own) covers by then.
    mounts = [
        Volume("data", "/tmp/x/a"),
        Volume("ref", "/tmp/x"),
        Volume("data", "/tmp/y"),
        Volume("data", "/tmp/z", read_only=True),
    ]
    script = "echo 1 > /tmp/y/f && cat /tmp/z/f && (echo 2 > /tmp/z/g || echo refused)"
    job = run(vengine, script, mounts)
    assert "1\n" in out(job) and "refused" in out(job), out(job)
    assert os.listdir(host / "rw" / "alice") == ["f"]
    assert sorted(os.listdir(host / "ro")) == ["a", "hello"]
    assert os.listdir(host / "ro" / "a") == []


@pytest.mark.root
def test_shared_volume_is_the_whole_directory_for_everyone(vengine: Engine, host: Path) -> None:
    a = run(vengine, "echo hi > /run/pool/from-alice", [Volume("pool", "/run/pool")])
    assert a.status().exit_code == 0, out(a)
    b = run(vengine, "cat /run/pool/from-alice", [Volume("pool", "/run/pool")], owner="bob")
    assert out(b) == "hi\n"


@pytest.mark.root
def test_targets_that_cannot_be_made_or_are_symlinks_fail_the_job_clearly(
    vengine: Engine,
) -> None:
    job = run(vengine, "true", [Volume("ref", "/no-such-dir-tjob")])
    st = job.status()
    assert st.state is JobState.FAILED
    assert st.error == "volume: mkdir /no-such-dir-tjob: Read-only file system"
    if os.path.islink("/var/run"):  # Debian's /var/run -> /run
        st = run(vengine, "true", [Volume("ref", "/var/run/x")]).status()
        assert st.state is JobState.FAILED
        assert st.error == "volume: target /var/run/x: Too many levels of symbolic links"


@pytest.mark.root
def test_an_existing_directory_of_the_host_is_covered_for_that_job_only(
    vengine: Engine,
) -> None:
    job = run(vengine, "ls /usr/local", [Volume("ref", "/usr/local")])
    assert out(job) == "hello\n"
    assert "hello" not in os.listdir("/usr/local")


@pytest.mark.root
def test_bad_requests_are_refused_before_anything_is_made(vengine: Engine, host: Path) -> None:
    bad = [
        (Volume("nope", "/tmp/x"), "no such volume: nope"),
        (Volume("ref", "/tmp/x", False), "volume ref is read-only"),
        (Volume("data", "/home/x"), "hidden path"),
        (Volume("data", "/proc/x"), "/proc, /sys or /dev"),
        (Volume("data", "/dev"), "/proc, /sys or /dev"),
        (Volume("data", "/sys/fs"), "/proc, /sys or /dev"),
        (Volume("data", "tmp/x"), "absolute"),
        (Volume("data", "/tmp/../etc"), "'..'"),
        (Volume("data", "/"), "root"),
    ]
    for volume, message in bad:
        with pytest.raises(InvalidSpec, match=message):
            vengine.start(JobSpec(["true"], owner="mallory", volumes=[volume]))
    twice = [Volume("data", "/tmp/a"), Volume("ref", "/tmp/a/")]
    with pytest.raises(InvalidSpec, match="twice"):
        vengine.start(JobSpec(["true"], owner="mallory", volumes=twice))
    assert vengine.jobs() == []
    assert not (host / "rw" / "mallory").exists()


@pytest.mark.root
def test_declared_paths_must_be_existing_directories(
    tmp_path: Path, cgroup_parent: str, host: Path
) -> None:
    (host / "file").write_text("")
    for path, message in [
        (host / "missing", "does not exist"),
        (host / "file", "is not a directory"),
        ("relative", "must be absolute"),
    ]:
        with pytest.raises(VolumeError, match=message):
            Engine(tmp_path / "state", cgroup_parent=cgroup_parent, volumes={"v": str(path)})


# ------------------------------------------------------------------ through the API


@pytest.mark.root
def test_the_api_mounts_volumes_and_names_an_unknown_one(tmp_path: Path, host: Path) -> None:
    volumes = {"data": str(host / "rw"), "ref": Declared(str(host / "ro"), RO)}
    with Harness(tmp_path, volumes=volumes) as h:
        mounts = [
            pb.VolumeMount(name="data", target="/tmp/d"),
            pb.VolumeMount(name="ref", target="/tmp/r", mode=pb.VOLUME_MODE_READ_ONLY),
        ]
        st = h.run(["sh", "-c", "cat /tmp/r/hello > /tmp/d/copy"], volumes=mounts)
        st = h.stub(ALICE).Wait(pb.JobRef(id=st.id), timeout=HANG)
        assert st.exit_code == 0
        assert [p.name for p in (host / "rw").iterdir()] == [st.owner]
        assert (host / "rw" / st.owner / "copy").read_text() == "hello from the host\n"
        for mount, message in [
            (pb.VolumeMount(name="nope", target="/d"), "no such volume: nope"),
            (
                pb.VolumeMount(name="ref", target="/d", mode=pb.VOLUME_MODE_READ_WRITE),
                "read-only",
            ),
            (pb.VolumeMount(name="data", target="/proc/x"), "/proc"),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                h.run(["true"], stem=BOB, volumes=[mount])
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert message in (err.value.details() or "")
        assert [p.name for p in (host / "rw").iterdir()] == [st.owner]  # nothing made for bob


# ------------------------------------------------------------------ parsing (no root)


def test_requests_parse_as_the_cli_writes_them() -> None:
    assert parse_request("data:/data") == Volume("data", "/data", None)
    assert parse_request("data:/data:ro") == Volume("data", "/data", True)
    assert parse_request("data:/data:rw") == Volume("data", "/data", False)
    assert parse_request("data:/a:b") == Volume("data", "/a:b", None)
    for bad in ("data", "data:", "data:rel", ":/x", "da ta:/x", "data:/a/../b"):
        with pytest.raises(InvalidSpec):
            parse_request(bad)


def test_declarations_parse_as_tjobs_takes_them(tmp_path: Path) -> None:
    assert parse_declaration("d=/srv/d") == ("d", Declared("/srv/d"))
    assert parse_declaration("d=/srv/d:ro") == ("d", Declared("/srv/d", RO))
    assert parse_declaration("d=/srv/d:shared") == ("d", Declared("/srv/d", SHARED))
    assert parse_declaration("d=/a:b") == ("d", Declared("/a:b"))
    with pytest.raises(VolumeError):
        parse_declaration("/srv/d")
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    assert check_declared({"d": str(link)}) == {"d": Declared(str(tmp_path))}
    for bad in ({"bad name": str(tmp_path)}, {"d": "/"}, {"d": Declared(str(tmp_path), "rwx")}):
        with pytest.raises(VolumeError):
            check_declared(bad)


def test_client_directories_are_plain_names_or_digests() -> None:
    assert client_dir("alice") == "alice"
    odd = [client_dir(n) for n in ("", "..", ".", "a/b", "CN=x y", "../etc")]
    assert all(d.startswith("~") and "/" not in d for d in odd)
    assert len(set(odd)) == len(odd)
