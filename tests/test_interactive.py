"""Interactive jobs from the CLI (issue 16): ``tjob run -i``, ``run -it`` driven in a real
pseudo-terminal, ``tjob attach`` and detaching, against a real ``tjobs``."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator

import pytest
from support import cli
from support.cli import TJOB, Server, refused_line
from support.terminal import Terminal

server = cli.server  # the module's tjobs (a fixture)
pytestmark = pytest.mark.root

BOB = ["--cert", ".tjob/other.crt", "--key", ".tjob/other.key"]
PROMPT = b"$ "  # sh's, as the client's own uid


@pytest.fixture
def terminals(server: Server) -> Iterator[list[Terminal]]:
    made: list[Terminal] = []
    yield made
    for t in made:
        t.close()


def term(
    server: Server, made: list[Terminal], *args: str, rows: int = 24, cols: int = 80
) -> Terminal:
    t = Terminal(
        [*TJOB, *args], cwd=server.home, env=server.env(TERM="xterm-256color"), rows=rows, cols=cols
    )
    made.append(t)
    return t


def test_run_it_sh_in_a_real_terminal(server: Server, terminals: list[Terminal]) -> None:
    t = term(server, terminals, "run", "-it", "sh", rows=30, cols=90)
    t.expect(PROMPT)
    assert t.raw()  # ours is raw while attached: the job's terminal does the echo
    t.send(b"stty size; echo $TERM; tty\r")
    screen = t.expect(PROMPT)
    assert b"30 90\r\n" in screen and b"xterm-256color\r\n" in screen
    assert re.search(rb"/dev/pts/\d+\r\n", screen)
    # A resize reaches the job as SIGWINCH and a new size.
    t.send(b"(trap 'stty size; exit' WINCH; echo armed; while :; do sleep 0.05; done)\r")
    t.expect(b"armed\r\n")
    t.resize(40, 120)
    assert t.expect(PROMPT).endswith(b"40 120\r\n" + PROMPT)
    # Ctrl-C is a character: the job's terminal makes it SIGINT for its foreground job only.
    t.send(b"sh -c 'echo fg; exec sleep 300'\r")
    t.expect(b"fg\r\n")
    t.send(b"\x03")
    t.expect(PROMPT)
    t.send(b"echo alive\r")
    t.expect(b"alive\r\n" + PROMPT)
    t.send(b"exit 3\r")
    assert t.wait() == 3  # the job's exit code, as -a
    assert t.restored()


def test_run_i_is_byte_exact_and_passes_the_exit_code(server: Server) -> None:
    data = os.urandom(3 << 20)
    proc = server.tjob("run", "-i", "sh", "-c", "sha256sum; exit 5", input=data, timeout=120)
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_stdin_closed_at_once_is_eof(server: Server) -> None:
    proc = server.tjob("run", "-i", "wc", "-c", input=b"")  # stdin closed at once
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == b"0"


def test_t_without_a_terminal_is_refused(server: Server) -> None:
    refused_line(
        server.tjob("run", "-it", "sh"),
        "tjob: the input device is not a TTY (-t needs a terminal; drop -t, or use -i alone)",
    )


def test_detach_attach_and_one_writer(server: Server, terminals: list[Terminal]) -> None:
    t = term(server, terminals, "run", "-it", "--name", "shell1", "sh")
    t.expect(PROMPT)
    t.send(b"echo one\r")
    t.expect(b"one\r\n" + PROMPT)
    t.send(b"\x10\x11")  # Ctrl-P Ctrl-Q
    t.expect(b"detached from job")
    assert t.wait() == 0
    assert t.restored()
    # Back, with live output only (nothing replayed), and a second writer refused.
    again = term(server, terminals, "attach", "--detach-keys", "ctrl-x,x", "shell1")
    again.send(b"echo two\r")
    assert b"one" not in again.expect(b"two\r\n" + PROMPT)
    refused_line(
        server.tjob("attach", "shell1"),
        re.compile(r"tjob: job [0-9a-f]{8}: another client is attached to its stdin .*"),
    )
    # A reader sees live output (a loop keeps it coming until the reader is attached).
    again.send(b"while :; do echo three; sleep 0.1; done\r")
    again.expect(b"three\r\n")
    reader = server.popen("attach", "--no-stdin", "shell1")
    assert reader.stdout is not None
    assert b"three" in os.read(reader.stdout.fileno(), 65536)
    again.send(b"\x03")
    again.expect(PROMPT)
    refused_line(server.tjob(*BOB, "attach", "shell1"), "tjob: unauthorized")
    again.send(b"\x18x")
    again.expect(b"detached from job")
    assert again.wait() == 0
    last = term(server, terminals, "attach", "shell1")
    last.send(b"exit 4\r")
    assert last.wait() == 4
    assert reader.wait(60) == 4
    refused_line(
        server.tjob("attach", "shell1"),
        re.compile(r"tjob: job [0-9a-f]{8} has ended: tjob logs shows its output"),
    )
    # The session is in the job's log, as one stream.
    log = server.ok("logs", "shell1")
    assert "one" in log and "two" in log and "three" in log


def test_attach_to_a_job_without_stdin(server: Server) -> None:
    job = server.run("sleep", "300")
    refused_line(
        server.tjob("attach", job),
        re.compile(r"tjob: job [0-9a-f]{8} was not run with stdin or a terminal .*"),
    )
    server.ok("stop", "-t", "0", job)
