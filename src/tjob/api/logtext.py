"""The server's log under hostile clients: text from clients made safe (no field can start a
line or move a terminal's cursor), and a flood of one kind of line held to one per interval.

Every character that is not printable (controls, escapes, NUL, line and paragraph separators)
is written as its Python escape (``\\n``, ``\\x1b``, ``\\u2028``); a backslash is doubled so an
escape in the log always means a character that was escaped.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Iterable

MAX_ARGV_SHOWN = 200  # characters of a command line in one log line


def shown(text: str) -> str:
    """``text`` with every unprintable character escaped (and backslashes doubled)."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in text)


def shown_argv(argv: Iterable[str]) -> str:
    """A command line for the log: shell-quoted, escaped, cut to MAX_ARGV_SHOWN characters."""
    text = shown(shlex.join(argv))
    return text if len(text) <= MAX_ARGV_SHOWN else text[:MAX_ARGV_SHOWN] + "..."


def _escape(c: str) -> str:
    if c == "\\":
        return "\\\\"
    return repr(c)[1:-1] if c not in "'\"" else c


class RepeatFilter(logging.Filter):
    """Lets a kind of record through once per ``interval``; the next one after it says how many
    were held back. Warnings and errors are one kind per message template and exception (a
    full descriptor table fails every accept and every open the same way); info lines are one
    kind per template and arguments (the same refusal of the same client)."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self.interval = interval
        self._seen: dict[tuple[object, ...], list[float]] = {}  # kind -> [last shown, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        kind = self._kind(record)
        seen = self._seen.get(kind)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} (and {int(seen[1])} more like it in {self.interval:g}s)"
        if len(self._seen) > 10_000:
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval}
        self._seen[kind] = [now, 0]
        return True

    @staticmethod
    def _kind(record: logging.LogRecord) -> tuple[object, ...]:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno >= logging.WARNING:
            return (record.name, record.msg, type(exc), getattr(exc, "errno", None))
        kind = (record.name, record.msg, record.args)
        try:
            hash(kind)
        except TypeError:
            return (record.name, record.msg, repr(record.args))
        return kind
