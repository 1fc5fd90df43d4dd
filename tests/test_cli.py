"""The ``tjob`` CLI end to end: a real ``tjobs`` process, real mutual TLS, the CLI as a process.

Certificates come from the product's own tool (``python -m tjob.cli.certs``) into ``HOME/.tjob``,
and the CLI runs with HOME as its working directory, so the seed's default paths
(``.tjob/cli.crt``) and its ``-cert .tjob/other.crt`` spellings are what the tests type.
"""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from support import cli
from support.cli import ADMIN, SHORT_ID, TJOB, Server, make_certs, refused_line
from support.net import free_port
from support.timeouts import PROCESS_HANG as HANG

# The seed's spelling for the second client (CN bob).
BOB = ["-cert", ".tjob/other.crt", "-key", ".tjob/other.key"]
server = cli.server  # the module's tjobs (a fixture)


def rows(table: str) -> list[list[str]]:
    """A ``ps``/``stats`` table as cells (columns are two or more spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in table.splitlines() if line.strip()]


# --- the seed's transcript ----------------------------------------------------------------------


@pytest.mark.root
def test_seed_transcript(server: Server) -> None:
    # run job to find all text files (--cpu 5, under the 20% cap, keeps it running long
    # enough for the steps below on a fast machine; the seed's argv is unchanged)
    job = server.run("--cpu", "5", "find", "/", "-name", "*.txt")

    # show the status of the running job
    table = rows(server.ok("ps", job))
    assert table[0] == ["JOB ID", "COMMAND", "CREATED", "STATUS"]
    assert len(table) == 2
    job_id, command, created, status = table[1]
    assert job_id == job
    assert command == "\"find / -name '*.txt'\""
    assert re.fullmatch(r"\d+s ago", created)
    assert re.fullmatch(r"Running \d+s", status)

    # stream the logs of the job and Ctrl+C to cancel it
    logs = server.popen("logs", job)
    assert logs.stdout is not None
    ready, _, _ = select.select([logs.stdout], [], [], HANG)
    assert ready, "no output from tjob logs"
    first = logs.stdout.readline()
    assert first.endswith(b".txt\n")
    logs.send_signal(signal.SIGINT)
    _out, err = logs.communicate(timeout=HANG)
    assert logs.returncode == 130
    assert b"Traceback" not in err

    # show the status of it again
    assert rows(server.ok("ps", job))[1][3].startswith("Running ")

    # stop the running job
    assert server.ok("stop", job) == f"{job}\n"

    # show the status after stopped
    status = rows(server.ok("ps", job))[1][3]
    assert status in ("Killed (SIGTERM) stopped", "Killed (SIGKILL) stopped"), status

    # show the logs after stopped: from the first byte, and it ends on its own
    after = server.tjob("logs", job)
    assert after.returncode == 0
    assert after.stdout.startswith(first)

    # run short-lived job
    uname = server.run("uname", "-a")
    assert server.ok("wait", uname) == "0\n"

    # show the status of it
    table = rows(server.ok("ps", uname))
    assert table[1][:2] == [uname, '"uname -a"'] and table[1][3] == "Exit (0)"

    # show the logs of it
    assert server.ok("logs", uname).startswith("Linux ")

    # others cannot see logs, status, or stop it
    refused_line(server.tjob("logs", *BOB, uname), "tjob: unauthorized")
    refused_line(server.tjob("ps", *BOB, uname), "tjob: unauthorized")
    refused_line(server.tjob("stop", *BOB, uname), "tjob: unauthorized")
    # ... and an id nobody has gets the very same answer
    refused_line(server.tjob("ps", "0123abcd"), "tjob: unauthorized")

    # others can run own job, see its status and logs
    theirs = server.run(*BOB, "uname", "-a")
    assert server.ok("wait", *BOB, theirs) == "0\n"
    assert rows(server.ok("ps", *BOB, theirs))[1][3] == "Exit (0)"
    assert server.ok("logs", *BOB, theirs).startswith("Linux ")

    # each sees only their own jobs; the admin sees both, with owners
    mine = server.ok("ps", "-q").split()
    assert uname in mine and job in mine and theirs not in mine
    assert theirs in server.ok(*BOB, "ps", "-q").split()
    table = rows(server.ok(*ADMIN, "ps"))
    assert table[0] == ["JOB ID", "COMMAND", "OWNER", "CREATED", "STATUS"]
    owners = {r[0]: r[2] for r in table[1:]}
    assert owners[uname] == "alice" and owners[theirs] == "bob"


# --- run ----------------------------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.parametrize(
    ("argv", "code"),
    [(["true"], 0), (["sh", "-c", "exit 3"], 3), (["sh", "-c", "kill -9 $$"], 128 + 9)],
)
def test_attach_passes_the_exit_code_through(server: Server, argv: list[str], code: int) -> None:
    proc = server.tjob("run", "-a", *argv)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == b"" and proc.stderr == b""


@pytest.mark.root
def test_attach_streams_stdout_and_stderr_apart(server: Server) -> None:
    proc = server.tjob("run", "--attach", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (proc.returncode, proc.stdout, proc.stderr) == (4, b"out\n", b"err\n")


@pytest.mark.root
def test_everything_after_command_is_the_jobs(server: Server) -> None:
    # -c, -h and --host are ours too; after COMMAND they are the job's.
    proc = server.tjob("run", "-a", "sh", "-c", 'echo "$0" "$@"', "-h", "--host", "x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"-h --host x\n"  # sh's $0 and $@
    proc = server.tjob("run", "-a", "--", "printf", "%s,", "-e", "--cpu")
    assert proc.stdout == b"-e,--cpu,"


@pytest.mark.root
def test_env_workdir_and_limits(server: Server) -> None:
    job = server.run(
        "-e",
        "GREETING=hi",
        "-w",
        "/tmp",
        "--mem",
        "16",
        "--pids",
        "9",
        "sh",
        "-c",
        'echo "$GREETING" "$PWD"',
    )
    server.ok("wait", job)
    assert server.ok("logs", job) == "hi /tmp\n"
    (status,) = json.loads(server.ok("ps", "--json", job))
    assert status["limits"]["memory_mb"] == 16 and status["limits"]["pids"] == 9


@pytest.mark.root
def test_volumes(server: Server) -> None:
    job = server.run("-v", "ref:/tmp/r", "-v", "ref:/var/tmp/r2:ro", "cat", "/tmp/r/hello")
    server.ok("wait", job)
    assert server.ok("logs", job) == "hello\n"
    refused_line(server.tjob("run", "-v", "nope:/x", "true"), "tjob: no such volume: nope")
    refused_line(
        server.tjob("run", "-v", "ref:/x:rw", "true"),
        "tjob: volume ref is read-only: it cannot be mounted rw",
    )
    refused_line(
        server.tjob("run", "-v", "ref", "true"),
        "tjob: -v: volume 'ref': expected NAME:/TARGET[:ro|:rw]",
    )


@pytest.mark.root
def test_a_command_that_cannot_start(server: Server) -> None:
    proc = server.tjob("run", "no-such-command")
    assert proc.returncode == 127
    assert SHORT_ID.match(proc.stdout)  # the job exists: ps can show why it failed
    assert proc.stderr == b"tjob: exec no-such-command: No such file or directory\n"
    (row,) = rows(server.ok("ps", proc.stdout.decode().strip()))[1:]
    assert row[3] == "Failed: exec no-such-command: No such file or directory"
    assert server.tjob("run", "-a", "/etc/passwd").returncode == 126


# --- ps, logs, wait, stop, stats ----------------------------------------------------------------


@pytest.mark.root
def test_ps_json_and_quiet(server: Server) -> None:
    a = server.run("sh", "-c", "exit 3")
    b = server.run("true")
    server.tjob("wait", a, b)
    listing = json.loads(server.ok("ps", "--json"))
    assert isinstance(listing, list)
    by_id = {j["id"][:8]: j for j in listing}
    assert by_id[a]["state"] == "exited" and by_id[a]["exit_code"] == 3
    assert by_id[b]["argv"] == ["true"] and by_id[b]["owner"] == "alice"
    assert len(by_id[a]["id"]) == 32
    ids = server.ok("ps", "-q").split()
    assert ids.index(b) < ids.index(a)  # newest first
    assert [j["id"][:8] for j in json.loads(server.ok("ps", "--json", a, b))] == [a, b]


@pytest.mark.root
def test_logs_is_binary_safe_and_selects_streams(server: Server) -> None:
    job = server.run("sh", "-c", r"printf '\000\377\200a\r\n'; printf 'e\377' >&2")
    server.ok("wait", job)
    out = server.tjob("logs", "--no-follow", "--stdout", job)
    assert (out.returncode, out.stdout, out.stderr) == (0, b"\x00\xff\x80a\r\n", b"")
    err = server.tjob("logs", "--stderr", job)
    assert (err.returncode, err.stdout, err.stderr) == (0, b"", b"e\xff")
    both = server.tjob("logs", job)
    assert (both.stdout, both.stderr) == (b"\x00\xff\x80a\r\n", b"e\xff")


@pytest.mark.root
def test_logs_into_a_closed_pipe_ends_quietly(server: Server) -> None:
    job = server.run("yes")
    try:
        logs = server.popen("logs", job)
        assert logs.stdout is not None
        assert logs.stdout.read(4) == b"y\ny\n"
        logs.stdout.close()  # as `tjob logs JOB | head` does
        assert logs.wait(HANG) == 141
        assert logs.stderr is not None and logs.stderr.read() == b""
    finally:
        server.ok("stop", "-t", "0", job)


@pytest.mark.root
def test_wait_exits_with_the_last_jobs_code(server: Server) -> None:
    three = server.run("sh", "-c", "exit 3")
    zero = server.run("true")
    proc = server.tjob("wait", zero, three)
    assert (proc.returncode, proc.stdout) == (3, b"0\n3\n")
    proc = server.tjob("wait", three, zero)
    assert (proc.returncode, proc.stdout) == (0, b"3\n0\n")


@pytest.mark.root
def test_rm_removes_finished_jobs_only(server: Server) -> None:
    done = server.run("true")
    running = server.run("sleep", "1000")
    server.ok("wait", done)
    proc = server.tjob("rm", running, done)
    assert proc.returncode == 1
    assert proc.stdout == f"{done}\n".encode()
    assert (
        proc.stderr == f"tjob: {running}: job {running} is still running; stop it first\n".encode()
    )
    assert server.tjob("ps", done).stderr == b"tjob: unauthorized\n"
    server.ok("stop", "-t", "0", running)
    assert server.ok("rm", running) == f"{running}\n"


@pytest.mark.root
def test_several_jobs_some_refused(server: Server) -> None:
    job = server.run("true")
    server.ok("wait", job)
    proc = server.tjob("ps", job, "0123abcd")
    assert proc.returncode == 1
    assert [r[0] for r in rows(proc.stdout.decode())] == ["JOB ID", job]
    assert proc.stderr == b"tjob: 0123abcd: unauthorized\n"


@pytest.mark.root
def test_stop_with_grace_and_several_jobs(server: Server) -> None:
    a = server.run("sh", "-c", "trap '' TERM; while :; do sleep 1; done")
    b = server.run("sleep", "1000")
    assert server.ok("stop", "-t", "0", a, b) == f"{a}\n{b}\n"
    table = {r[0]: r[3] for r in rows(server.ok("ps", a, b))[1:]}
    assert table == {a: "Killed (SIGKILL) stopped", b: "Killed (SIGKILL) stopped"}


@pytest.mark.root
def test_stats_shows_a_cpu_bound_job_near_its_limit(server: Server) -> None:
    job = server.run("--cpu", "20", "sh", "-c", "yes > /dev/null")
    try:
        table = rows(server.ok("stats", "--no-stream", job))
        assert table[0] == [
            "JOB ID",
            "COMMAND",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "PIDS",
            "BLOCK I/O",
        ]
        ((job_id, command, cpu, mem, _mem_pct, pids, _io),) = table[1:]
        assert (job_id, command) == (job, "\"sh -c 'yes > /dev/null'\"")
        # The cap is 20% of one CPU; the floor only says it is busy (the host may be too).
        assert 10.0 <= float(cpu.rstrip("%")) <= 26.0, cpu
        assert mem.endswith(" / 20MiB")
        assert int(pids) >= 2  # sh and yes
        # Without ids: all of the caller's running jobs, this one among them.
        assert job in server.ok("stats", "--no-stream")
    finally:
        server.ok("stop", "-t", "0", job)


@pytest.mark.root
def test_stats_of_named_jobs_ends_when_they_do(server: Server) -> None:
    job = server.run("sleep", "3")
    proc = server.tjob("stats", job)
    assert proc.returncode == 0
    tables = [t for t in proc.stdout.decode().split("JOB ID") if t.strip()]
    assert len(tables) >= 2  # refreshed each second while it ran


@pytest.mark.root
def test_control_characters_in_fields_are_shown_escaped(server: Server) -> None:
    # A hostile job's argv must not reach the terminal of whoever lists it (issue 14).
    hostile = "\x1b[2J\nx"
    done = server.run("true", hostile)
    running = server.run("sh", "-c", "sleep 1000", hostile)
    try:
        server.ok("wait", done)
        listing = server.tjob("ps", done, running).stdout
        assert b"\x1b" not in listing
        table = rows(listing.decode())
        assert len(table) == 3  # the header and one line per job
        assert table[1][:2] == [done, "\"true '\\x1b[2J\\nx'\""]
        (as_json,) = json.loads(server.ok("ps", "--json", done))  # JSON escapes them itself
        assert as_json["argv"] == ["true", hostile] and "\x1b" not in server.ok("ps", "--json")
        stats = server.tjob("stats", "--no-stream", running).stdout
        assert b"\x1b" not in stats and len(stats.splitlines()) == 2
        # The server's error quotes the job's working directory: escaped too, one line.
        proc = server.tjob("run", "-w", "/no\x1b[2J\nwhere", "true")
        assert proc.returncode != 0 and b"\x1b" not in proc.stderr
        assert b"\\x1b[2J" in proc.stderr and len(proc.stderr.splitlines()) == 1
    finally:
        server.ok("stop", "-t", "0", running)


# --- options ------------------------------------------------------------------------------------


@pytest.mark.root
def test_global_options_before_after_and_from_the_environment(server: Server) -> None:
    theirs = server.run(*BOB, "true")
    server.ok("wait", *BOB, theirs)
    assert theirs in server.ok(*BOB, "ps", "-q").split()  # before the command
    assert theirs in server.ok("ps", "-q", *BOB).split()  # after it
    gnu = ["--cert", ".tjob/other.crt", "--key=.tjob/other.key"]
    assert theirs in server.ok("ps", *gnu, "-q").split()
    env = server.env(TJOB_CERT=".tjob/other.crt", TJOB_KEY=".tjob/other.key")
    proc = server.tjob("ps", "-q", env=env)
    assert theirs in proc.stdout.decode().split()
    # A flag beats the environment.
    dead = f"127.0.0.1:{free_port()}"
    env = server.env(TJOB_HOST=dead)
    assert server.tjob("--host", server.host, "ps", env=env).returncode == 0
    assert server.tjob("ps", env=env).returncode == 1


@pytest.mark.root
def test_help(server: Server) -> None:
    top = server.tjob("-h")
    assert top.returncode == 0
    text = top.stdout.decode()
    assert text.startswith("Usage: tjob [OPTIONS] COMMAND\n")
    for line in ("run    [OPTIONS] COMMAND [ARG...]", "ps     [OPTIONS] [JOB...]", "-ca"):
        assert line in text
    for command in ("run", "stop", "ps", "logs", "wait", "stats"):
        assert f"\n  {command} " in text
        sub = server.tjob(command, "-h")
        assert sub.returncode == 0
        assert sub.stdout.decode().startswith(f"Usage: tjob {command} ")
        assert "--cert FILE" in sub.stdout.decode()


@pytest.mark.root
def test_usage_errors_are_one_line(server: Server) -> None:
    refused_line(server.tjob("bogus"), "tjob: unknown command 'bogus' (see 'tjob -h')")
    refused_line(server.tjob("run"), "tjob: run needs a COMMAND (see 'tjob run -h')")
    refused_line(server.tjob("logs"), re.compile(r"tjob: .*JOB.* \(see 'tjob logs -h'\)"))
    refused_line(server.tjob("run", "--cpu", "x", "true"), re.compile(r"tjob: argument --cpu: .*"))
    assert server.tjob("run", "--cpu", "0", "true").returncode == 2


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.root
def test_server_not_running(server: Server) -> None:
    port = free_port()
    refused_line(
        server.tjob("--host", f"localhost:{port}", "ps"),
        f"tjob: cannot reach tjobs at localhost:{port}: connection refused",
    )
    refused_line(
        server.tjob("logs", "12345678", env=server.env(TJOB_HOST=f"127.0.0.1:{port}")),
        f"tjob: cannot reach tjobs at 127.0.0.1:{port}: connection refused",
    )
    # One line for the command, not one per job.
    refused_line(
        server.tjob("stop", "-host", f"127.0.0.1:{port}", "12345678", "9abcdef0"),
        f"tjob: cannot reach tjobs at 127.0.0.1:{port}: connection refused",
    )


@pytest.mark.root
@pytest.mark.parametrize(
    ("flag", "what"),
    [("--ca", "CA certificate"), ("--cert", "client certificate"), ("--key", "client key")],
)
def test_missing_certificate_files_are_named(server: Server, flag: str, what: str) -> None:
    refused_line(
        server.tjob("ps", flag, "nowhere/x.pem"),
        f"tjob: cannot read {what} nowhere/x.pem: No such file or directory",
    )


@pytest.mark.root
def test_default_certificate_files_missing(server: Server, tmp_path: Path) -> None:
    proc = subprocess.run(
        [*TJOB, "ps"],
        check=False,
        cwd=tmp_path,
        env=server.env(),
        capture_output=True,
        timeout=HANG,
    )
    refused_line(proc, "tjob: cannot read CA certificate .tjob/ca.crt: No such file or directory")


@pytest.mark.root
def test_server_certificate_not_trusted(server: Server, tmp_path: Path) -> None:
    make_certs(tmp_path / "elsewhere")
    ca = str(tmp_path / "elsewhere" / "ca.crt")
    refused_line(
        server.tjob("ps", "--ca", ca),
        re.compile(
            rf"tjob: cannot reach tjobs at {re.escape(server.host)}: its certificate is not "
            rf"trusted by CA {re.escape(ca)} \(.+\)"
        ),
    )


@pytest.mark.root
def test_client_certificate_from_another_ca(server: Server, tmp_path: Path) -> None:
    make_certs(tmp_path / "elsewhere")
    d = tmp_path / "elsewhere"
    proc = server.tjob("ps", "--cert", str(d / "cli.crt"), "--key", str(d / "cli.key"))
    refused_line(proc, re.compile(rf"tjob: cannot reach tjobs at {re.escape(server.host)}: .+"))


@pytest.mark.root
def test_key_of_another_certificate(server: Server) -> None:
    refused_line(
        server.tjob("ps", "--key", ".tjob/other.key"),
        "tjob: cannot use client key .tjob/other.key with certificate .tjob/cli.crt: "
        "it is not the key of that certificate",
    )


@pytest.mark.root
@pytest.mark.parametrize(
    ("args", "message"),
    [
        # The caps are the host's (no --max-* flags): over them is refused, naming the flag.
        (["--cpu", "100000"], r"cpu_percent 100000 is above the server's cap of \d+ "),
        (["--mem", "10T"], r"memory_mb 10485760 is above the server's cap of \d+ "),
    ],
)
def test_invalid_limits_print_the_servers_message(
    server: Server, args: Sequence[str], message: str
) -> None:
    flag = {"--cpu": "cpu", "--mem": "mem"}[args[0]]
    line = re.compile(rf"tjob: {message}\(tjobs --max-{flag}\)")
    refused_line(server.tjob("run", *args, "true"), line)


@pytest.mark.root
def test_malformed_job_id(server: Server) -> None:
    refused_line(server.tjob("ps", "zz!"), re.compile(r"tjob: job id 'zz!' is not valid: .+"))
    refused_line(server.tjob("ps", "zz"), "tjob: unauthorized")  # a name none of ours has
