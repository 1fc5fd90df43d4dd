"""``tjobs`` as a real child process: certificates from a directory, a free loopback port, its
stderr read line by line (readiness is its "listen on" line, never a sleep) and a clean stop."""

from __future__ import annotations

import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from support.net import free_port
from support.timeouts import HANG
from tjob import Engine
from tjob.api import tls
from tjob.api.tjob.v1.tjob_pb2_grpc import JobServiceStub

BIN = Path(sys.executable).parent  # the venv's bin: its tjobs and tjob commands
# As the suites always ran it (test_install runs the installed bin/tjobs).
TJOBS = [sys.executable, "-m", "tjob.cli.tjobs"]


class Tjobs:
    """``tjobs`` serving ``127.0.0.1:PORT`` with the CA and svc certificate of ``certs``, under an
    optional prefix command (``prlimit``, ``unshare``). Its stderr lines arrive as they are
    written: with ``pump`` a thread drains them onto a queue so a chatty server never blocks;
    without it (a server that outlives its module's threads) they are read when asked for."""

    channel: grpc.Channel  # the latest stub's

    def __init__(
        self,
        certs: Path,
        state: Path,
        *extra: str,
        admins: tuple[str, ...] = ("admin",),
        prefix: tuple[str, ...] = (),
        pump: bool = True,
    ) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.certs = certs
        self.state = state
        argv = [
            *prefix,
            *TJOBS,
            *("--ca", str(certs / "ca.crt")),
            *("--cert", str(certs / "svc.crt")),
            *("--key", str(certs / "svc.key")),
            *("--host", self.host),
            *("--state-dir", str(state)),
            *(a for name in admins for a in ("--admin", name)),
            *extra,
        ]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.log: list[str] = []  # the lines read so far
        self._channels: list[grpc.Channel] = []
        self._lines: queue.Queue[str] | None = None
        self._buf = b""
        if pump:
            self._lines = queue.Queue()
            threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None and self._lines is not None
        for line in self.proc.stderr:
            self._lines.put(line.decode(errors="replace").rstrip("\n"))
        self._lines.put("")  # end of output

    def next_line(self) -> str:
        """The next line tjobs writes to stderr; "" at its end."""
        if self._lines is not None:
            return self._lines.get(timeout=HANG)
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + HANG
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            assert left > 0 and poller.poll(left * 1000), f"tjobs printed no line: {self.log}"
            chunk = os.read(fd, 65536)
            if not chunk:
                last, self._buf = self._buf, b""
                return last.decode(errors="replace")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def expect(self, text: str) -> str:
        """The next stderr line containing ``text``."""
        while True:
            line = self.next_line()
            self.log.append(line)
            if text in line:
                return line
            assert line, f"tjobs ended without printing {text!r}: {self.log}"

    def listening(self) -> str:
        """Wait until tjobs serves (its "listen on" line); that line."""
        return self.expect("listen on")

    def rest(self) -> list[str]:
        """Every stderr line up to the end of its output (the process must be ending)."""
        while (line := self.next_line()) != "":
            self.log.append(line)
        return self.log

    def refusal(self) -> str:
        """tjobs must refuse to start (see ``startup_refusal``); its one line."""
        return _refusal_line(self.proc.wait(HANG), self.rest())

    def files(self, stem: str) -> tuple[Path, Path, Path]:
        return self.certs / "ca.crt", self.certs / f"{stem}.crt", self.certs / f"{stem}.key"

    def stub(self, stem: str = "cli") -> JobServiceStub:
        """A stub as ``stem``, on a channel of its own."""
        creds = tls.client_credentials(*self.files(stem))
        self.channel = grpc.secure_channel(self.host, creds)
        self._channels.append(self.channel)
        return JobServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Close the stubs' channels, signal tjobs unless it has ended; its exit code."""
        for ch in self._channels:
            ch.close()
        self._channels.clear()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(HANG)

    def close(self) -> None:
        """Kill tjobs if it still runs, and stop the jobs it leaves: jobs outlive tjobs by
        design; a new engine on the same state adopts and stops them."""
        self.stop(signal.SIGKILL)
        Engine(self.state).close(stop_jobs=True, grace=0)


def startup_refusal(proc: subprocess.CompletedProcess[str]) -> str:
    """tjobs (run to its end, text output) refused to start: its one line."""
    return _refusal_line(proc.returncode, proc.stderr.splitlines())


def _refusal_line(code: int, lines: Sequence[str]) -> str:
    """tjobs refused to start: exit 1, exactly one line on stderr (``tjobs: ...``), no
    traceback; that line."""
    assert code == 1, (code, lines)
    assert len(lines) == 1 and lines[0].startswith("tjobs: "), lines
    assert "Traceback" not in lines[0]
    return lines[0]
