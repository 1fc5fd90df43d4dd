"""``tjob context``: stored contexts, their files and modes, and the precedence of each setting
(flag > environment > context > default), checked through ``tjob context show`` (which prints
where each setting came from) and, as root, against a real tjobs.

Every run gets its own ``XDG_CONFIG_HOME`` and working directory: nothing of the user's.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import TJOB, Server, make_certs, refused_line, server  # noqa: F401 (fixture)
from support.timeouts import PROCESS_HANG as HANG


class Cli:
    """``tjob`` in a directory of its own, with a config dir of its own and no $TJOB_*."""

    def __init__(self, root: Path) -> None:
        self.cwd = root / "work"
        self.cwd.mkdir()
        self.config = root / "xdg"
        self.dir = self.config / "tjob"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TJOB_")}
        env["XDG_CONFIG_HOME"] = str(self.config)
        env.update(extra)
        return env

    def run(
        self, *args: str, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*TJOB, *args],
            cwd=cwd or self.cwd,
            env=self.env(**env),
            capture_output=True,
            timeout=HANG,
            check=False,
        )

    def ok(self, *args: str, **env: str) -> str:
        proc = self.run(*args, **env)
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stderr == b"", proc.stderr.decode()
        return proc.stdout.decode()

    def settings(self, *args: str, **env: str) -> dict[str, tuple[str, str]]:
        """``tjob [ARGS] context show`` as setting -> (value, where it came from)."""
        table = self.ok(*args, "context", "show", **env).splitlines()
        assert re.split(r"\s{2,}", table[0]) == ["SETTING", "VALUE", "FROM"]
        rows = (re.split(r"\s{2,}", line, maxsplit=2) for line in table[1:])
        return {name: (value, source) for name, value, source in rows}


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    c = Cli(tmp_path)
    make_certs(c.cwd / ".tjob")
    yield c


def add(cli: Cli, name: str, host: str = "prod.example:8080", *extra: str) -> None:
    files = ["--ca", ".tjob/ca.crt", "--cert", ".tjob/cli.crt", "--key", ".tjob/cli.key"]
    assert cli.ok("context", "add", name, "--host", host, *files, *extra) == f"{name}\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_add_stores_absolute_paths_privately(cli: Cli) -> None:
    add(cli, "prod")
    assert mode(cli.dir) == 0o700
    assert mode(cli.dir / "config.json") == 0o600
    stored = json.loads((cli.dir / "config.json").read_text())
    certs = cli.cwd / ".tjob"
    assert stored == {
        "current": None,
        "contexts": {
            "prod": {
                "host": "prod.example:8080",
                "ca": str(certs / "ca.crt"),
                "cert": str(certs / "cli.crt"),
                "key": str(certs / "cli.key"),
            }
        },
    }
    assert sorted(p.name for p in cli.dir.iterdir()) == ["config.json"]  # no temporary left


def test_copy_puts_the_files_in_the_config_dir_0600(cli: Cli) -> None:
    add(cli, "prod", "prod.example:8080", "--copy")
    copies = cli.dir / "contexts" / "prod"
    assert mode(cli.dir / "contexts") == 0o700
    assert mode(copies) == 0o700
    for name in ("ca.crt", "cli.crt", "cli.key"):
        assert mode(copies / name) == 0o600
        assert (copies / name).read_bytes() == (cli.cwd / ".tjob" / name).read_bytes()
    assert cli.ok("context", "show", "prod").split()[-1] == str(copies / "cli.key")
    cli.ok("context", "rm", "prod")
    assert not copies.exists()


def test_ls_use_rm(cli: Cli) -> None:
    add(cli, "prod")
    add(cli, "dev", "dev.example:9000")
    table = cli.ok("context", "ls").splitlines()
    assert [re.split(r"\s{2,}", row)[:2] for row in table] == [
        ["NAME", "HOST"],
        ["default *", "localhost:8080"],
        ["dev", "dev.example:9000"],
        ["prod", "prod.example:8080"],
    ]
    assert cli.ok("context", "use", "prod") == "prod\n"
    assert "prod *" in cli.ok("context", "ls")
    assert "dev *" in cli.ok("--context", "dev", "context", "ls")  # the one in use
    assert cli.ok("context", "ls", "-q") == "default\ndev\nprod\n"
    assert cli.ok("context", "rm", "prod") == "prod\n"
    assert "default *" in cli.ok("context", "ls")  # removing the current one unsets it
    cli.ok("context", "use", "dev")
    cli.ok("context", "use", "default")
    assert json.loads((cli.dir / "config.json").read_text())["current"] is None


def test_precedence_flag_env_context_default(cli: Cli) -> None:
    # Nothing: the built-in defaults.
    s = cli.settings()
    assert s["context"] == ("default", "default")
    assert s["host"] == ("localhost:8080", "default")
    assert s["ca"] == (".tjob/ca.crt", "default")
    add(cli, "prod")
    cli.ok("context", "use", "prod")
    ca = str(cli.cwd / ".tjob" / "ca.crt")
    # The current context gives every setting.
    s = cli.settings()
    assert s["context"][0] == "prod"
    assert s["host"] == ("prod.example:8080", "context prod")
    assert s["ca"] == (ca, "context prod")
    # An environment variable beats the context for its setting only.
    s = cli.settings(TJOB_HOST="env.example:1")
    assert s["host"] == ("env.example:1", "$TJOB_HOST")
    assert s["ca"] == (ca, "context prod")
    # A flag beats both; the context's certificates stay.
    s = cli.settings("--host", "flag.example:2", TJOB_HOST="env.example:1")
    assert s["host"] == ("flag.example:2", "--host")
    assert s["cert"] == (str(cli.cwd / ".tjob" / "cli.crt"), "context prod")
    # The context itself: --context > $TJOB_CONTEXT > the current one; `default` is none.
    add(cli, "dev", "dev.example:9000")
    assert cli.settings(TJOB_CONTEXT="dev")["host"] == ("dev.example:9000", "context dev")
    s = cli.settings("--context", "prod", TJOB_CONTEXT="dev")
    assert s["context"] == ("prod", "--context")
    assert cli.settings("--context", "default")["host"] == ("localhost:8080", "default")


def test_errors_are_one_line(cli: Cli) -> None:
    refused_line(
        cli.run("--context", "nope", "ps"),
        "tjob: no context named 'nope' (from --context) (see 'tjob context ls')",
    )
    refused_line(
        cli.run("ps", TJOB_CONTEXT="nope"),
        "tjob: no context named 'nope' (from $TJOB_CONTEXT) (see 'tjob context ls')",
    )
    refused_line(
        cli.run("context", "use", "nope"), "tjob: no context named 'nope' (see 'tjob context ls')"
    )
    refused_line(
        cli.run("context", "add", "a b", "--host", "x:1"),
        "tjob: context name 'a b' is not a valid name: use up to 63 letters, digits, '.', '_' "
        "and '-', starting with a letter or digit",
    )
    refused_line(
        cli.run("context", "add", "default", "--host", "x:1"),
        re.compile(r"tjob: context name 'default' is reserved \(it means no context\): .*"),
    )
    refused_line(
        cli.run("context", "add", "x", "--host", "x:1", "--ca", "missing.crt"),
        f"tjob: --ca {cli.cwd / 'missing.crt'}: no such file",
    )
    refused_line(
        cli.run("context", "add", "x"),
        re.compile(r"tjob: .*--host.* \(see 'tjob context add -h'\)"),
    )
    add(cli, "prod")
    refused_line(
        cli.run("context", "add", "prod", "--host", "y:1"),
        "tjob: context 'prod' exists (add -f to replace it)",
    )
    assert cli.ok("context", "add", "prod", "--host", "y:1", "-f") == "prod\n"
    # A context whose file has gone: the error names the context, not only the file.
    add(cli, "gone", "gone.example:1", "-f")
    (cli.cwd / ".tjob" / "ca.crt").unlink()
    refused_line(
        cli.run("--context", "gone", "ps"),
        f"tjob: context 'gone': its CA file {cli.cwd / '.tjob' / 'ca.crt'} is missing "
        "(add the context again: tjob context add gone -f ...)",
    )
    # A damaged file is one line too, and the CLI still runs what needs no server.
    (cli.dir / "config.json").write_text("{")
    refused_line(
        cli.run("ps"), re.compile(rf"tjob: cannot read the contexts file {cli.dir}/config.json: .*")
    )
    assert cli.run("-h").returncode == 0
    # A name edited in by hand is refused: names are directory names for --copy.
    (cli.dir / "config.json").write_text('{"contexts": {"../..": {"host": "x:1"}}}')
    refused_line(
        cli.run("context", "rm", "../.."),
        f"tjob: the contexts file {cli.dir}/config.json is not in tjob's format (remove or fix it)",
    )
    assert cli.dir.exists()


def test_a_relative_xdg_config_home_is_ignored(cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert cli.ok("context", "add", "h", "--host", "h:1", HOME=str(home), XDG_CONFIG_HOME="rel")
    assert (home / ".config" / "tjob" / "config.json").exists()
    assert not (cli.cwd / "rel").exists()


@pytest.mark.root
def test_a_context_reaches_a_real_server_from_anywhere(server: Server, tmp_path: Path) -> None:  # noqa: F811
    cli = Cli(tmp_path)
    certs = server.home / ".tjob"
    files = ["--ca", str(certs / "ca.crt"), "--cert", str(certs / "other.crt")]
    cli.ok(
        "context", "add", "srv", "--host", server.host, *files, "--key", str(certs / "other.key")
    )
    cli.ok("context", "use", "srv")
    job = cli.ok("run", "true").strip()  # from a directory without .tjob/
    assert cli.ok("wait", job) == "0\n"
    assert job in cli.ok("ps", "-q").split()
    # --host replaces the address only: the context's certificates (bob's) are kept.
    dead = "127.0.0.1:1"
    refused_line(
        cli.run("--host", dead, "ps"), f"tjob: cannot reach tjobs at {dead}: connection refused"
    )
    refused_line(
        cli.run("ps", TJOB_HOST=dead), f"tjob: cannot reach tjobs at {dead}: connection refused"
    )
    assert job in cli.ok("--host", server.host, "ps", "-q", TJOB_HOST=dead).split()
    # Another client's context does not see bob's job.
    cli.ok(
        "context",
        "add",
        "alice",
        "--host",
        server.host,
        *files[:2],
        "--cert",
        str(certs / "cli.crt"),
        "--key",
        str(certs / "cli.key"),
    )
    assert job not in cli.ok("--context", "alice", "ps", "-q").split()
