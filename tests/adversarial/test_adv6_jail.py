"""The job's jail (issue 13): what a hostile job saw of the host and of the kernel before, and
no longer does; and ordinary work that must still work inside it.

Each "host visible" and "kernel surface" finding of the issue has a case here that fails on the
code before the jail (each asserts what the jail changed) and passes with it."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from advkit import OUTPUT_CAP, Case, Tjobs, fifo, output
from apiharness import ALICE, BOB, HANG, ROOT

import tjob
from tjob import jail
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.cgroups.v1 import DEVICES
from tjob.spec import JobSpec, Limits

pytestmark = ROOT

MACHINE = platform.machine()
MINIMAL_DEV = {
    "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "fd",
    "stdin", "stdout", "stderr",
}  # fmt: skip


def run(case: Case, argv: list[str], stem: str = "cli", **kw: Any) -> pb.JobStatus:
    st: pb.JobStatus = case.stub(stem).Run(pb.RunRequest(argv=argv, **kw), timeout=HANG)
    return st


def sh(case: Case, text: str, stem: str = "cli") -> str:
    """Run a shell script as a job of ``stem`` (nobody, the stock caps); its whole output."""
    stub = case.stub(stem)
    st = run(case, ["sh", "-c", textwrap.dedent(text)], stem=stem)
    got = output(stub, st.id).decode(errors="replace")
    stub.Wait(pb.JobRef(id=st.id), timeout=HANG)
    return got


def lines_of(text: str) -> dict[str, str]:
    """``KEY rest`` lines -> {KEY: rest}."""
    pairs = (ln.split(None, 1) for ln in text.splitlines() if ln.strip())
    return {p[0]: p[1] if len(p) > 1 else "" for p in pairs}


# --- host visible -------------------------------------------------------------------------------


@pytest.fixture
def home_canary() -> Iterator[Path]:
    """A world-readable file in a world-readable home directory: what any account could read."""
    home = Path("/home") / f"tjob-adv-{uuid.uuid4().hex[:8]}"
    home.mkdir(mode=0o755, parents=True)
    home.chmod(0o755)
    (home / "notes").write_text("alice-home-secret\n")
    (home / "notes").chmod(0o644)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_home_and_other_hidden_paths_show_nothing(case: Case, home_canary: Path) -> None:
    hidden = [p for p in jail.DEFAULT_HIDE if os.path.isdir(p)]
    got = sh(
        case,
        f"""
        cat {home_canary}/notes 2>&1
        for d in {" ".join(hidden)}; do echo "LS $d $(ls -A $d 2>&1 | tr '\\n' ' ')"; done
        """,
    )
    assert "alice-home-secret" not in got
    listed = {ln.split()[1]: ln.split()[2:] for ln in got.splitlines() if ln.startswith("LS ")}
    assert set(listed) == set(hidden)
    assert all(names == [] for names in listed.values()), listed  # each an empty directory


def test_host_kernel_details_in_proc_are_masked(case: Case) -> None:
    masked = ["cmdline", "config.gz", "key-users", "keys", "kallsyms", "timer_list", "kcore"]
    masked = [m for m in masked if os.path.exists(f"/proc/{m}")]
    assert Path("/proc/cmdline").read_bytes()  # the host's has something to hide
    got = sh(case, "".join(f"echo {m} $(head -c 64 /proc/{m} 2>&1 | wc -c)\n" for m in masked))
    assert lines_of(got) == dict.fromkeys(masked, "0"), got


def test_proc_sys_is_read_only(case: Case) -> None:
    got = sh(
        case,
        "echo x 2>&1 >/proc/sys/kernel/core_pattern | tail -1; grep ' /proc/sys ' /proc/mounts",
    )
    assert "Read-only file system" in got
    assert " ro," in got.splitlines()[-1]


def test_pid_1_argv_names_no_install_path(case: Case) -> None:
    got = sh(case, "tr '\\0' ' ' < /proc/1/cmdline")
    assert got.split() == ["tjob-shim", "init"], got  # its title, not the zygote's argv


def test_dev_holds_only_the_minimal_nodes(case: Case) -> None:
    got = sh(case, "ls -A /dev; echo; ls -A /dev/pts; echo; ls -l /dev/ptmx; ls /dev/fuse 2>&1")
    dev, pts, rest = got.split("\n\n", 2)
    assert set(dev.split()) == MINIMAL_DEV
    assert pts.split() == ["ptmx"]  # a devpts of the job's own: none of the host's ptys
    assert "-> pts/ptmx" in rest and "No such file" in rest  # no /dev/fuse, /dev/net/tun, ...


def test_ptys_come_from_the_jobs_own_bounded_pool(case: Case) -> None:
    got = sh(
        case,
        """
        python3 -c '
        import os
        fds = []
        try:
            while len(fds) < 1000:
                fds.append(os.openpty())
        except OSError as e:
            print("stopped", len(fds), e.errno)
        '
        """,
    )
    assert got.split() == ["stopped", "64", "28"], got  # ENOSPC at devpts' max=64


def test_host_is_read_only_even_where_the_job_user_may_write(case: Case) -> None:
    # A world-writable directory on the host (as /var/tmp was): the job cannot write to it.
    d = Path(tempfile.mkdtemp(prefix="tjob-adv-rw-"))
    d.chmod(0o1777)
    try:
        got = sh(case, f"echo x > {d}/planted 2>&1; touch /etc/planted 2>&1; echo done")
        assert got.count("Read-only file system") == 2, got
        assert not (d / "planted").exists()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_state_dir_is_hidden_not_just_refused(case: Case) -> None:
    state = case.h.state
    got = sh(case, f"ls -A {state} 2>&1; echo rc=$?")
    assert got.split() == ["rc=0"], got  # an empty directory: not even its entries' names


# --- shared scratch (closed by private /var/tmp and /run/lock) ----------------------------------


def test_var_tmp_and_run_lock_are_each_jobs_own(case: Case) -> None:
    name = f"tjob-adv-{uuid.uuid4().hex[:8]}"
    with fifo() as written, fifo() as gate:
        bobs = (
            f"umask 077; echo s3cret > /var/tmp/{name}; echo lock > /run/lock/{name}; "
            f"echo ok > {written}; cat {gate}"
        )
        bob = run(case, ["sh", "-c", bobs], stem=BOB)
        assert written.wait() == b"ok\n"
        got = sh(case, f"cat /var/tmp/{name} /run/lock/{name} 2>&1; ls -A /var/tmp /run/lock")
        gate.release()
        case.stub(BOB).Wait(pb.JobRef(id=bob.id), timeout=HANG)
    assert "s3cret" not in got and "lock\n" not in got
    assert got.count("No such file") == 2, got
    assert not Path(f"/var/tmp/{name}").exists() and not Path(f"/run/lock/{name}").exists()


# --- kernel surface -----------------------------------------------------------------------------

# Syscall numbers: (x86_64, aarch64).
NR = {
    "unshare_user": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "pivot_root": (155, 41),
    "open_tree": (428, 428),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425),
    "kexec_load": (246, 104),
    "init_module": (175, 105),
    "personality": (135, 92),
    "acct": (163, 89),
    "swapon": (167, 224),
    "reboot": (169, 142),
    "settimeofday": (164, 170),
    "clock_settime": (227, 112),
    "adjtimex": (159, 171),
    "open_by_handle_at": (304, 265),
    "quotactl": (179, 60),
    "clone3": (435, 435),
}
ARGS = {  # arguments that would succeed (or fail otherwise than EPERM) without the filter
    "unshare_user": "0x10000000",
    "keyctl": "0, -3",  # KEYCTL_GET_KEYRING_ID of the session keyring
    "add_key": "b'user', b'k', b'v', 1, -4",  # into the user keyring
    "userfaultfd": "0",
    "io_uring_setup": "1, ctypes.byref(params)",
    "personality": "0x0040000",  # ADDR_NO_RANDOMIZE
    "clone3": "0, 0",
}
PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
params = (ctypes.c_char * 120)()
def call(name, nr, *args):
    ctypes.set_errno(0)
    rc = libc.syscall(nr, *args)
    print(name, 0 if rc >= 0 else ctypes.get_errno())
"""


def test_kernel_surface_is_refused_with_eperm(case: Case) -> None:
    col = 0 if MACHINE == "x86_64" else 1
    script = PROBE + "".join(
        f"call({name!r}, {nrs[col]}, {ARGS.get(name, '0, 0, 0, 0')})\n" for name, nrs in NR.items()
    )
    if MACHINE == "x86_64":
        script += "call('x32_getpid', 0x40000000 | 39)\n"
    got = lines_of(sh(case, f"python3 -c {_quote(script)}; grep Seccomp: /proc/self/status"))
    assert got.pop("Seccomp:").strip() == "2"
    assert got.pop("clone3") == "38"  # ENOSYS, as Docker does: libc falls back to clone
    x32 = got.pop("x32_getpid", "1")
    assert x32 in ("1", "38"), x32  # EPERM from the filter (ENOSYS if no x32 kernel)
    assert got == dict.fromkeys(got, "1"), got  # every one EPERM


def test_namespaces_cannot_be_made_from_a_job(case: Case) -> None:
    got = sh(case, "for f in -Ur -n -m -p; do unshare $f true 2>&1 | tail -1; done")
    assert got.count("Operation not permitted") == 4, got


def test_no_capability_can_come_back(case: Case) -> None:
    got = lines_of(sh(case, "grep -E '^Cap|^NoNewPrivs' /proc/self/status"))
    assert {k: v.strip() for k, v in got.items()} == {
        "CapInh:": "0" * 16,
        "CapPrm:": "0" * 16,
        "CapEff:": "0" * 16,
        "CapBnd:": "0" * 16,
        "CapAmb:": "0" * 16,
        "NoNewPrivs:": "1",
    }


def test_rlimits_are_the_jobs_not_the_servers(case: Case) -> None:
    got = sh(
        case,
        "python3 -c 'import resource as r; "
        "print(*(r.getrlimit(x) for x in (r.RLIMIT_NOFILE, r.RLIMIT_CORE, r.RLIMIT_FSIZE)))'",
    )
    nofile_hard = min(jail.NOFILE[1], _hard_nofile())
    expected = f"(1024, {nofile_hard}) (0, 0) ({OUTPUT_CAP}, {OUTPUT_CAP})"
    assert got.strip() == expected


def _hard_nofile() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# --- ordinary work still works (library engine: gcc needs more than the stock 20 MiB) -----------


def _run(engine: tjob.Engine, script: str, **kw: Any) -> tuple[int | None, str]:
    job = engine.start(JobSpec(["sh", "-c", script], user="nobody", **kw))
    st = job.wait(HANG)
    return st.exit_code, b"".join(c.data for c in job.output()).decode(errors="replace")


@pytest.mark.cgroup2
def test_the_jail_holds_on_this_kernel(engine: tjob.Engine) -> None:
    """The jail's essentials through the library alone, so the cgroup v2 lane runs them too."""
    script = """
        grep Seccomp: /proc/self/status
        touch /etc/planted 2>&1 | grep -c 'Read-only'
        ls -A /dev | tr '\\n' ' '; echo
        wc -c < /proc/cmdline
        ls -A /home | wc -l
        unshare -U true 2>&1 | grep -c 'not permitted'
        echo x > /var/tmp/x && echo x > /run/lock/x && echo scratch-ok
    """
    code, got = _run(engine, script)
    assert code == 0, got
    lines = got.splitlines()
    assert lines[0].split() == ["Seccomp:", "2"], got
    assert lines[1] == "1", got
    assert set(lines[2].split()) == MINIMAL_DEV, got
    assert lines[3:] == ["0", "0", "1", "scratch-ok"], got


@pytest.mark.cgroup2
def test_ordinary_work_runs_in_the_jail(engine: tjob.Engine) -> None:
    script = """
        set -e
        printf 'b\\na\\nb\\n' | sort | uniq -c | tr -s ' ' | paste -sd, -
        python3 -c 'print(sum(range(10)))'
        cd /tmp
        printf '#include <stdio.h>\\nint main(void){puts("compiled");return 0;}\\n' > hello.c
        gcc -o hello hello.c && ./hello
        git init -q repo && git -C repo status --short && echo git-ok
        ping -c1 -W2 127.0.0.1 >/dev/null && echo ping-ok
        python3 -c 'import os, pty; m, s = os.openpty(); print("pty", os.ttyname(s))'
        echo x > /var/tmp/f && echo y > /run/lock/f && echo z > /dev/shm/f && echo scratch-ok
    """
    code, got = _run(engine, script, limits=Limits(memory_mb=256, cpu_percent=100))
    assert code == 0, got
    assert got.split("\n")[:7] == [
        " 1 a, 2 b",
        "45",
        "compiled",
        "git-ok",
        "ping-ok",
        "pty /dev/pts/0",
        "scratch-ok",
    ], got


def test_scratch_is_sized_to_the_memory_limit(engine: tjob.Engine) -> None:
    code, got = _run(engine, "df -k /tmp /var/tmp /run /dev/shm | tail -n +2 | awk '{print $2}'")
    assert code == 0 and got.split() == [str(20 * 1024)] * 4, got


# --- settings and bad input ---------------------------------------------------------------------


def test_unconfined_turns_the_filter_off(tmp_path: Path, cgroup_parent: str) -> None:
    eng = tjob.Engine(tmp_path / "state", cgroup_parent=cgroup_parent, seccomp="unconfined")
    session = "import ctypes; print(ctypes.CDLL(None).syscall({nr}, 0, -3, 0))".format(
        nr=NR["keyctl"][0 if MACHINE == "x86_64" else 1]
    )  # KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING
    try:
        code, got = _run(eng, f"grep Seccomp: /proc/self/status; python3 -c {_quote(session)}")
        assert code == 0 and got.split()[:2] == ["Seccomp:", "0"], got
        # Without the filter, the keyring calls work: the job's session keyring is its own.
        ours = subprocess.run(
            [sys.executable, "-c", session], capture_output=True, text=True, check=True
        ).stdout.split()
        assert int(got.split()[2]) > 0 and got.split()[2:] != ours, (got, ours)
    finally:
        eng.close()


def test_hide_adds_to_the_defaults(tmp_path: Path, cgroup_parent: str) -> None:
    d = Path(tempfile.mkdtemp(prefix="tjob-adv-hide-"))
    d.chmod(0o755)
    (d / "seen").write_text("x")
    try:
        eng = tjob.Engine(tmp_path / "state", cgroup_parent=cgroup_parent, hide=[str(d)])
        try:
            _, got = _run(eng, f"ls -A {d} /home; echo rc=$?")
            assert sorted(got.split()) == sorted([f"{d}:", "/home:", "rc=0"]), got
        finally:
            eng.close()
    finally:
        shutil.rmtree(d)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ("/nonexistent/profile.json", "No such file"),
        ("bad-json", "not JSON"),
        ("bad-action", "malformed"),
    ],
)
def test_bad_profile_is_refused_at_start(
    tmp_path: Path, cgroup_parent: str, profile: str, message: str
) -> None:
    if profile == "bad-json":
        (tmp_path / profile).write_text("{")
        profile = str(tmp_path / profile)
    elif profile == "bad-action":
        (tmp_path / profile).write_text('{"defaultAction": "SCMP_ACT_EXPLODE"}')
        profile = str(tmp_path / profile)
    with pytest.raises(jail.JailError, match=message):
        tjob.Engine(tmp_path / "state", cgroup_parent=cgroup_parent, seccomp=profile)
    assert not (tmp_path / "state").exists()  # nothing made


def test_tjobs_refuses_a_bad_profile_in_one_line(certs: Path, tmp_path: Path) -> None:
    server = Tjobs(certs, tmp_path / "state", "--seccomp", str(tmp_path / "none.json"))
    assert server.proc.wait(HANG) == 1
    log = server.rest()
    assert len(log) == 1 and log[0].startswith("tjobs: cannot manage jobs: seccomp profile "), log
    assert "none.json: No such file or directory" in log[0]


def test_devices_cgroup_allows_only_the_minimal_nodes(case: Case) -> None:
    devices = Path("/sys/fs/cgroup/devices")
    if not (devices / "devices.list").exists():
        pytest.skip("no cgroup v1 devices controller (cgroup v2: the minimal /dev alone)")
    with fifo() as gate:
        st = run(case, ["cat", str(gate)])
        assert case.h.engine is not None
        cgroup = case.h.engine.get(st.id).cgroup  # <client>/<job>
        allowed = (devices / case.h.cgroup_parent / cgroup / "devices.list").read_text()
        gate.release()
        case.stub().Wait(pb.JobRef(id=st.id), timeout=HANG)
    assert allowed.splitlines() == list(DEVICES)


def test_devices_allowlist_holds_under_a_parent_with_older_jobs(
    tmp_path: Path, cgroup_parent: str
) -> None:
    """A parent that already holds a job cgroup (an engine from before the allowlist) cannot
    take it: each new job's cgroup gets it instead."""
    devices = Path("/sys/fs/cgroup/devices")
    if not (devices / "devices.list").exists():
        pytest.skip("no cgroup v1 devices controller")
    old = devices / cgroup_parent / "old-job"
    old.mkdir(parents=True)
    try:
        eng = tjob.Engine(tmp_path / "state", cgroup_parent=cgroup_parent)
        try:
            assert (devices / cgroup_parent / "devices.list").read_text() == "a *:* rwm\n"
            with fifo() as gate:
                job = eng.start(JobSpec(["cat", str(gate)], user="nobody"))
                allowed = (devices / cgroup_parent / job.cgroup / "devices.list").read_text()
                gate.release()
                assert job.wait(HANG).exit_code == 0
            assert allowed.splitlines() == list(DEVICES)
        finally:
            eng.close()
    finally:
        old.rmdir()


# --- volumes ------------------------------------------------------------------------------------


@pytest.fixture
def volume_server(certs: Path, tmp_path: Path, scratch: Path) -> Iterator[tuple[Tjobs, Path]]:
    """A tjobs serving one directory twice: ``data`` (a directory per client) and ``pool``
    (shared, mode 1777), which lets a client's job reach the other clients' directories on
    the host: the worst an operator might declare."""
    vol = scratch / "vol"
    vol.mkdir(mode=0o1777)
    vol.chmod(0o1777)
    server = Tjobs(
        certs, tmp_path / "state", "--volume", f"data={vol}", "--volume", f"pool={vol}:shared"
    )
    try:
        server.expect("listen on")
        yield server, vol
    finally:
        server.stop()


def _vrun(server: Tjobs, stem: str, script: str, *mounts: pb.VolumeMount) -> tuple[int, str]:
    stub = server.stub(stem)
    st = stub.Run(pb.RunRequest(argv=["sh", "-c", script], volumes=mounts), timeout=HANG)
    got = output(stub, st.id).decode(errors="replace")
    st = stub.Wait(pb.JobRef(id=st.id), timeout=HANG)
    return st.exit_code, got + st.error


def test_a_client_directory_swapped_for_a_symlink_is_not_followed(
    volume_server: tuple[Tjobs, Path],
) -> None:
    server, vol = volume_server
    etc = os.stat("/etc")
    code, _ = _vrun(
        server, ALICE, "echo mine > /tmp/d/f", pb.VolumeMount(name="data", target="/tmp/d")
    )
    assert code == 0
    (alice,) = os.listdir(vol)
    # bob, through the shared view, cannot even move her directory: it is her uid's, 0700.
    script = f"mv /tmp/p/{alice} /tmp/p/moved && ln -s /etc /tmp/p/{alice} && echo swapped"
    code, got = _vrun(server, BOB, script, pb.VolumeMount(name="pool", target="/tmp/p"))
    assert code != 0 and "swapped" not in got, got
    # Had anyone with more rights done it (a shared account, the operator's own tools), a link
    # to /etc stands where her directory was:
    os.rename(vol / alice, vol / "moved")
    os.symlink("/etc", vol / alice)
    # alice's next job: the engine refuses to make or chown through the link; /etc untouched.
    with pytest.raises(grpc.RpcError) as err:
        _vrun(server, ALICE, "echo x > /tmp/d/owned", pb.VolumeMount(name="data", target="/tmp/d"))
    assert f"{alice} is not a directory (a symlink is never followed)" in (
        err.value.details() or ""
    )
    after = os.stat("/etc")
    assert (after.st_uid, after.st_gid, after.st_mode) == (etc.st_uid, etc.st_gid, etc.st_mode)
    assert not os.path.exists("/etc/owned")


def test_a_target_through_a_symlink_of_the_host_is_refused(
    volume_server: tuple[Tjobs, Path], scratch: Path
) -> None:
    server, _ = volume_server
    (scratch / "link").symlink_to("/etc")
    for target in (scratch / "link", scratch / "link" / "sub"):
        mount = pb.VolumeMount(name="data", target=str(target))
        _, got = _vrun(server, ALICE, "echo x > /etc/x-tjob", mount)
        assert "Too many levels of symbolic links" in got, got
    assert not os.path.exists("/etc/x-tjob")


def test_nothing_else_of_the_host_is_writable_with_a_volume(
    volume_server: tuple[Tjobs, Path], scratch: Path
) -> None:
    server, vol = volume_server
    script = "echo x > /tmp/d/ok && (echo x > $1/escape || echo refused) && ls -A /tmp/d/.."
    mount = pb.VolumeMount(name="data", target="/tmp/d")
    stub = server.stub(ALICE)
    req = pb.RunRequest(argv=["sh", "-c", script, "sh", str(scratch)], volumes=[mount])
    st = stub.Run(req, timeout=HANG)
    got = output(stub, st.id).decode()
    assert "Read-only file system" in got and "refused" in got
    # stdout alone (stderr is another pipe: its line may be read after ls's)
    req_out = pb.LogsRequest(id=st.id, follow=True, streams=pb.STREAM_SELECT_STDOUT)
    stdout = b"".join(c.data for c in stub.Logs(req_out, timeout=HANG)).decode()
    assert stdout.splitlines()[-1] == "d"  # the parent is the job's own /tmp, not the volume
    assert not (scratch / "escape").exists()
    assert [os.listdir(vol / d) for d in os.listdir(vol)] == [["ok"]]


def test_tjobs_refuses_a_missing_volume_in_one_line(certs: Path, tmp_path: Path) -> None:
    server = Tjobs(certs, tmp_path / "state", "--volume", f"data={tmp_path}/missing")
    assert server.proc.wait(HANG) == 1
    log = server.rest()
    assert log == [f"tjobs: cannot manage jobs: volume data: {tmp_path}/missing does not exist"]
