"""A real terminal for a client under test: a pty pair whose slave is the process's controlling
terminal (``setsid --ctty``), so it gets SIGWINCH when the window is resized here, and its
raw mode can be checked from here."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Sequence
from pathlib import Path

from support.timeouts import PROCESS_HANG


class Terminal:
    """``argv`` run on a new pty of ``rows`` x ``cols``; :meth:`expect` reads its screen."""

    def __init__(
        self, argv: Sequence[str], *, cwd: Path, env: dict[str, str], rows: int = 24, cols: int = 80
    ) -> None:
        self.master, self.slave = os.openpty()
        self.resize(rows, cols)
        self.modes = termios.tcgetattr(self.slave)  # the "local terminal mode" to come back
        self.proc = subprocess.Popen(
            ["setsid", "--ctty", *argv],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            cwd=cwd,
            env=env,
        )
        self.seen = b""  # what expect() consumed, for failure messages
        self._buf = b""

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, text: bytes, timeout: float = PROCESS_HANG) -> bytes:
        """Everything up to and including ``text``, once it appears (a guard against hangs)."""
        deadline = time.monotonic() + timeout
        while text not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"{text!r} never came; the screen: {self.seen + self._buf!r}")
            try:
                self._buf += os.read(self.master, 65536)
            except OSError:  # EIO: every process on the slave side is gone
                raise AssertionError(f"{text!r} never came: {self.seen + self._buf!r}") from None
        end = self._buf.index(text) + len(text)
        got, self._buf = self._buf[:end], self._buf[end:]
        self.seen += got
        return got

    def wait(self, timeout: float = PROCESS_HANG) -> int:
        return self.proc.wait(timeout)

    def raw(self) -> bool:
        """Whether the client has our terminal raw (no echo, no line editing)."""
        lflag = termios.tcgetattr(self.slave)[3]
        return not lflag & (termios.ECHO | termios.ICANON)

    def restored(self) -> bool:
        return termios.tcgetattr(self.slave) == self.modes

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(PROCESS_HANG)
        os.close(self.master)
        os.close(self.slave)
