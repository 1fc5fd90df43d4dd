"""Hostile jobs: each runs as an ordinary client's (alice's) job, under the server's default job
user (nobody) and caps, while a job of bob's runs beside it. The ``case`` fixture then checks
that job, the server's health and every count of what the server holds."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from advkit import OUTPUT_CAP, Case, fifo, finish, output, read_until
from apiharness import BOB, HANG, ROOT
from cgparent import job_cgroup_name

from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.spec import DEFAULT_LIMITS

pytestmark = ROOT

MIB = 1 << 20
NOBODY_ID = "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"


def script(d: Path, text: str) -> Path:
    path = d / "job.sh"
    path.write_text(textwrap.dedent(text))
    path.chmod(0o755)
    return path


def run(case: Case, argv: list[str], stem: str = "cli", **kw: Any) -> pb.JobStatus:
    st: pb.JobStatus = case.stub(stem).Run(pb.RunRequest(argv=argv, **kw), timeout=HANG)
    return st


def wait(case: Case, job_id: str, stem: str = "cli") -> pb.JobStatus:
    st: pb.JobStatus = case.stub(stem).Wait(pb.JobRef(id=job_id), timeout=HANG)
    return st


def lines(text: str, word: str) -> set[str]:
    """The second words of the lines starting with ``word`` (``denied own-pids.max``...)."""
    return {ln.split()[1] for ln in text.splitlines() if ln.startswith(word + " ")}


# A shell function the attack scripts share: one line saying whether a write went through.
TRY = """
    try() {
        what=$1; shift
        if ( "$@" ) 2>/dev/null; then echo "WROTE $what"; else echo "denied $what"; fi
    }
"""


# --- resource hogs ------------------------------------------------------------------------------


def test_fork_bomb_is_held_at_its_pids_limit(case: Case) -> None:
    stub = case.stub()
    bomb = run(case, ["sh", "-c", "f() { f | f & }; f; exec sleep 1000"], limits=pb.Limits(pids=64))
    read_until(stub, bomb.id, b"fork")  # the shell says it cannot fork: the bomb is at the cap
    pids = (
        Path("/sys/fs/cgroup/pids")
        / case.h.cgroup_parent
        / job_cgroup_name(case.h.cgroup_parent, bomb.id)
    )
    assert int((pids / "pids.max").read_text()) == 64
    assert int((pids / "pids.current").read_text()) <= 64
    assert int((pids / "pids.events").read_text().split()[1]) > 0  # forks were refused
    # Its owner can still start jobs: the cap is the job's, and the host has room.
    other = run(case, ["echo", "still here"])
    assert output(stub, other.id) == b"still here\n"
    st = finish(stub, bomb.id)
    assert (st.state, st.signal) == (pb.JOB_STATE_STOPPED, signal.SIGKILL)
    assert not pids.exists()


def test_memory_balloon_is_oom_killed_at_its_limit(case: Case) -> None:
    balloon = "b = []\nwhile True: b.append(b'x' * (1 << 20))"
    st = run(case, ["python3", "-c", balloon])
    end = wait(case, st.id)
    assert (end.state, end.signal, end.oom_killed) == (pb.JOB_STATE_EXITED, 9, True), end
    # The default cap, swap included (memsw): there is no way around it.
    assert end.limits.memory_mb == DEFAULT_LIMITS.memory_mb
    assert 0 < end.usage.memory_peak_bytes <= DEFAULT_LIMITS.memory_mb * MIB


def test_10_gib_log_flood_is_capped_and_never_blocks_the_job(case: Case) -> None:
    stub = case.stub()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    st = run(case, ["dd", "if=/dev/zero", "bs=1M", "count=10240", "status=none"])
    chunks = list(stub.Logs(pb.LogsRequest(id=st.id, follow=True), timeout=HANG))
    end = wait(case, st.id)
    # dd wrote all 10 GiB (exit 0): capture drained the pipe at full speed past the cap.
    assert (end.state, end.exit_code, end.output_truncated) == (pb.JOB_STATE_EXITED, 0, True)
    assert f"{OUTPUT_CAP}-byte cap" in end.error
    assert chunks[-1].truncated and not any(c.truncated for c in chunks[:-1])
    assert 0 < sum(len(c.data) for c in chunks) <= OUTPUT_CAP
    assert (case.h.state / "jobs" / st.id / "output.log").stat().st_size <= OUTPUT_CAP + 4096
    # None of it passed through the server's memory (the peak RSS of this whole process).
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 64 * 1024, f"peak RSS grew by {grown_kib} KiB"


def test_server_answers_during_an_endless_flood_on_both_streams(case: Case) -> None:
    stub = case.stub()
    flood = run(case, ["sh", "-c", "cat /dev/zero >&2 & exec cat /dev/zero"])
    call = stub.Logs(pb.LogsRequest(id=flood.id, follow=True), timeout=HANG)
    assert any(chunk.truncated for chunk in call)  # the mark of the cut has come
    call.cancel()
    # Past the cap, still flooding: the server serves its owner, other clients, listings.
    quick = run(case, ["echo", "quick"])
    assert output(stub, quick.id) == b"quick\n"
    case.bystander.check()
    assert flood.id in {j.id for j in stub.List(pb.ListRequest(), timeout=HANG).jobs}
    first = stub.Status(pb.JobRef(id=flood.id), timeout=HANG)
    assert first.state == pb.JOB_STATE_RUNNING
    st = finish(stub, flood.id)
    assert st.usage.cpu_seconds > first.usage.cpu_seconds  # it went on flooding meanwhile
    assert (case.h.state / "jobs" / flood.id / "output.log").stat().st_size <= OUTPUT_CAP + 4096


# --- cgroups, mounts, network -------------------------------------------------------------------

CGROUP_ATTACK = (
    TRY
    + r"""
    own=$(sed -n 's/^[0-9]*:pids://p' /proc/self/cgroup)
    other="${own%/*}/$1"
    ls -A /sys/fs/cgroup | sed 's/^/visible /'
    try own-pids.max sh -c "echo 100000 > /sys/fs/cgroup/pids$own/pids.max"
    try own-memory.limit sh -c "echo -1 > /sys/fs/cgroup/memory$own/memory.limit_in_bytes"
    try other-pids.max sh -c "echo 1 > /sys/fs/cgroup/pids$other/pids.max"
    try other-cgroup.procs sh -c "echo $$ > /sys/fs/cgroup/memory$other/cgroup.procs"
    try root-cgroup.procs sh -c "echo $$ > /sys/fs/cgroup/memory/cgroup.procs"
    try root-tasks sh -c "echo $$ > /sys/fs/cgroup/pids/tasks"
    try cgroup.kill sh -c "echo 1 > /sys/fs/cgroup/unified/cgroup.kill"
    try sysfs-write touch /sys/tjob-was-here
    try sysfs-remount mount -o remount,rw /sys
    mkdir "$3/cg" && try mount-cgroup mount -t cgroup -o pids none "$3/cg"
    # In user and cgroup namespaces of its own a job could mount cgroupfs: rooted at its own
    # cgroup, or at a hierarchy's root where tjob placed it nowhere (devices, cgroup v2). The
    # jail's seccomp filter refuses the namespaces (issue 13): "denied userns".
    unshare -rmC sh -c '"""
    + TRY.replace("'", "")
    + r"""
        m=$1
        for c in pids memory freezer devices; do
            mkdir $m/$c
            mount -t cgroup -o $c none $m/$c || { echo "nomount $c"; continue; }
            for f in cgroup.procs tasks pids.max memory.limit_in_bytes \
                     memory.memsw.limit_in_bytes freezer.state release_agent \
                     notify_on_release devices.allow; do
                [ -e $m/$c/$f ] && try "userns-$c/$f" sh -c "echo 1 > $m/$c/$f"
            done
            try "userns-$c/mkdir" mkdir $m/$c/escape
        done
        mkdir $m/v2
        if mount -t cgroup2 none $m/v2; then
            try userns-v2/cgroup.procs sh -c "echo 1 > $m/v2/cgroup.procs"
            try userns-v2/mkdir mkdir $m/v2/escape
            try userns-v2/subtree_control sh -c "echo +pids > $m/v2/cgroup.subtree_control"
        fi
    ' sh "$3" 2>/dev/null || echo "denied userns"
    echo attack done
    cat "$2"
    """
)


def cgroup_files(parent: str, job_id: str) -> dict[str, str]:
    """The limit and membership files the attack aims at, as the host reads them."""
    root = Path("/sys/fs/cgroup")
    job_id = job_cgroup_name(parent, job_id)
    files = {
        "pids.max": root / "pids" / parent / job_id / "pids.max",
        "memory": root / "memory" / parent / job_id / "memory.limit_in_bytes",
        "memsw": root / "memory" / parent / job_id / "memory.memsw.limit_in_bytes",
        "cpu": root / "cpu" / parent / job_id / "cpu.cfs_quota_us",
        "freezer": root / "freezer" / parent / job_id / "freezer.state",
    }
    return {k: p.read_text() for k, p in files.items()}


def test_job_cannot_write_any_cgroup_file(case: Case, scratch: Path) -> None:
    parent, victim = case.h.cgroup_parent, case.bystander.id
    stub = case.stub()
    victim_before = cgroup_files(parent, victim)
    root_before = {
        p: Path(p).read_text()
        for p in (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/unified/cgroup.subtree_control",
        )
    }
    work = "/tmp"  # where the job (nobody) may make its mount points: its own tmpfs
    with fifo() as gate:
        attack = script(scratch, CGROUP_ATTACK)
        st = run(case, ["sh", str(attack), victim, str(gate), work])
        own_before = cgroup_files(parent, st.id)
        text = read_until(stub, st.id, b"attack done\n").decode()
        # Blocked on the gate, its cgroup is still there to compare: nothing moved or changed.
        assert cgroup_files(parent, st.id) == own_before
        assert cgroup_files(parent, victim) == victim_before
        assert {p: Path(p).read_text() for p in root_before} == root_before
        # Its shell, which asked to move itself to the root cgroup, is still in its own.
        for ctrl in ("pids", "memory"):
            name = job_cgroup_name(parent, st.id)
            tasks = (Path("/sys/fs/cgroup") / ctrl / parent / name / "tasks").read_text()
            assert str(st.pid) in tasks.split()
        gate.release()
        end = wait(case, st.id)
    assert (end.state, end.exit_code) == (pb.JOB_STATE_EXITED, 0), text
    assert "WROTE" not in text and "visible" not in text, text  # /sys/fs/cgroup is empty there
    assert {
        "own-pids.max",
        "own-memory.limit",
        "other-pids.max",
        "other-cgroup.procs",
        "root-cgroup.procs",
        "root-tasks",
        "cgroup.kill",
        "sysfs-write",
        "sysfs-remount",
        "mount-cgroup",
        "userns",
    } <= lines(text, "denied"), text


MOUNT_ATTACK = (
    TRY
    + r"""
    try mount-tmpfs mount -t tmpfs none "$1"
    try bind-mount mount --bind /tmp "$1"
    try umount-proc umount /proc
    # Its own user namespace would let it mount, in a mount namespace of its own; the jail's
    # seccomp filter refuses it (issue 13): "denied userns", and the flag is raised here.
    unshare -rm sh -c '
        mount -t tmpfs none "$1" && touch "$1/pwned" && echo "userns-mounted $1"
        mount -t tmpfs none /etc && touch /etc/tjob-adv-pwned && echo "userns-mounted /etc"
        mount --make-rshared / 2>/dev/null
        mount -t tmpfs none /usr/local 2>/dev/null && echo "userns-mounted /usr/local"
        echo mounted > "$2"
        cat "$3"
    ' sh "$1" "$2" "$3" 2>/dev/null || { echo "denied userns"; echo mounted > "$2"; cat "$3"; }
    """
)


def mount_points(pid: str) -> set[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return {line.split()[4] for line in f}


def test_mounts_stay_inside_the_job(case: Case, scratch: Path) -> None:
    target = scratch / "target"
    target.mkdir()
    target.chmod(0o777)
    (target / "canary").write_text("host")
    watched = {str(target), "/etc", "/usr/local"}
    with fifo() as flag, fifo() as gate:
        attack = script(scratch, MOUNT_ATTACK)
        st = run(case, ["sh", str(attack), str(target), str(flag), str(gate)])
        assert flag.wait() == b"mounted\n"
        # The job holds its mounts (blocked on the gate) while the host is inspected.
        assert [p.name for p in target.iterdir()] == ["canary"]
        assert not Path("/etc/tjob-adv-pwned").exists()
        for pid in ("self", "1"):
            assert not mount_points(pid) & watched
        gate.release()
        end = wait(case, st.id)
    text = output(case.stub(), st.id).decode()
    assert end.exit_code == 0, text
    assert {"mount-tmpfs", "bind-mount", "umount-proc", "userns"} <= lines(text, "denied"), text
    assert not lines(text, "userns-mounted"), text


NETWORK_PROBE = r"""
import errno, json, os, socket, sys

result = {}


def attempt(name, fn):
    try:
        fn()
        result[name] = "ok"
    except OSError as e:
        result[name] = errno.errorcode.get(e.errno, str(e.errno))


def tcp(family, addr):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(addr)


def udp(family, addr):
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.sendto(b"x", addr)


# TEST-NET-1 and the IPv6 documentation prefix: no route, so nothing is ever sent.
attempt("tcp4", lambda: tcp(socket.AF_INET, ("192.0.2.1", 80)))
attempt("tcp6", lambda: tcp(socket.AF_INET6, ("2001:db8::1", 80)))
attempt("udp4", lambda: udp(socket.AF_INET, ("192.0.2.1", 9)))
attempt("tjobs-port", lambda: tcp(socket.AF_INET, ("127.0.0.1", int(sys.argv[1]))))
attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
with socket.create_server(("127.0.0.1", 0)) as server:
    attempt("loopback", lambda: tcp(socket.AF_INET, server.getsockname()))
result["interfaces"] = sorted(os.listdir("/sys/class/net"))
with open("/proc/net/route") as f:
    result["ipv4-routes"] = f.read().splitlines()[1:]
with open("/proc/net/ipv6_route") as f:
    result["ipv6-route-devices"] = sorted({line.split()[-1] for line in f})
print(json.dumps(result))
"""


def test_only_loopback_is_reachable(case: Case) -> None:
    st = run(case, ["python3", "-c", NETWORK_PROBE, str(case.h.port)])
    end = wait(case, st.id)
    text = output(case.stub(), st.id)
    assert end.exit_code == 0, text
    assert json.loads(text) == {
        "tcp4": "ENETUNREACH",
        "tcp6": "ENETUNREACH",
        "udp4": "ENETUNREACH",
        "tjobs-port": "ECONNREFUSED",  # the job's loopback is its own: the API is not there
        "raw": "EPERM",
        "packet": "EPERM",
        "loopback": "ok",
        "interfaces": ["lo"],
        "ipv4-routes": [],
        "ipv6-route-devices": ["lo"],
    }


# --- the host's processes and files -------------------------------------------------------------

PROC_SNOOP = r"""
    ls /proc | grep -E '^[0-9]+$' | tr '\n' ' ' | sed 's/^/pids /'; echo
    cat /proc/[0-9]*/environ 2>/dev/null | tr '\0' '\n' | grep -c "$2" | sed 's/^/found /'
    cat /proc/$1/environ 2>&1 | head -c 200; echo
    cat /proc/1/environ >/dev/null 2>&1 && echo "read init" || echo "denied init"
    env | cut -d= -f1 | sort | tr '\n' ' ' | sed 's/^/env /'; echo
"""


def test_host_processes_and_their_environment_are_out_of_sight(case: Case, scratch: Path) -> None:
    secret = f"tjob-adv-{uuid.uuid4().hex}"
    canary = subprocess.Popen(["sleep", "1000"], env={"TJOB_ADV_SECRET": secret})
    try:
        snoop = script(scratch, PROC_SNOOP)
        st = run(case, ["sh", str(snoop), str(canary.pid), secret])
        end = wait(case, st.id)
        text = output(case.stub(), st.id).decode()
        assert end.exit_code == 0, text
        assert secret not in text and "found 0" in text, text
        assert "No such file" in text and "denied init" in text, text
        # Only the job's own processes are there: its init (1), the shell, its commands.
        (pids,) = (ln.split()[1:] for ln in text.splitlines() if ln.startswith("pids "))
        assert all(int(p) < 100 for p in pids) and str(canary.pid) not in pids, text
        (env,) = (ln.split()[1:] for ln in text.splitlines() if ln.startswith("env "))
        assert set(env) <= {"HOME", "HOSTNAME", "LOGNAME", "OLDPWD", "PATH", "PWD", "USER"}, env
        assert canary.poll() is None
    finally:
        canary.kill()
        canary.wait()


KILLER = r"""
    kill -9 -1 2>/dev/null; echo "kill-all $?"
    for p in "$@"; do kill -9 "$p" 2>/dev/null; echo "kill-$p $?"; done
    echo survived
"""


def test_job_cannot_kill_the_server_or_other_jobs(case: Case, scratch: Path) -> None:
    h = case.h
    assert h.engine is not None
    launcher = h.engine.diagnostics().launcher_pid
    assert launcher is not None
    bystander = case.stub(BOB).Status(pb.JobRef(id=case.bystander.id), timeout=HANG).pid
    targets = [os.getpid(), launcher, bystander]
    st = run(case, ["sh", str(script(scratch, KILLER)), *map(str, targets)])
    end = wait(case, st.id)
    text = output(case.stub(), st.id).decode()
    assert (end.exit_code, text.splitlines()[-1]) == (0, "survived"), text
    for pid in targets:
        assert f"kill-{pid} 1" in text, text  # no such process there
    assert h.engine.diagnostics().launcher_pid == launcher  # the launcher lives on
    assert Path(f"/proc/{launcher}").exists()
    # kill -1 reached nothing outside the job: bob's job, also run as nobody, is checked by
    # the case, and it is still running.
    assert case.stub(BOB).Status(pb.JobRef(id=case.bystander.id), timeout=HANG).state == 1


KEY_THIEF = r"""
    ls "$1" | sed 's/^/listed /'
    for f in "$1"/*.key; do
        cat "$f" 2>/dev/null && echo "READ $f" || echo "denied $(basename "$f")"
    done
    # The state dir is hidden too (issue 13): an empty directory, which lists as nothing.
    for f in "$2" "$2/jobs.db" "$2/launcher.log" "$2/jobs/$3/output.log" "$2/jobs/$3/spec.json"; do
        { cat "$f" >/dev/null 2>&1 || [ -n "$(ls -A "$f" 2>/dev/null)" ]; } && echo "READ $f" \
            || echo "denied $f"
    done
"""


def test_server_keys_and_state_are_unreadable(case: Case, scratch: Path) -> None:
    h = case.h
    # The worst case: a certificate directory anyone may list. Only the key files' own mode
    # (0600) and the state dir's (0700) stand between a job and them.
    h.certs.chmod(0o755)
    try:
        thief = script(scratch, KEY_THIEF)
        st = run(case, ["sh", str(thief), str(h.certs), str(h.state), case.bystander.id])
        end = wait(case, st.id)
    finally:
        h.certs.chmod(0o700)
    text = output(case.stub(), st.id).decode()
    assert end.exit_code == 0, text
    assert "PRIVATE KEY" not in text and "READ" not in text, text
    keys = {p.name for p in h.certs.glob("*.key")}
    assert {"ca.key", "svc.key", "cli.key", "other.key", "admin.key"} <= keys
    assert keys <= lines(text, "denied"), text
    assert len(lines(text, "denied") - keys) == 5, text  # the state dir and every file in it
    assert "listed ca.crt" in text  # certificates are public; that is expected
    assert (h.state.stat().st_mode & 0o777) == 0o700


def test_setuid_binary_gains_no_privilege(case: Case, scratch: Path) -> None:
    suid = scratch / "id"
    shutil.copy("/usr/bin/id", suid)
    os.chown(suid, 0, 0)
    suid.chmod(0o4755)
    # The control: outside tjob, nobody running it does get euid 0 on this filesystem.
    control = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(suid)],
        capture_output=True,
        text=True,
        check=True,
        timeout=HANG,
    )
    assert "euid=0" in control.stdout, control.stdout
    st = run(case, ["sh", "-c", f"{suid}; grep -E '^(NoNewPrivs|CapEff):' /proc/self/status"])
    end = wait(case, st.id)
    text = output(case.stub(), st.id).decode()
    assert end.exit_code == 0, text
    first, *status = text.splitlines()
    assert first == NOBODY_ID  # no euid=0
    assert sorted(status) == ["CapEff:\t0000000000000000", "NoNewPrivs:\t1"]


# --- odd output and signal handling -------------------------------------------------------------


def test_closing_stdout_and_stderr_early_does_not_end_the_job(case: Case) -> None:
    stub = case.stub()
    with fifo() as flag, fifo() as gate, ThreadPoolExecutor(1) as pool:
        st = run(
            case,
            [
                "sh",
                "-c",
                f"echo out; exec >&-; echo err >&2; exec 2>&-; echo closed > {flag}; "
                f"read x < {gate}; exit 7",  # not cat: it refuses to run without a stdout
            ],
        )
        assert flag.wait() == b"closed\n"  # both pipes are closed now
        follower = pool.submit(output, stub, st.id)
        assert stub.Status(pb.JobRef(id=st.id), timeout=HANG).state == pb.JOB_STATE_RUNNING
        assert not follower.done()  # no end of output yet: the job has not ended
        gate.release()
        end = wait(case, st.id)
        assert (end.state, end.exit_code) == (pb.JOB_STATE_EXITED, 7)
        assert sorted(follower.result(HANG).splitlines()) == [b"err", b"out"]
    req = pb.LogsRequest(id=st.id, streams=pb.STREAM_SELECT_STDERR)
    assert b"".join(c.data for c in stub.Logs(req, timeout=HANG)) == b"err\n"


def test_stdin_is_empty_and_a_reader_never_blocks(case: Case) -> None:
    st = run(
        case,
        [
            "sh",
            "-c",
            'readlink /proc/self/fd/0; cat; echo "cat $?"; read x; echo "read $?"; '
            "exec sleep 1000",  # and one that never reads it at all
        ],
    )
    text = read_until(case.stub(), st.id, b"read 1\n")
    assert text == b"/dev/null\ncat 0\nread 1\n"
    assert finish(case.stub(), st.id).state == pb.JOB_STATE_STOPPED


def test_output_without_newlines_streams_as_it_comes(case: Case) -> None:
    stub = case.stub()
    with fifo() as gate:
        st = run(
            case,
            [
                "sh",
                "-c",
                f"printf partial; cat {gate}; head -c 500000 /dev/zero | tr '\\0' x; printf end",
            ],
        )
        call = stub.Logs(pb.LogsRequest(id=st.id, follow=True), timeout=HANG)
        got = b""
        while got != b"partial":  # arrives while the job waits on the gate: no line buffering
            got += next(call).data
        gate.release()
        got += b"".join(c.data for c in call)
    assert got == b"partial" + b"x" * 500000 + b"end"
    assert wait(case, st.id).exit_code == 0


def test_invalid_utf8_and_binary_output_is_kept_byte_exact(case: Case) -> None:
    stub = case.stub()
    st = run(case, ["sh", "-c", r"printf '\377\376\200 \300\000 end'; printf '\355\240\200\n' >&2"])
    assert wait(case, st.id).exit_code == 0

    def stream(which: int) -> bytes:
        req = pb.LogsRequest(id=st.id, streams=which)  # type: ignore[arg-type]
        return b"".join(c.data for c in stub.Logs(req, timeout=HANG))

    assert stream(pb.STREAM_SELECT_STDOUT) == b"\xff\xfe\x80 \xc0\x00 end"
    assert stream(pb.STREAM_SELECT_STDERR) == b"\xed\xa0\x80\n"


def test_job_ignoring_sigterm_is_killed_after_the_grace(case: Case) -> None:
    stub = case.stub()
    st = run(
        case,
        [
            "sh",
            "-c",
            "trap '' TERM; (trap '' TERM; exec sleep 1000) & "
            "setsid sh -c \"trap '' TERM; exec sleep 1000\" & "
            "echo up; while :; do sleep 1; done",
        ],
    )
    read_until(stub, st.id, b"up\n")
    grace = 0.5
    t0 = time.time()
    end = stub.Stop(pb.StopRequest(id=st.id, grace_seconds=grace), timeout=HANG)
    assert (end.state, end.signal, end.stopped) == (pb.JOB_STATE_STOPPED, signal.SIGKILL, True)
    assert end.ended_at >= t0 + grace  # SIGKILL came only once the grace was over
    assert st.id not in (case.h.engine.diagnostics().cgroups if case.h.engine else [])


# --- what the sandbox does not cover ------------------------------------------------------------


@pytest.mark.parametrize("scratch", ["/tmp", "/dev/shm"])
def test_another_clients_files_in_tmp_are_out_of_reach(case: Case, scratch: str) -> None:
    """Every job has a /tmp and /dev/shm of its own (all jobs share one account)."""
    secret = Path(scratch) / f"tjob-adv-{uuid.uuid4().hex}"
    try:
        with fifo() as written, fifo() as gate, fifo() as seen:
            bobs = f"umask 077; echo s3cret > {secret}; echo ok > {written}; cat {gate}"
            bob = run(case, ["sh", "-c", bobs], stem=BOB)
            assert written.wait() == b"ok\n"  # bob's private file is there (mode 0600)
            # One open of the FIFO: a second writer could find its reader gone.
            mine = run(case, ["sh", "-c", f"{{ cat {secret} || echo no; }} > {seen} 2>&1"])
            got = seen.wait()
            wait(case, mine.id)
            gate.release()
            wait(case, bob.id, stem=BOB)
        assert b"s3cret" not in got
        assert not secret.exists()  # nor did it land on the host
    finally:
        secret.unlink(missing_ok=True)
