"""The client's terminal during a session (issue 16): raw while attached and always restored,
the window size, and the detach keys (Docker's ``ctrl-p,ctrl-q`` and its spelling)."""

from __future__ import annotations

import contextlib
import os
import signal
import termios
import tty
from collections.abc import Callable, Iterator
from types import FrameType

from .errors import EXIT_USAGE, CliError

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
NOT_A_TTY = "the input device is not a TTY (-t needs a terminal; drop -t, or use -i alone)"
# Signals that end the client: the terminal is restored on the way out (Python's default for
# these would end the process with the terminal still raw).
ENDING = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class Ended(BaseException):
    """A signal ended the session (the terminal is restored as it unwinds)."""

    def __init__(self, sig: int) -> None:
        super().__init__(sig)
        self.code = 128 + sig


def require_tty(fd: int = 0) -> None:
    if not os.isatty(fd):
        raise CliError(NOT_A_TTY, EXIT_USAGE)


def window_size(fd: int = 0) -> tuple[int, int]:
    """(rows, columns) of the terminal on ``fd``; (0, 0) if it is none."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 0, 0
    return size.lines, size.columns


@contextlib.contextmanager
def raw(fd: int = 0) -> Iterator[None]:
    """``fd``'s terminal raw (no echo, no line editing, ^C a character) until the block ends,
    however it ends: an error, Ctrl+C, or SIGTERM/SIGHUP/SIGQUIT (raised as :class:`Ended`)."""
    saved = termios.tcgetattr(fd)

    def ending(sig: int, _frame: FrameType | None) -> None:
        raise Ended(sig)

    handlers = {sig: signal.signal(sig, ending) for sig in ENDING}
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for sig, old in handlers.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def on_resize(notify: Callable[[], None]) -> Iterator[None]:
    """Call ``notify`` (from the main thread, as signal handlers run) at each SIGWINCH."""
    old = signal.signal(signal.SIGWINCH, lambda _s, _f: notify())
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, old)


_NAMED = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(text: str) -> bytes:
    """Docker's spelling: comma-separated keys, each a single character or ``ctrl-X`` (X a
    letter or one of ``@[\\]^_``). ``""`` turns detaching off."""
    keys = bytearray()
    for key in filter(None, (k.strip() for k in text.split(","))):
        if key.lower().startswith("ctrl-") and len(key) == 6:
            c = key[5].lower()
            if c.isalpha() and c.isascii():
                keys.append(ord(c) - ord("a") + 1)
                continue
            if c in _NAMED:
                keys.append(_NAMED[c])
                continue
        elif len(key) == 1 and key.isascii() and key.isprintable():
            keys.append(ord(key))
            continue
        raise CliError(
            f"--detach-keys: {key!r} is not a key (ctrl-a..ctrl-z, ctrl-@, a character)", EXIT_USAGE
        )
    return bytes(keys)


class DetachKeys:
    """Finds the detach sequence in what the user types: bytes that might begin it are held
    back until it is complete (detach) or broken (then passed on), as Docker does."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """What to send on, and whether the sequence is complete (then the rest is dropped)."""
        if not self.keys:
            return data, False
        out = bytearray()
        for b in data:
            if b == self.keys[self._held]:
                self._held += 1
                if self._held == len(self.keys):
                    return bytes(out), True
                continue
            out += self.keys[: self._held]
            self._held = 0
            if b == self.keys[0]:
                self._held = 1
            else:
                out.append(b)
        return bytes(out), False
