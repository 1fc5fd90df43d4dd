"""Times of ``tjob logs``: ``--since``/``--until`` parsed to ns since the epoch, ``--tail`` to a
line count, and the RFC 3339 stamp ``--timestamps`` puts before each line (as
``docker logs -t``: UTC, nanoseconds). Nothing here imports grpc (start-up time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import time

from tjob.units import parse_duration

# 2026-12-01T17:00:00Z, 2026-12-01 17:00:00.123456789+01:00, 2026-12-01T17:00 (local time)
_RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d(?::\d\d)?)(?:\.(\d{1,9}))?)?(Z|[+-]\d\d:?\d\d)?",
    re.IGNORECASE,
)
_UNIX = re.compile(r"\d+(?:\.\d{1,9})?")
TIME_HELP = (
    "RFC 3339 (2026-12-01T17:00:00Z; without a zone: local time), a Unix time in seconds "
    "(1796140800.5), or a duration before now (10m, 2h)"
)


def parse_time(text: str, now_ns: int | None = None) -> int:
    """``text`` as ns since the epoch; ValueError with what is accepted if it is none of
    those forms."""
    text = text.strip()
    if _UNIX.fullmatch(text):
        whole, _, frac = text.partition(".")
        return int(whole) * 10**9 + int(frac.ljust(9, "0") or 0)
    m = _RFC3339.fullmatch(text)
    if m is not None:
        return _rfc3339(*m.groups())
    try:
        ago = parse_duration(text, allow_zero=True)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: {TIME_HELP}") from None
    return (time.time_ns() if now_ns is None else now_ns) - round(ago * 1e9)


def _rfc3339(day: str, clock: str | None, frac: str | None, zone: str | None) -> int:
    try:
        stamp = dt.datetime.fromisoformat(f"{day}T{clock or '00:00'}")
    except ValueError as e:
        raise ValueError(f"{day} {clock or ''}: {e}") from None
    if zone is None:
        stamp = stamp.astimezone()  # local time, as docker reads a time without a zone
    else:
        z = "+00:00" if zone.upper() == "Z" else zone
        offset = dt.datetime.strptime(z.replace(":", ""), "%z").utcoffset()
        stamp = stamp.replace(tzinfo=dt.timezone(offset or dt.timedelta()))
    return int(stamp.timestamp()) * 10**9 + int((frac or "").ljust(9, "0"))


def stamp(time_ns: int) -> bytes:
    """``2026-12-01T17:00:00.123456789Z`` for a time in ns since the epoch."""
    secs, ns = divmod(time_ns, 10**9)
    day = dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{day}.{ns:09d}Z".encode()


def time_flag(text: str) -> int:
    try:
        return parse_time(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def tail_flag(text: str) -> int | None:
    """``--tail N``: a number of lines (0 or more), or ``all`` (None)."""
    if text.strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of lines (0 or more, or all)")
    return n
