"""The ``tjob`` CLI as a process against a real ``tjobs``, and the check of a one-line refusal.

Certificates come from the product's own tool (``python -m tjob.cli.certs``) into ``HOME/.tjob``,
and the CLI runs with HOME as its working directory, so the seed's default paths
(``.tjob/cli.crt``) and its ``-cert .tjob/other.crt`` spellings are what the tests type.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.timeouts import PROCESS_HANG
from support.tjobs import BIN, Tjobs

TJOB = [str(BIN / "tjob")] if (BIN / "tjob").exists() else [sys.executable, "-m", "tjob.cli.tjob"]
ADMIN = ["--cert", ".tjob/admin.crt", "--key", ".tjob/admin.key"]  # the admin's seed spelling
SHORT_ID = re.compile(rb"^[0-9a-f]{8}\n$")


def make_certs(where: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "tjob.cli.certs", "--dir", str(where)],
        check=True,
        capture_output=True,
        timeout=PROCESS_HANG,
    )


@dataclass
class Server:
    """A ``tjobs`` process and a place to run ``tjob`` from (HOME, holding ``.tjob/``)."""

    home: Path
    tjobs: Tjobs

    @property
    def host(self) -> str:
        return self.tjobs.host

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TJOB_")}
        env["XDG_CONFIG_HOME"] = str(self.home / ".config")  # no context of the user's
        env["TJOB_HOST"] = self.host
        env.update(extra)
        return env

    def tjob(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = PROCESS_HANG,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """The CLI run to its end; ``input``, if given, is all of its stdin."""
        return subprocess.run(
            [*TJOB, *args],
            cwd=self.home,
            env=self.env() if env is None else env,
            capture_output=True,
            timeout=timeout,
            check=False,
            input=input,
        )

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*TJOB, *args],
            cwd=self.home,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def ok(self, *args: str) -> str:
        """Run ``tjob ARGS``; it must succeed; its stdout as text."""
        proc = self.tjob(*args)
        assert proc.returncode == 0, proc.stderr.decode()
        assert b"Traceback" not in proc.stderr
        return proc.stdout.decode()

    def run(self, *args: str) -> str:
        """``tjob run ARGS`` -> the short id it printed."""
        proc = self.tjob("run", *args)
        assert proc.returncode == 0, proc.stderr.decode()
        assert SHORT_ID.match(proc.stdout), proc.stdout
        return proc.stdout.decode().strip()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A module's ``tjobs`` (admin: admin) and its HOME; at the end its jobs and it are stopped."""
    home = tmp_path_factory.mktemp("cli")
    make_certs(home / ".tjob")
    (home / "ref").mkdir(mode=0o755)  # a read-only volume, "ref", holding "hello"
    (home / "ref" / "hello").write_text("hello\n")
    tjobs = Tjobs(home / ".tjob", home / "state", "--volume", f"ref={home / 'ref'}:ro")
    tjobs.listening()
    assert tjobs.proc.poll() is None, tjobs.log
    srv = Server(home, tjobs)
    try:
        yield srv
    finally:
        # Jobs outlive the server (their supervisors are not its children): end ours first.
        listing = json.loads(srv.ok(*ADMIN, "ps", "--json"))
        running = [j["id"] for j in listing if j["state"] == "running"]
        if running:
            srv.ok(*ADMIN, "stop", "-t", "0", *running)
        assert tjobs.stop() == 0, tjobs.log


def refused_line(proc: subprocess.CompletedProcess[bytes], line: str | re.Pattern[str]) -> None:
    """A command refused with one line: exactly ``line`` (or a match of it) on stderr, nothing on
    stdout, a non-zero exit, no traceback."""
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    if isinstance(line, str):
        assert lines[0] == line
    else:
        assert line.fullmatch(lines[0]), lines[0]
    assert proc.stdout == b""
