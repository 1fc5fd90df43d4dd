"""The audit log: one JSON line per state-changing request (``tjobs --audit-log``).

Each line holds ``time`` (RFC 3339, UTC), ``identity`` (the certificate CN, null when there is
none), ``peer`` (address:port), ``method`` (run, stop, kill, remove), ``job`` (the job id, or
the reference the client gave when it names no job of theirs), ``result`` (``ok`` or
``refused``), ``code`` (the gRPC code) and, when refused, ``reason``. A Run adds ``argv`` and
``env_keys`` (the names of the environment variables, never their values). Job output is never
written. JSON escapes every control character, so a hostile common name or argv cannot forge a
line.

Lines are written with one buffered ``write`` and no fsync, from the event loop (a few
microseconds). The file is rotated by size like ``logging``'s RotatingFileHandler
(``audit.log`` -> ``audit.log.1`` ... ``audit.log.N``), so its growth is bounded by
``(keep + 1) * max_size``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("tjobs")

AUDITED = frozenset({"run", "stop", "kill", "remove", "exec"})
DEFAULT_MAX_SIZE = 64 << 20
DEFAULT_KEEP = 5
MAX_FIELD = 1024  # characters of a client-given string (a job reference) kept in a line
MAX_ARGV = 4096  # characters of argv kept in a line (the whole argv may be 256 KiB)


class AuditLog:
    """Appends audit records to a file (rotated by size) or to a stream (``-``: stderr)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        keep: int = DEFAULT_KEEP,
        stream: IO[str] | None = None,
    ) -> None:
        """``path`` None writes to ``stream`` (default stderr), never rotated."""
        self.path = None if path is None else Path(path)
        self.max_size, self.keep = max_size, keep
        self._stream = stream
        self._file: IO[str] | None = None
        self._size = 0
        if self.path is not None:
            self._open()

    def _open(self) -> None:
        assert self.path is not None
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._size = os.fstat(fd).st_size

    def record(self, **fields: Any) -> None:
        """Append one line; a failing write is logged, never raised into the call."""
        line = json.dumps({"time": _now(), **fields}, ensure_ascii=True, separators=(",", ":"))
        try:
            if self.path is None:
                out = self._stream or sys.stderr
                out.write(line + "\n")
                out.flush()
                return
            if self._file is None or self._size + len(line) + 1 > self.max_size:
                self._rotate()
            assert self._file is not None
            self._file.write(line + "\n")
            self._file.flush()
            self._size += len(line) + 1
        except (OSError, ValueError) as err:
            log.error("cannot write the audit log %s: %s", self.path, err)

    def _rotate(self) -> None:
        assert self.path is not None
        if self._file is not None:
            self._file.close()
            self._file = None
            if self._size:
                for n in range(self.keep - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{n}")
                    if older.exists():
                        older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
                if self.keep > 0:
                    self.path.replace(self.path.with_name(f"{self.path.name}.1"))
                else:
                    self.path.unlink(missing_ok=True)
        self._open()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def clip(text: str, limit: int = MAX_FIELD) -> str:
    """A client-given string cut to ``limit`` characters (marked), so a line stays small."""
    return text if len(text) <= limit else text[:limit] + "..."


def argv_field(argv: Iterable[str]) -> list[str]:
    """The argv for a line, cut to about MAX_ARGV characters in all."""
    out: list[str] = []
    left = MAX_ARGV
    for arg in argv:
        if left <= 0:
            out.append("...")
            break
        out.append(clip(arg, left))
        left -= len(arg)
    return out


# The API's methods by their audit and metrics names.
METHODS = frozenset(
    {"run", "stop", "status", "list", "wait", "logs", "stats", "remove", "kill", "attach", "exec"}
)
SERVICE = "/tjob.v1.JobService/"


def method_of(path: str) -> str:
    """``/tjob.v1.JobService/Run`` -> ``run``; any other path (a client's to choose) is
    ``other``, so it can neither grow the metrics' labels nor the audit line."""
    name = path.removeprefix(SERVICE).lower() if path.startswith(SERVICE) else ""
    return name if name in METHODS else "other"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
