"""A writer's hold on an interactive process's stdin, through its supervisor's attach channel.

The supervisor of a job run with ``stdin`` or ``tty`` (and of anything else supervised the same
way) keeps the stdin pipe's write end or the pty's master and listens on
``protocol.ATTACH_SOCKET`` in its directory. :func:`take` connects there and is lent that
descriptor: writes go straight into the pipe or the terminal, so a process that reads slowly
blocks its writer (the pipe's own flow control), and nothing is buffered on the way. The
connection is the lease: one writer at a time; another is refused (``StdinUnavailable``).

Everything here takes the supervisor's directory, nothing else: a job's (``job.dir``) or any
other supervised process's.
"""

from __future__ import annotations

import array
import asyncio
import errno
import fcntl
import os
import select
import socket
import struct
import termios
from pathlib import Path

from .errors import StdinUnavailable
from .protocol import (
    ATTACH_SOCKET,
    LEASE_BUSY,
    LEASE_CLOSED,
    LEASE_DETACH,
    LEASE_EOF,
    LEASE_GRANTED,
    WINSIZE_MAX,
)

NOT_INTERACTIVE = "was not run with stdin or a terminal (-i/-t), or has ended"
BUSY = "another client is attached to its stdin (attach with --no-stdin to only read)"
CLOSED = "its stdin was closed"


def take(sup_dir: str | Path, what: str = "the job") -> Lease:
    """Take the stdin of the process supervised in ``sup_dir``; ``StdinUnavailable`` (naming
    ``what``) if it has none open, has ended, or another writer holds it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        dfd = os.open(sup_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        sock.close()
        raise StdinUnavailable(f"{what} {NOT_INTERACTIVE}") from None
    try:
        # Through the directory's descriptor: a unix socket path is limited to 108 bytes.
        sock.connect(f"/proc/self/fd/{dfd}/{ATTACH_SOCKET}")
        msg, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
    except OSError as e:
        sock.close()
        if e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ECONNRESET):
            raise StdinUnavailable(f"{what} {NOT_INTERACTIVE}") from None
        raise
    finally:
        os.close(dfd)
    if msg == LEASE_GRANTED and len(fds) == 1:
        return Lease(sock, fds[0])
    for fd in fds:
        os.close(fd)
    sock.close()
    reason = {LEASE_BUSY: BUSY, LEASE_CLOSED: CLOSED}.get(msg, NOT_INTERACTIVE)
    raise StdinUnavailable(f"{what}: {reason}")


async def take_async(sup_dir: str | Path, what: str = "the job") -> Lease:
    """:func:`take` without blocking the event loop."""
    return await asyncio.to_thread(take, sup_dir, what)


class Lease:
    """The stdin of one supervised process, held by this writer until :meth:`close`.

    ``write`` blocks while the process does not read (``write_async`` waits without blocking
    the loop); ``resize`` sets a terminal's window size (its foreground processes get
    SIGWINCH). ``close(eof=True)`` closes the process's stdin (a pipe's reader sees EOF; a
    terminal's is left open: end-of-file there is the ^D character), ``close()`` releases it
    open for the next writer.
    """

    def __init__(self, sock: socket.socket, fd: int) -> None:
        self._sock = sock
        self.fd = fd
        self.tty = os.isatty(fd)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def write(self, data: bytes | memoryview) -> None:
        """All of ``data``, waiting while the pipe or terminal is full. BrokenPipeError (or
        OSError EIO) once the process's side is gone."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd(), view) :]
            except BlockingIOError:  # another writer's description left non-blocking
                select.select([], [self.fd], [])

    async def write_async(self, data: bytes | memoryview) -> None:
        """:meth:`write` for asyncio: waits for room on the loop, never in a thread."""
        fd = self._fd()
        os.set_blocking(fd, False)
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_writer(fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_writer(fd)

    def resize(self, rows: int, cols: int) -> None:
        """A terminal's window size (each 1 to 4096); nothing for a pipe."""
        if not (1 <= rows <= WINSIZE_MAX and 1 <= cols <= WINSIZE_MAX):
            raise ValueError(f"a window size is 1 to {WINSIZE_MAX} each, not {rows}x{cols}")
        if self.tty:
            fcntl.ioctl(self._fd(), termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def close(self, eof: bool = False) -> None:
        """Give the stdin back: with ``eof``, closed for good (a pipe); else left open."""
        if self.fd < 0:
            return
        os.close(self.fd)
        self.fd = -1
        try:
            self._sock.send(LEASE_EOF if eof else LEASE_DETACH)
        except OSError:
            pass  # the supervisor is gone (the process ended)
        self._sock.close()

    def drop(self) -> None:
        """Give the stdin back without a word, as a writer that vanished would: a pipe is
        closed (its reader sees EOF), a terminal is left as it is."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self._sock.close()

    def _fd(self) -> int:
        if self.fd < 0:
            raise ValueError("the stdin lease is closed")
        return self.fd


def window_size(fd: int) -> tuple[int, int]:
    """A terminal's (rows, cols)."""
    buf = array.array("H", [0, 0, 0, 0])
    fcntl.ioctl(fd, termios.TIOCGWINSZ, buf)
    return buf[0], buf[1]
