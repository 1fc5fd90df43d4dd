"""Interactive jobs through a real ``tjobs`` process (issue 16): a terminal job outlives a
``tjobs`` restart and is attached again; 1 GiB into a job that reads slowly keeps the server's
memory bounded (flow control end to end)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.attach import Session
from support.cli import make_certs
from support.tjobs import Tjobs

from tjob.api.tjob.v1 import tjob_pb2 as pb

pytestmark = pytest.mark.root

MIB = 1 << 20


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    make_certs(tmp_path / "certs")
    return tmp_path / "certs"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "state"


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    assert m
    return int(m.group(1)) * 1024


def test_a_terminal_job_survives_a_restart_and_is_attached_again(certs: Path, state: Path) -> None:
    server = Tjobs(certs, state, pump=True)
    try:
        server.listening()
        stub = server.stub("cli")
        req = pb.RunRequest(argv=["sh"], stdin=True, tty=True, name="keep")
        job = stub.Run(req, timeout=30)
        first = Session(stub, job.id, logs=True)
        assert first.attached.tty and first.attached.stdin
        first.expect(b"$ ")
        first.send(data=b"echo before\r")
        first.expect(b"\r\nbefore\r\n")
        assert server.stop() == 0  # tjobs ends; the supervisor keeps the terminal
        first.cancel()  # its call failed with the server: let its threads go
        server = Tjobs(certs, state, pump=True)
        server.listening()
        stub = server.stub("cli")
        again = Session(stub, "keep")  # live output only: nothing of before
        again.send(data=b"echo after; exit 6\r")
        st = again.exit()
        assert st is not None and st.exit_code == 6
        assert b"after" in again.output and b"before" not in again.output
        logs = b"".join(c.data for c in stub.Logs(pb.LogsRequest(id="keep"), timeout=30))
        assert b"before" in logs and b"after" in logs
    finally:
        server.close()


def test_a_gib_into_a_slow_reader_keeps_the_server_small(certs: Path, state: Path) -> None:
    server = Tjobs(certs, state, pump=True)
    try:
        server.listening()
        stub = server.stub("cli")
        reader = (
            "import sys, time\n"
            "n = 0\n"
            "while b := sys.stdin.buffer.read1(1 << 18):\n"
            "    n += len(b)\n"
            "    time.sleep(0.002)\n"
            "print(n)\n"
        )
        limits = pb.Limits(cpu_percent=100, memory_mb=64)
        job = stub.Run(pb.RunRequest(argv=["python3", "-c", reader], stdin=True, limits=limits))
        before = peak_rss(server.proc.pid)
        block = os.urandom(60 << 10)
        total = (1 << 30) // len(block) * len(block)

        def requests() -> Iterator[pb.AttachRequest]:
            yield pb.AttachRequest(start=pb.AttachStart(id=job.id, stdin=True, logs=True))
            for _ in range(total // len(block)):
                yield pb.AttachRequest(data=block)
            yield pb.AttachRequest(eof=True)

        out, exit_status = b"", None
        for reply in stub.Attach(requests(), timeout=600):
            if reply.WhichOneof("msg") == "output":
                out += reply.output.data
            elif reply.WhichOneof("msg") == "exit":
                exit_status = reply.exit
        assert exit_status is not None and exit_status.exit_code == 0, exit_status
        assert out.strip() == str(total).encode()
        grew = peak_rss(server.proc.pid) - before
        assert grew < 64 * MIB, f"the server grew by {grew / MIB:.0f} MiB for 1 GiB of stdin"
    finally:
        server.close()
