"""Text from clients, made safe for the server's log: no field can start a line or move a
terminal's cursor.

Every character that is not printable (controls, escapes, NUL, line and paragraph separators)
is written as its Python escape (``\\n``, ``\\x1b``, ``\\u2028``); a backslash is doubled so an
escape in the log always means a character that was escaped.
"""

from __future__ import annotations

import shlex
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
