"""``tjobs``' log lines on stderr: plain text for a terminal, or one JSON object per line.

JSON lines carry ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message`` and any fields a
call passed with ``extra={...}``, so journald (which stores stderr lines as they are) or any
collector can parse them without a pattern.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

FORMATS = ("plain", "json")
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, object] = {
            "time": _rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                obj[key] = value
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str, ensure_ascii=False)


def _rfc3339(created: float) -> str:
    ms = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{ms:03d}Z"


def formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        return JsonFormatter()
    return logging.Formatter("%(asctime)s %(message)s", datefmt="%Y/%m/%d %H:%M:%S")


def install(kind: str, stream: TextIO | None = None) -> None:
    """Send the root logger's INFO and up to ``stream`` (stderr) in format ``kind``; calling it
    again (on reload) swaps the format of the same handler."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_tjobs", False)), None)
    if handler is None:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler._tjobs = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(formatter(kind))
    root.setLevel(logging.INFO)
    # grpclib logs every client cancellation at INFO; those are routine here.
    logging.getLogger("grpclib").setLevel(logging.WARNING)
