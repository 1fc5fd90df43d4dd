"""The engine's side of the launcher (:mod:`tjob.launcher`): start it, send it a job, receive
the supervisor's answer, stop it.

The launcher is started with ``subprocess`` (fork+exec is safe in a threaded process) as a
fresh interpreter; its stderr, and that of every supervisor, is the state directory's
``launcher.log``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from .cgroups import CgroupBackend
from .errors import EngineClosed, SpawnError
from .procs import LAUNCHER_MARK
from .protocol import SYNC_ENV, ProtocolError, StartReply, decode_start_reply

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOG = "launcher.log"
START_TIMEOUT = 30.0  # guards against a hung launcher, never reached in normal operation
REPLY_SIZE = 65536


NO_ANSWER = "no answer"  # a start whose reply socket closed unanswered


class Reply(NamedTuple):
    """The supervisor's answer (empty: nobody will answer) and its pidfds; or, after
    START_TIMEOUT, the socket still owed the answer (``pending``): the job may yet start."""

    msg: bytes
    fds: list[int]
    pending: socket.socket | None = None

    def answer(self) -> StartReply:
        """The answer decoded; a failed one if it is missing or malformed."""
        if not self.msg:
            return StartReply(False, error=NO_ANSWER)
        try:
            return decode_start_reply(self.msg)
        except ProtocolError:
            return StartReply(False, error="the supervisor sent a malformed reply")


class LauncherClient:
    """One launcher process per engine; thread-safe."""

    def __init__(
        self, state_dir: Path, cg: CgroupBackend, jail: str | None = None, durable: bool = True
    ) -> None:
        self._durable = durable
        self._log = state_dir / LOG
        self._mark = f"{LAUNCHER_MARK.decode()}{state_dir}"
        conf = {
            "version": cg.version,
            "root": str(cg.root),
            "parent": cg.parent,
            "clients": cg.clients.to_dict(),
        }
        if jail is not None:
            conf["jail"] = jail  # the jail's settings (jail.py), for the zygote
        self._conf = json.dumps(conf)
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._start()

    def died(self, within: float) -> bool:
        """Whether the launcher last started has exited, or does within ``within`` seconds
        (its sockets close a moment before it can be seen to have exited)."""
        proc = self._proc
        if proc is None:
            return True
        try:
            proc.wait(within)
        except subprocess.TimeoutExpired:
            return False
        return True

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pkg_parent = str(Path(__file__).resolve().parent.parent)
        code = (
            f"import sys; sys.path.insert(0, {pkg_parent!r}); "
            "from tjob.launcher import main; main()"
        )
        with open(self._log, "ab") as log:
            self._proc = subprocess.Popen(
                # The last argument names its state directory, so that a later engine can
                # end a launcher this one left stalled (procs.end_stale_launchers).
                [sys.executable, "-I", "-c", code, str(theirs.fileno()), self._mark],
                pass_fds=[theirs.fileno()],
                # The configuration (with the jail's seccomp rules, ~10 KB) on stdin, not in
                # argv: `ps` and `systemctl status` show a short command line.
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                cwd="/",
                # Jobs get explicit environments; keep the caller's out of every job's init.
                env={"PATH": DEFAULT_PATH} | ({} if self._durable else {SYNC_ENV: "0"}),
            )
        assert self._proc.stdin is not None
        with self._proc.stdin as conf:
            conf.write(self._conf.encode())  # well under a pipe's buffer: never blocks
        theirs.close()
        self._ctl = ours

    def send(self, request: bytes, fds: Sequence[int] = ()) -> socket.socket:
        """Hand ``request`` (with ``fds``, which stay the caller's) to the launcher; the
        returned socket gets the supervisor's answer."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock:
                if self._closed or self._ctl is None:
                    raise EngineClosed("the engine is closed")
                try:
                    socket.send_fds(self._ctl, [request], [theirs.fileno(), *fds])
                except OSError:
                    # The launcher died (killed by hand?): start another, once.
                    self._stop()
                    self._start()
                    assert self._ctl is not None
                    socket.send_fds(self._ctl, [request], [theirs.fileno(), *fds])
        except OSError as e:
            ours.close()
            raise SpawnError(f"cannot reach the launcher: {e.strerror}") from None
        finally:
            theirs.close()
        return ours

    @staticmethod
    def receive(sock: socket.socket) -> Reply:
        """The answer, or the socket still owed it after START_TIMEOUT."""
        sock.settimeout(START_TIMEOUT)
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, REPLY_SIZE, 2)
        except TimeoutError:
            sock.setblocking(False)
            return Reply(b"", [], sock)
        except OSError:
            msg, fds = b"", []
        sock.close()
        return Reply(msg, fds)

    @staticmethod
    async def receive_async(sock: socket.socket) -> Reply:
        """Like :meth:`receive`, awaiting the answer instead of blocking."""
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(sock.fileno(), _resolve, ready)
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await ready
        except TimeoutError:
            return Reply(b"", [], sock)
        finally:
            loop.remove_reader(sock.fileno())
        return LauncherClient.late_reply(sock)

    @staticmethod
    def late_reply(sock: socket.socket) -> Reply:
        """The answer on a socket that is readable now (no waiting); closes it."""
        with sock:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(sock, REPLY_SIZE, 2)
            except OSError:
                msg, fds = b"", []
        return Reply(msg, fds)

    def _stop(self) -> None:
        if self._ctl is not None:
            self._ctl.close()  # the launcher sees the end and exits
            self._ctl = None
        if self._proc is not None:
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def close(self) -> None:
        """Stop the launcher; no job can be sent after this."""
        with self._lock:
            self._closed = True
            self._stop()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
