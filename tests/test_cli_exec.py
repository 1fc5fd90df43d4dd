"""``tjob exec`` end to end (issue 16): a real tjobs, mutual TLS, the CLI as a process."""

from __future__ import annotations

import json

import pytest
from support.cli import refused_line as refused
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
    refused(server.tjob("exec", "-it", job, "sh"), "tjob: exec -i/-t is not supported yet "
            "(stdin and terminals come with tjob attach); run it without them")  # fmt: skip
    refused(server.tjob("exec", job), "tjob: exec needs a JOB and a COMMAND (see 'tjob exec -h')")
    server.ok("stop", "-t", "0", job)
    refused(server.tjob("exec", job, "true"), f"tjob: job {job} has ended: exec needs it running")
