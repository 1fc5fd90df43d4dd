"""``tjob exec`` end to end (issue 16): a real tjobs, mutual TLS, the CLI as a process."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator

import pytest
from support.cli import TJOB
from support.cli import refused_line as refused
from support.terminal import Terminal
from test_cli import ADMIN, BOB, Server, server

__all__ = ["server"]  # the module's tjobs, shared with test_cli's fixture

pytestmark = pytest.mark.root


def test_ps_inside_a_job_shows_its_processes_only(server: Server) -> None:
    job = server.run("sleep", "1000")
    proc = server.tjob("exec", job, "ps", "-eo", "pid,args")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert [line.split(None, 1)[1] for line in lines[1:]] == [
        "tjob-shim init",
        "sleep 1000",
        "ps -eo pid,args",
    ]
    server.ok("stop", "-t", "0", job)


def test_exit_code_streams_env_and_workdir(server: Server) -> None:
    job = server.run("-e", "A=job", "sleep", "1000")
    proc = server.tjob("exec", "-e", "B=exec", "-w", "/tmp", job, "sh", "-c", "echo $A $B; pwd")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"job exec\n/tmp\n", b"")
    proc = server.tjob("exec", job, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, b"out\n", b"err\n")
    assert server.tjob("exec", job, "sh", "-c", "kill -9 $$").returncode == 128 + 9
    proc = server.tjob("exec", job, "no-such-command")
    refused(proc, "tjob: exec no-such-command: No such file or directory")
    assert proc.returncode == 127
    # The job's own cgroup, as the job's command sees it.
    out = server.ok("exec", job, "cat", "/proc/self/cgroup")
    (st,) = json.loads(server.ok("ps", "--json", job))
    assert st["id"] in out
    server.ok("stop", "-t", "0", job)


def test_exec_refusals(server: Server) -> None:
    job = server.run("sleep", "1000")
    refused(server.tjob("exec", *BOB, job, "true"), "tjob: unauthorized")
    refused(server.tjob("exec", "0123456789abcdef", "true"), "tjob: unauthorized")
    assert server.tjob("exec", *ADMIN, job, "true").returncode == 0  # an admin may
    refused(server.tjob("exec", "-t", job, "sh"), re.compile(r"tjob: .*terminal.*"))
    refused(server.tjob("exec", job), "tjob: exec needs a JOB and a COMMAND (see 'tjob exec -h')")
    server.ok("stop", "-t", "0", job)
    refused(server.tjob("exec", job, "true"), f"tjob: job {job} has ended: exec needs it running")


def test_exec_i_is_byte_exact(server: Server) -> None:
    job = server.run("sleep", "1000")
    data = os.urandom(1 << 20)
    proc = server.tjob("exec", "-i", job, "sh", "-c", "sha256sum; exit 5", input=data, timeout=120)
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    server.ok("stop", "-t", "0", job)


@pytest.fixture
def terminal(server: Server) -> Iterator[list[Terminal]]:
    made: list[Terminal] = []
    yield made
    for t in made:
        t.close()


def test_exec_it_sh_in_a_real_terminal(server: Server, terminal: list[Terminal]) -> None:
    job = server.run("sleep", "1000")
    env = server.env(TERM="xterm-256color")
    t = Terminal([*TJOB, "exec", "-it", job, "sh"], cwd=server.home, env=env, rows=30, cols=90)
    terminal.append(t)
    t.expect(b"$ ")
    assert t.raw()
    t.send(b"stty size; echo $TERM; ps -eo args | grep -c '^sleep 1000'\r")
    screen = t.expect(b"$ ")
    assert b"30 90\r\n" in screen and b"xterm-256color\r\n" in screen and b"\r\n1\r\n" in screen
    # A resize reaches the exec as SIGWINCH and a new size.
    t.send(b"(trap 'stty size; exit' WINCH; echo armed; while :; do sleep 0.05; done)\r")
    t.expect(b"armed\r\n")
    t.resize(40, 120)
    assert t.expect(b"$ ").endswith(b"40 120\r\n$ ")
    t.send(b"exit 3\r")
    assert t.wait() == 3
    assert t.restored()
    server.ok("stop", "-t", "0", job)
