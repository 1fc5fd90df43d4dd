"""``tjob version`` / ``tjob --version``: the client's version always, the server's from the
``tjob-version`` initial metadata of its health-check answer.

Until tjobs sends that key (the server side is a listener on grpclib's ``SendInitialMetadata``
event), a real tjobs is reported as not saying; the in-process server here gets the listener
the way tjobs would, so the client's side is checked against the real wire.
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from apiharness import Harness, needs_root
from support.cli import TJOB, Server, make_certs, server  # noqa: F401 (fixture)
from support.net import free_port
from support.timeouts import PROCESS_HANG as HANG

VERSION = metadata.version("tjob")


def tjob(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(cwd / "xdg")}
    return subprocess.run(
        [*TJOB, *args], cwd=cwd, env=env, capture_output=True, timeout=HANG, check=False
    )


@pytest.mark.parametrize("spelling", [["version"], ["--version"]])
def test_unreachable_server_still_prints_the_client_version(
    tmp_path: Path, spelling: list[str]
) -> None:
    make_certs(tmp_path / ".tjob")
    host = f"127.0.0.1:{free_port()}"
    proc = tjob("--host", host, *spelling, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.decode() == f"Client: tjob {VERSION}\n"
    assert proc.stderr.decode() == f"tjob: cannot reach tjobs at {host}: connection refused\n"


def test_missing_certificates_still_print_the_client_version(tmp_path: Path) -> None:
    proc = tjob("version", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.decode() == f"Client: tjob {VERSION}\n"
    assert proc.stderr.decode().startswith("tjob: cannot read CA certificate .tjob/ca.crt")


@pytest.mark.root
def test_a_real_tjobs(server: Server) -> None:  # noqa: F811
    out = server.ok("version").splitlines()
    assert out[0] == f"Client: tjob {VERSION}"
    # The same installation serves both: tjobs says its version with every reply.
    assert out[1] == f"Server: tjobs {VERSION} at {server.host}", out[1]
    assert len(out) == 2


@needs_root
def test_the_version_the_server_sends(tmp_path: Path) -> None:
    from grpclib.events import SendInitialMetadata, listen

    async def send_version(event: SendInitialMetadata) -> None:
        event.metadata["tjob-version"] = "9.8.7+test"

    with Harness(tmp_path) as h:
        assert h.api is not None
        listen(h.api._server, SendInitialMetadata, send_version)
        ca, cert, key = (str(p) for p in h.files("cli"))
        args = ["--host", h.target, "--ca", ca, "--cert", cert, "--key", key, "version"]
        proc = tjob(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().splitlines() == [
        f"Client: tjob {VERSION}",
        f"Server: tjobs 9.8.7+test at {h.target}",
    ]
