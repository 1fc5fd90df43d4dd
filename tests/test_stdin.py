"""A job's stdin and terminal through the library (issue 16): the supervisor's stdin pipe or pty,
lent to one writer at a time over the attach socket (tjob.stdio). The small cases also run on
cgroup v2 (``make test-cgroup2``: software emulation, where 100 MB would take minutes)."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

import tjob
from tjob import Engine, JobSpec, Stream
from tjob.errors import StdinUnavailable
from tjob.protocol import ATTACH_SOCKET

pytestmark = pytest.mark.root

MB = 1 << 20


def out(job: tjob.Job) -> bytes:
    return b"".join(c.data for c in job.output(follow=True))


def test_random_bytes_reach_the_job_exactly(engine: Engine) -> None:
    """100 MB of random bytes through sha256sum in the job: binary-safe and byte-exact."""
    job = engine.start(JobSpec(["sha256sum"], stdin=True))
    digest = hashlib.sha256()
    with job.stdin() as lease:
        for _ in range(100):
            block = os.urandom(MB)
            digest.update(block)
            lease.write(block)
        lease.close(eof=True)
    st = job.wait(timeout=120)
    assert st.exit_code == 0, st
    assert out(job).split()[0].decode() == digest.hexdigest()


@pytest.mark.cgroup2
def test_eof_closes_the_jobs_stdin_and_no_second_writer(engine: Engine) -> None:
    job = engine.start(JobSpec(["cat"], stdin=True))
    lease = job.stdin()
    with pytest.raises(StdinUnavailable, match="another client"):
        job.stdin()
    lease.write(b"hello\n")
    lease.close()  # released open: the next writer continues
    with job.stdin() as again:
        again.write(b"world\n")
        again.close(eof=True)
    assert job.wait(timeout=30).exit_code == 0
    assert out(job) == b"hello\nworld\n"
    with pytest.raises(StdinUnavailable, match="has ended"):
        job.stdin()
    assert not (job.dir / ATTACH_SOCKET).exists()


@pytest.mark.cgroup2
def test_a_writer_that_vanishes_is_eof(engine: Engine) -> None:
    """A lease dropped without a word (its holder died): the job's stdin sees EOF."""
    job = engine.start(JobSpec(["cat"], stdin=True))
    lease = job.stdin()
    lease.write(b"x")
    os.close(lease.fd)
    lease._sock.close()
    assert job.wait(timeout=30).exit_code == 0
    with pytest.raises(StdinUnavailable):
        job.stdin()


@pytest.mark.cgroup2
def test_a_plain_job_has_no_stdin(engine: Engine) -> None:
    job = engine.start(JobSpec(["sh", "-c", "cat; echo $?"]))
    with pytest.raises(StdinUnavailable, match="was not run with stdin"):
        job.stdin()
    job.wait(timeout=30)
    assert out(job) == b"0\n"
    assert not (job.dir / ATTACH_SOCKET).exists()


@pytest.mark.cgroup2
def test_a_tty_job_gets_a_controlling_terminal(engine: Engine) -> None:
    script = "tty; stty size; echo $TERM; ps -o sid=,pgid=,tpgid= -p $$; read x; echo got $x"
    job = engine.start(JobSpec(["sh", "-c", script], stdin=True, tty=True, tty_size=(33, 101)))
    seen = b""
    for chunk in job.output(follow=True):  # typed now, the terminal would echo it first
        seen += chunk.data
        if seen.count(b"\r\n") >= 4:
            break
    with job.stdin() as lease:
        assert lease.tty
        lease.write(b"typed\n")
        lease.close()
    assert job.wait(timeout=30).exit_code == 0
    chunks = list(job.output(follow=False))
    assert {c.stream for c in chunks} == {Stream.STDOUT}  # one stream
    text = b"".join(c.data for c in chunks).decode()
    lines = text.split("\r\n")
    assert lines[0].startswith("/dev/pts/")  # the job's own devpts
    assert lines[1] == "33 101"
    assert lines[2] == "xterm"
    sid, pgid, tpgid = lines[3].split()
    assert sid == pgid == tpgid  # its own session, the terminal's foreground group
    assert "got typed" in text


@pytest.mark.cgroup2
def test_resize_and_ctrl_c_reach_a_tty_job(engine: Engine) -> None:
    script = "trap 'stty size; exit 7' INT; echo ready; while :; do sleep 0.05; done"
    job = engine.start(JobSpec(["sh", "-c", script], tty=True, stdin=True))
    with job.stdin() as lease:
        follower = job.output(follow=True)
        assert next(follower).data.startswith(b"ready")
        lease.resize(50, 132)
        lease.write(b"\x03")  # a character: the terminal makes it SIGINT
        st = job.wait(timeout=30)
    assert st.exit_code == 7, st
    assert b"50 132" in out(job)


def test_async_writer(engine: Engine) -> None:
    job = engine.start(JobSpec(["wc", "-c"], stdin=True))

    async def feed() -> None:
        lease = await job.stdin_async()
        for _ in range(8):
            await lease.write_async(b"z" * MB)
        lease.close(eof=True)

    asyncio.run(feed())
    assert job.wait(timeout=60).exit_code == 0
    assert out(job).strip() == str(8 * MB).encode()


def test_window_size_is_checked() -> None:
    for bad in [(0, 80), (24, 5000), (24,), "24x80", (True, 80)]:
        with pytest.raises(tjob.InvalidSpec, match="window size"):
            JobSpec(["sh"], tty=True, tty_size=bad).validate()  # type: ignore[arg-type]
