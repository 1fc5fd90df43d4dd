"""``tjob logs --tail/--since/--until/--timestamps`` end to end (issue 16): a real ``tjobs``,
real mutual TLS, the CLI as a process."""

from __future__ import annotations

import re
import select
import time

import pytest
from support import cli
from support.cli import Server, refused_line
from support.timeouts import PROCESS_HANG as HANG

from tjob.cli.tjob.logtime import parse_time

BOB = ["-cert", ".tjob/other.crt", "-key", ".tjob/other.key"]
server = cli.server  # the module's tjobs (a fixture)
STAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z ")


def finished(server: Server, script: str) -> str:
    job = server.run("sh", "-c", script)
    server.ok("wait", job)
    return job


@pytest.mark.root
def test_tail_gives_the_last_lines_of_the_selected_streams(server: Server) -> None:
    job = finished(server, "echo e1 >&2; seq 1 500; echo e2 >&2; printf 'no newline'")
    # (Lines are counted over the selected streams as stored: which of two pipes the
    # supervisor read first is its business, so each stream is checked on its own here.)
    assert (
        server.ok("logs", "--tail", "3", "--stdout", "--no-follow", job) == "499\n500\nno newline"
    )
    out = server.tjob("logs", "-n", "1", "--stderr", job)  # finished: following ends at once
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b"e2\n")
    assert server.ok("logs", "--tail", "0", job) == ""
    assert server.ok("logs", "--tail", "all", "--stdout", job).startswith("1\n2\n")
    both = server.tjob("logs", "--tail", "600", job)
    assert (both.stdout.count(b"\n"), both.stderr) == (500, b"e1\ne2\n")


@pytest.mark.root
def test_tail_then_follow(server: Server) -> None:
    job = server.run(
        "sh", "-c", "trap 'echo after; exit 0' TERM; echo a; echo b; while :; do sleep 0.1; done"
    )
    written = server.popen("logs", job)  # until "b" is in the log (then the tail is known)
    assert written.stdout is not None
    assert written.stdout.readline() == b"a\n" and written.stdout.readline() == b"b\n"
    logs = server.popen("logs", "--tail", "1", job)
    try:
        assert logs.stdout is not None
        ready, _, _ = select.select([logs.stdout], [], [], HANG)
        assert ready, "no output from tjob logs --tail 1"
        assert logs.stdout.readline() == b"b\n"
        server.ok("stop", "-t", "10", job)
        out, _err = logs.communicate(timeout=HANG)  # (sh says "Terminated" of its sleep)
        assert (logs.returncode, out) == (0, b"after\n")
        written.communicate(timeout=HANG)
    finally:
        for proc in (logs, written):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.root
def test_timestamps_begin_every_line_with_the_time_it_was_read(server: Server) -> None:
    before = time.time_ns()
    job = finished(server, "echo one; printf 'two\\nthr'; sleep 0.2; echo ee; echo err >&2")
    after = time.time_ns()
    out = server.tjob("logs", "--timestamps", job)
    lines = out.stdout.splitlines(keepends=True)
    assert [STAMP.sub(b"", line) for line in lines] == [b"one\n", b"two\n", b"three\n"]
    times = [STAMP.match(line) for line in lines]
    assert all(times), lines
    when = [parse_time(m.group(0).decode().strip()) for m in times if m]
    # "three" began in the frame of "two" (its "thr"): a line has the time of its first bytes.
    assert before <= when[0] <= when[1] == when[2] <= after
    assert STAMP.match(out.stderr) and out.stderr.endswith(b" err\n")


@pytest.mark.root
def test_since_and_until(server: Server) -> None:
    job = finished(server, "echo early; sleep 0.3; echo late")
    stamped = server.ok("logs", "-t", "--stdout", job).splitlines()
    late = stamped[1].split(" ")[0]
    assert server.ok("logs", "--since", late, job) == "late\n"
    assert server.ok("logs", "--until", late, job) == "early\nlate\n"
    assert server.ok("logs", "--since", "1h", job) == "early\nlate\n"
    assert server.ok("logs", "--until", "0.2", job) == ""  # a Unix time: 1970
    # In the future: nothing yet (following waits for output from then on; this job is over).
    assert server.ok("logs", "--since", "2099-01-01T00:00:00Z", job) == ""


@pytest.mark.root
def test_bad_views_are_refused_clearly(server: Server) -> None:
    job = finished(server, "echo x")
    refused_line(
        server.tjob("logs", "--tail", "-1", job),
        "tjob: argument -n/--tail: '-1' is not a number of lines (0 or more, or all) "
        "(see 'tjob logs -h')",
    )
    refused_line(
        server.tjob("logs", "--since", "yesterday", job),
        re.compile(r"tjob: argument --since: .yesterday. is not a time: RFC 3339 .*"),
    )
    refused_line(
        server.tjob("logs", "--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01", job),
        "tjob: until is before since: the view would be empty",
    )
    refused_line(server.tjob("logs", *BOB, "--tail", "1", job), "tjob: unauthorized")
