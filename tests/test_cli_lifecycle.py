"""The job lifecycle from the command line against a real tjobs (issue 15): names, labels,
filters, timeouts, kill, and the caps apart from the defaults."""

from __future__ import annotations

import json
import re

import pytest
from support.cli import refused_line as refused
from test_cli import ADMIN, BOB, Server, rows, server

__all__ = ["server"]  # the module's tjobs, shared with test_cli's fixture

pytestmark = pytest.mark.root


def test_a_server_with_no_flags_takes_a_bigger_job_and_keeps_small_defaults(
    server: Server,
) -> None:
    job = server.run("--mem", "256", "true")
    (st,) = json.loads(server.ok("ps", "--json", job))
    assert st["limits"]["memory_mb"] == 256
    job = server.run("true")
    (st,) = json.loads(server.ok("ps", "--json", job))
    assert st["limits"]["memory_mb"] == 20  # the default, not the cap


def test_names_labels_and_filters(server: Server) -> None:
    a = server.run("--name", "nb-1", "--label", "team=ml", "-l", "prio=low", "sleep", "60")
    b = server.run("--name", "nb-2", "--label", "team=web", "true")
    server.ok("wait", "nb-2")
    refused(
        server.tjob("run", "--name", "nb-1", "true"), f"tjob: the name 'nb-1' is in use by job {a}"
    )
    # Every command that takes an id takes a name.
    (st,) = json.loads(server.ok("ps", "--json", "nb-1"))
    assert (st["id"][:8], st["name"], st["labels"]) == (a, "nb-1", {"team": "ml", "prio": "low"})
    assert server.ok("ps", "-q", "--filter", "label=team=ml") == f"{a}\n"
    assert server.ok("ps", "-q", "--filter", "name=nb-*", "--filter", "state=exited") == f"{b}\n"
    assert server.ok("ps", "-q", "--filter", "label=prio", "--filter", "state=running") == f"{a}\n"
    assert server.ok("ps", "-q", "--filter", "name=zz*") == ""
    # Another client's name is not ours.
    refused(server.tjob("ps", *BOB, "nb-1"), "tjob: unauthorized")
    assert server.ok(*BOB, "ps", "-q", "--filter", "name=nb-*") == ""
    # stop and rm by filter print what they acted on.
    assert server.ok("stop", "-t", "0", "--filter", "label=team=ml") == f"{a}\n"
    assert set(server.ok("rm", "--filter", "name=nb-*").split()) == {a, b}
    server.ok("wait", server.run("--name", "nb-1", "true"))  # the name is free again


def test_timeout_from_the_cli(server: Server) -> None:
    job = server.run("--timeout", "1s", "sleep", "60")
    proc = server.tjob("wait", job)
    assert proc.returncode == 143  # SIGTERM, as stop sends first
    (st,) = json.loads(server.ok("ps", "--json", job))
    assert (st["state"], st["timed_out"], st["timeout"]) == ("stopped", True, 1.0)
    status = rows(server.ok("ps", job))[1][3]
    assert re.fullmatch(r"Timed out \(143\) \d+s ago", status), status


def test_kill_sends_sigkill_by_default_and_names_the_signal(server: Server) -> None:
    job = server.run("sleep", "60")
    assert server.ok("kill", job) == f"{job}\n"
    assert server.tjob("wait", job).returncode == 137
    (st,) = json.loads(server.ok("ps", "--json", job))
    assert (st["state"], st["signal"], st["stopped"]) == ("exited", 9, False)
    refused(server.tjob("kill", job), f"tjob: job {job} has ended")
    job = server.run("--name", "k2", "sh", "-c", "trap 'exit 5' HUP; echo ready; sleep 60 & wait")
    assert server.ok("logs", "--no-follow", job) in ("", "ready\n")
    out = b""
    with server.popen("logs", job) as logs:
        assert logs.stdout is not None
        out = logs.stdout.read(6)  # "ready\n": the trap is set
        assert out == b"ready\n"
        server.ok("kill", "-s", "HUP", "--all", "k2")
        logs.wait(60)
    assert server.tjob("wait", "k2").returncode == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--name=-bad", "true"], "argument --name: name '-bad' is not valid"),
        (["run", "--name", "", "true"], "argument --name: name must not be empty"),
        (["run", "--label", "nolabel", "true"], "argument -l/--label: label 'nolabel' is not"),
        (["run", "--timeout", "5x", "true"], "argument --timeout: "),
        (["kill", "-s", "NOPE", "x"], "argument -s/--signal: signal 'NOPE' is not one"),
        (["ps", "--filter", "color=red"], "argument --filter: filter 'color=red' is not"),
        (["ps", "--filter", "state=sleepy"], "argument --filter: filter 'state=sleepy': state"),
        (["stop"], "stop needs a JOB or a --filter"),
        (["rm"], "rm needs a JOB or a --filter"),
    ],
)
def test_bad_input_is_one_line_before_any_call(
    server: Server, args: list[str], message: str
) -> None:
    proc = server.tjob(*args, "--host", "127.0.0.1:1")  # no server there: refused before
    refused(proc, re.compile(rf"tjob: {re.escape(message)}.*"))


def test_admin_sees_names_and_filters_everyones(server: Server) -> None:
    mine = server.run("--label", "who=alice", "true")
    listing = server.ok(*ADMIN, "ps", "-q", "--filter", "label=who=alice")
    assert mine in listing.split()
