"""Sizes and durations as people type them (``512M``, ``20MiB``, ``90s``, ``7d``): pure parsing.

One spelling for every flag of both CLIs (``tjob run --mem``, ``tjobs --output-cap``): a bare
number is in the flag's own unit (``--mem 20`` is 20 MiB, ``--wbps 20971520`` bytes/s, a grace
or a retention in seconds), a suffix names the unit. Sizes are binary (``1K`` = 1024 bytes),
whatever the spelling (``1k``, ``1KB``, ``1KiB``). Errors are :class:`ValueError` with a message
that quotes the text; the CLIs put the flag's name in front.
"""

from __future__ import annotations

import math
import re

MIB = 1 << 20

SIZE_UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
DURATION_UNITS = {"": 1.0, "S": 1.0, "M": 60.0, "H": 3600.0, "D": 86400.0, "W": 7 * 86400.0}

# A number (whole or with a fraction) and an optional unit: "20", "1.5G", "20 MiB", "512kb".
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([KMGT])I?)?(B?)", re.IGNORECASE)
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([SMHDW]?)", re.IGNORECASE)


def parse_size(text: str, unit: int = 1, *, minimum: int = 1, maximum: int = 2**64 - 1) -> int:
    """``text`` as a whole number of ``unit`` bytes, from ``minimum`` to ``maximum`` of them.

    A bare whole number is already in ``unit`` (``parse_size("20", MIB) == 20``); with a suffix
    it is converted and rounded down (``parse_size("1536K", MIB) == 1``). A fraction needs a
    suffix: ``1.5G`` is clear, ``1.5`` MiB of memory is not a whole number of anything.
    """
    m = _SIZE_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a size (like 20, 512M or 1G)")
    number, suffix = m.group(1), (m.group(2) or m.group(3)).upper()
    if not suffix:  # a bare number: already in the unit
        if not number.isdigit():
            raise ValueError(f"{text!r} is not a whole number (or give a unit: 1536K)")
        value = int(number)
    else:
        value = _scaled(number, SIZE_UNITS[suffix]) // unit
    if value < max(minimum, 1):
        raise ValueError(f"{text!r} is too small (at least {size_text(max(minimum, 1) * unit)})")
    if value > maximum:
        raise ValueError(f"{text!r} is too large (at most {size_text(maximum * unit)})")
    return value


def _scaled(number: str, scale: int) -> int:
    """``number`` (digits, maybe a fraction) times ``scale``, exactly (no float rounding)."""
    whole, _, frac = number.partition(".")
    tenths: int = 10 ** len(frac)
    return int(whole) * scale + (int(frac or "0") * scale) // tenths


def size_text(n: int) -> str:
    """``1M``, ``4K``, ``10B``: the largest binary unit that divides ``n``."""
    for suffix in ("T", "G", "M", "K"):
        scale = SIZE_UNITS[suffix]
        if n >= scale and n % scale == 0:
            return f"{n // scale}{suffix}"
    return f"{n}B"


def parse_duration(text: str, *, allow_zero: bool = False) -> float:
    """``text`` as seconds: ``90``, ``1.5``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w``.

    Zero only when ``allow_zero`` (a stop's grace: kill at once); never negative or infinite.
    """
    m = _DURATION_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a duration (like 10, 90s, 5m, 2h or 7d)")
    value = float(m.group(1)) * DURATION_UNITS[m.group(2).upper()]
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is too large")
    if value == 0 and not allow_zero:
        raise ValueError(f"{text!r} must be more than zero")
    return value
