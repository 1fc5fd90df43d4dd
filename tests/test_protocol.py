"""The engine/shim contract (tjob.protocol) against the built shim: its constants, and every
message round-tripped through the C code that decodes and encodes it (``tjob-shim selftest``),
with the largest argv/env and odd bytes; and the supervisor's mark."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.timeouts import HANG

from tjob import Engine, JobSpec, JobState, protocol_h
from tjob import protocol as p
from tjob.launcher import SHIM
from tjob.procs import is_supervisor
from tjob.spec import MAX_ARGV_BYTES, MAX_ENV_BYTES

ODD = os.fsdecode(b"caf\xe9 \xff\n")  # not UTF-8 (surrogateescape), a space, a newline


def shim(*args: str, data: bytes = b"", ok: bool = True) -> bytes:
    done = subprocess.run(
        [str(SHIM), "selftest", *args], check=False, input=data, capture_output=True, timeout=HANG
    )
    assert (done.returncode == 0) == ok, done.stderr
    return done.stdout


# ------------------------------------------------------------------ constants


def test_the_built_shim_has_every_constant_of_the_protocol() -> None:
    """A protocol/constants.py changed without rebuilding the shim (or a header not generated
    from it) fails here."""
    got = dict(line.split("=", 1) for line in shim("constants").decode().splitlines())
    want = {
        k: str(v) if isinstance(v, int) else v.hex() for k, v in protocol_h.c_constants(p).items()
    }
    assert got == want


def test_header_defines_every_constant() -> None:
    header = protocol_h.c_header(p)
    for name in protocol_h.c_constants(p):
        assert f"#define TJOB_{name} " in header and f"({name})" in header


def test_writers_take_names_from_protocol() -> None:
    from tjob import jobdir, logstore

    assert (jobdir.EXEC_FILE, jobdir.RUN_FILE, jobdir.RESERVE_FILE) == (
        p.EXEC_FILE,
        p.RUN_FILE,
        p.RESERVE_FILE,
    )
    assert logstore.MAGIC == p.LOG_MAGIC and logstore.HEADER.size == p.LOG_HEADER_SIZE
    assert (logstore.TRUNCATED, logstore.END) == (p.STREAM_TRUNCATED, p.STREAM_END)


# ------------------------------------------------------------------ exec.bin


def _fill(first: bytes, size: int) -> tuple[bytes, ...]:
    """Items after ``first`` of 1 KiB each (with their NULs), ``size`` bytes in all."""
    items, left = [first], size - len(first) - 1
    while left > 0:
        n = min(left, 1024)
        items.append(b"a" * (n - 1))
        left -= n
    return tuple(items)


def _largest() -> p.ExecJob:
    """argv and env as large as JobSpec allows (spec.MAX_ARGV_BYTES, MAX_ENV_BYTES)."""
    argv, env = _fill(b"/bin/true", MAX_ARGV_BYTES), _fill(b"K=v", MAX_ENV_BYTES)
    JobSpec([os.fsdecode(a) for a in argv]).validate()  # no larger would be accepted
    assert sum(len(a) + 1 for a in argv) == MAX_ARGV_BYTES
    assert sum(len(e) + 1 for e in env) == MAX_ENV_BYTES
    return p.ExecJob(b"abcdef01", b"/", (1000, 1000), (b"cpu/tjob/x/cgroup.procs",), argv, env)


ODD_JOB = p.ExecJob(
    hostname=b"host",
    cwd=os.fsencode("/" + ODD),
    ids=None,
    procs=(),
    argv=(b"sh", b"", b" ", b"\n", os.fsencode(ODD), b"-"),
    env=(b"E=", os.fsencode("X=" + ODD), b"PATH=/bin"),
    scratch=20 << 20,
    rlimits=(b"nofile=1024:65536", b"core=0:0", b"nproc=4096:4096"),
    volumes=(b"rw data ~ab12 /tmp/d a t", b"ro ref - /" + os.fsencode(ODD)),
)


@pytest.mark.parametrize("job", [ODD_JOB, _largest()], ids=["odd", "largest"])
def test_exec_bin_round_trips_through_the_shim(job: p.ExecJob) -> None:
    blob = p.encode_exec(job)
    again = shim("exec", data=blob)
    assert again == blob
    assert p.decode_exec(again) == job


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"not-the-magic\0h\0/\0-\0-\x000\x001\0true\x000\x000\x000\0",
        p.EXEC_MAGIC.encode() + b"\0h\0/\0-\0-\x000\x002\0true\x000\x000\x000\0",  # argv cut short
        p.EXEC_MAGIC.encode() + b"\0h\0/\0-\0-\x000\x001\0true\x000\x000\x000\0extra\0",
        p.EXEC_MAGIC.encode()
        + b"\0h\0/\0-\0-\x000\x001\0true\x000\0",  # no scratch size, no rlimits
        p.EXEC_MAGIC.encode()
        + b"\0h\0/\0-\0-\x000\x001\0true\x000\x000\x00x\0",  # bad rlimits count
        p.EXEC_MAGIC.encode() + b"\0h\0/\0-\0-\x000\x000\x000\x000\x000\0",  # no argv
        p.EXEC_MAGIC.encode() + b"\0h\0/\0-\0-\x000\x001\0true\x000\x000\x000",  # no final NUL
    ],
)
def test_malformed_exec_bin_is_refused_by_both_sides(blob: bytes) -> None:
    shim("exec", data=blob, ok=False)
    if blob.endswith(b"\0") and b"-\x000\x000\x000\x000" not in blob:
        with pytest.raises(p.ProtocolError):
            p.decode_exec(blob)


# ------------------------------------------------------------------ handoff and reports


@pytest.mark.parametrize("cap", [0, 1, 1 << 40])
def test_handoff_round_trips(cap: int) -> None:
    h = p.Handoff(os.fsencode("/state/jobs/" + ODD.replace("\n", "")), cap)
    again = shim("handoff", data=p.encode_handoff(h))
    assert p.decode_handoff(again) == h


@pytest.mark.parametrize(
    "stdio",
    [p.Stdio(True, False, 0, 0), p.Stdio(False, True, 24, 80), p.Stdio(True, True, 4096, 1)],
)
def test_an_interactive_handoff_round_trips(stdio: p.Stdio) -> None:
    h = p.Handoff(b"/state/jobs/x", 7, stdio)
    again = shim("handoff", data=p.encode_handoff(h))
    assert p.decode_handoff(again) == h


@pytest.mark.parametrize("bad", [b"x 1 1", b"i 1", b"t 4097 1", b"it -1 2", b"", b"i 1 1 1"])
def test_a_malformed_handoff_stdio_is_refused(bad: bytes) -> None:
    shim("handoff", data=b"/d\x007\x00" + bad, ok=False)
    with pytest.raises(p.ProtocolError):
        p.decode_handoff(b"/d\x007\x00" + bad + (b"" if bad else b"?"))


REPORTS: list[p.InitReport] = [
    p.Started(4194303),
    p.Started(None),
    p.InitExited(0),
    p.InitExited(9),
    p.InitExited(3 << 8),
    p.Failure("exec", "exec", 2, b"no-such-command"),
    p.Failure("init", "sethostname", 1),
    p.Failure("chdir", "chdir", 2, os.fsencode("/dir with spaces/" + ODD.replace("\n", ""))),
    p.Failure("cgroup", "open", 13, b"x" * (p.TARGET_MAX + 50)),
]


def test_init_reports_round_trip_through_the_shim() -> None:
    lines = b"".join(p.encode_init_report(r) + b"\n" for r in REPORTS)
    again = shim("reports", data=lines)
    assert again == lines
    got = [p.decode_init_report(line) for line in again.splitlines()]
    want = [
        p.Failure(r.stage, r.syscall, r.errno, r.target[: p.TARGET_MAX])
        if isinstance(r, p.Failure)
        else r
        for r in REPORTS
    ]
    assert got == want


def test_a_failure_target_keeps_to_one_line() -> None:
    line = p.encode_failure(p.Failure("exec", "exec", 2, b"a\nb"))
    assert b"\n" not in line and p.decode_failure(line).target == b"a b"
    assert shim("reports", data=line + b"\n") == line + b"\n"


def test_failure_messages_name_stage_and_call() -> None:
    def msg(stage: str, call: str, err: int, target: bytes = b"-") -> str:
        return p.Failed(p.Failure(stage, call, err, target)).message()

    assert msg("exec", "exec", 2, b"/no/such") == "exec /no/such: No such file or directory"
    assert msg("chdir", "chdir", 2, b"/d") == "chdir /d: No such file or directory"
    assert msg("init", "sethostname", 1) == "init: sethostname: Operation not permitted"
    assert msg("cgroup", "open", 13, b"cpu/x") == "cgroup: open cpu/x: Permission denied"
    assert p.Failed(None).message() == "the job's init died before starting the command"


# ------------------------------------------------------------------ the supervisor's messages


@pytest.mark.parametrize(
    ("wstatus", "pid", "started_at", "cut"),
    [
        (0, 1234, 1764600000.123456789, None),
        (-1, None, 1e9, "output cut at the 1024-byte cap"),
        (9, 4194303, 0.1, "output cut short: No space left on device"),
    ],
)
def test_end_report_from_the_shim_decodes(
    wstatus: int, pid: int | None, started_at: float, cut: str | None
) -> None:
    want = p.Exited(wstatus, pid, started_at, cut)
    text = shim("end", str(wstatus), str(pid or 0), repr(started_at), cut or "")
    assert p.decode_end_report(text) == want
    assert p.decode_end_report(p.encode_end_report(want)) == want


def test_failed_end_reports_decode() -> None:
    f = p.Failure("namespaces", "mount", 1, b"/proc")
    assert p.decode_end_report(p.encode_end_report(p.Failed(f))) == p.Failed(f)
    assert p.decode_end_report(b"F") == p.Failed(None)
    assert p.decode_end_report(b"") == p.Failed(None)
    with pytest.raises(p.ProtocolError):
        p.decode_end_report(b"X nonsense")


@pytest.mark.parametrize("pid", [None, 77])
def test_run_json_and_start_reply_from_the_shim_decode(pid: int | None) -> None:
    run = p.RunInfo(100, 101, pid, 1764600000.5)
    text = shim("run", "100", "101", str(pid or 0), repr(run.started_at))
    assert p.decode_run(text) == run == p.decode_run(p.encode_run(run))
    assert json.loads(text)["v"] == p.VERSION
    reply = p.StartReply(True, pid, 1764600000.25, 100)
    text = shim("reply", str(pid or 0), repr(reply.started_at), "100")
    assert p.decode_start_reply(text) == reply == p.decode_start_reply(p.encode_start_reply(reply))


def test_start_request_and_failed_reply_round_trip() -> None:
    req = p.StartRequest("/s/jobs/x", 1 << 30, "x", p.Limits(20, 20, 512, 1, 2, (8, 0)))
    assert p.decode_start_request(p.encode_start_request(req)) == req
    req = p.StartRequest("/s/jobs/y", 0, "y", p.Limits(1, 2, 3, 4, 5, None))
    assert p.decode_start_request(p.encode_start_request(req)) == req
    failed = p.StartReply(False, error="exec x: No such file or directory")
    assert p.decode_start_reply(p.encode_start_reply(failed)) == failed


def test_other_versions_are_refused() -> None:
    run = json.loads(p.encode_run(p.RunInfo(1, 2, 3, 4.0)))
    run["v"] = p.VERSION + 1
    with pytest.raises(p.ProtocolError):
        p.decode_run(json.dumps(run).encode())


# ------------------------------------------------------------------ through a real job


@pytest.mark.root
def test_odd_argv_and_env_reach_the_command(engine: Engine) -> None:
    argv = ["sh", "-c", 'printf "%s\\0" "$@" "$E"', "x", "", " ", "\n", ODD]
    job = engine.start(JobSpec(argv, env={"E": ODD}))
    assert job.wait(HANG).exit_code == 0
    got = b"".join(c.data for c in job.output(follow=True))
    assert got.split(b"\0")[:-1] == [os.fsencode(a) for a in [*argv[4:], ODD]]


@pytest.mark.root
def test_supervisor_bears_the_mark_a_job_cannot_forge(engine: Engine) -> None:
    # The job names a script "supervisor" and runs it as `tjob-shim supervisor ID`: its
    # command line then reads exactly like its supervisor's.
    script = "cd /tmp && printf 'echo ready; sleep %d; true\\n' > supervisor && "
    script += 'exec -a tjob-shim bash supervisor "$1"'
    job = engine.start(JobSpec(["bash", "-c", script % HANG, "x", "ID"]))
    try:
        assert next(iter(job.output(follow=True))).data == b"ready\n"
        run = p.decode_run((job.dir / p.RUN_FILE).read_bytes())
        words = Path(f"/proc/{run.supervisor_pid}/cmdline").read_bytes().split(b"\0")
        assert words[:3] == [*p.SUPERVISOR_ARGV, job.id.encode()]
        assert is_supervisor(run.supervisor_pid, job.id, str(job.dir))
        assert not is_supervisor(run.supervisor_pid, "0" * 32, str(job.dir))
        init = Path(f"/proc/{run.init_pid}/cmdline").read_bytes().split(b"\0")
        assert init[:2] == list(p.INIT_ARGV)
        assert not is_supervisor(run.init_pid, job.id, str(job.dir))
        assert job.pid is not None
        forged = Path(f"/proc/{job.pid}/cmdline").read_bytes().split(b"\0")
        assert forged[:2] == list(p.SUPERVISOR_ARGV)
        assert not is_supervisor(job.pid, "ID", str(job.dir))
    finally:
        job.stop(grace=0)
    assert job.wait(HANG).state is JobState.STOPPED


# ------------------------------------------------------------------ failures, from the shim itself


@pytest.fixture
def zygote() -> Iterator[socket.socket]:
    """A zygote of our own, the fork server's side of its channel, and nothing else."""
    ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    args = [str(SHIM), "zygote", str(theirs.fileno()), "/sys/fs/cgroup", sys.executable, "", ""]
    proc = subprocess.Popen(args, pass_fds=[theirs.fileno()], stdout=subprocess.DEVNULL)
    theirs.close()
    try:
        yield ctl
    finally:
        ctl.close()  # the zygote sees the end and exits
        proc.wait(HANG)


def _start(ctl: socket.socket, jdir: Path) -> p.EndReport:
    """Hand one spare the job in ``jdir``, as the fork server does; its end report."""
    chan, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    busy_r, busy_w = os.pipe()
    reply, reply_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with chan, reply:
        socket.send_fds(ctl, [p.SPARE_REQUEST], [theirs.fileno(), busy_w])
        theirs.close()
        os.close(busy_w)
        handoff = p.encode_handoff(p.Handoff(os.fsencode(jdir), 0))
        socket.send_fds(chan, [handoff], [reply_theirs.fileno()])
        reply_theirs.close()
        chan.settimeout(HANG)
        msg, fds, _flags, _addr = socket.recv_fds(chan, 4096, 1)
        assert len(fds) == 1  # the engine's reply socket, still owed an answer
        os.close(fds[0])
        chan.send(p.ACK_RECORDED)
    os.close(busy_r)
    return p.decode_end_report(msg)


def _job(hostname: bytes = b"h", procs: tuple[bytes, ...] = ()) -> p.ExecJob:
    return p.ExecJob(hostname, b"/", None, procs, (b"/bin/true",), (b"PATH=/bin",))


@pytest.mark.root
@pytest.mark.parametrize(
    ("job", "want"),
    [
        (_job(hostname=b"h" * 100), "init: sethostname " + "h" * 100 + ": Invalid argument"),
        (_job(procs=(b"no/such/cgroup.procs",)), "cgroup: open no/such/cgroup.procs: No such"),
        (
            p.ExecJob(b"h", b"/", None, (), (b"/no/such",), ()),
            "exec /no/such: No such file or directory",
        ),
        (None, "supervisor: open output.log: File exists"),
    ],
)
def test_a_failed_step_is_reported_by_stage_and_call(
    zygote: socket.socket, tmp_path: Path, job: p.ExecJob | None, want: str
) -> None:
    (tmp_path / p.EXEC_FILE).write_bytes(p.encode_exec(job or _job()))
    if job is None:
        (tmp_path / p.LOG_FILE).write_bytes(b"x")  # not empty: another supervisor's
    end = _start(zygote, tmp_path)
    assert isinstance(end, p.Failed) and end.message().startswith(want)


def test_exec_request_round_trip_and_routing() -> None:
    """The fork server tells an exec (issue 16) from a start by its ``op``."""
    req = p.ExecRequest("/state/jobs/ab/execs/3", 1 << 20)
    assert p.decode_request(p.encode_exec_request(req)) == req
    req = p.ExecRequest("/d/execs/1", 5, p.Stdio(True, True, 30, 100))
    assert p.decode_request(p.encode_exec_request(req)) == req
    start = p.StartRequest("/d", 5, "ab", p.Limits(1, 2, 3, 4, 5, None))
    assert p.decode_request(p.encode_start_request(start)) == start
    with pytest.raises(p.ProtocolError):
        p.decode_request(b'{"v": 1, "op": "exec"}')
