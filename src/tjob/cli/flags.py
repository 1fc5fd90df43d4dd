"""argparse ``type=`` functions for the flags both CLIs share: sizes, durations and counts.

The parsing itself is :mod:`tjob.units`; here its :class:`ValueError` becomes argparse's
``ArgumentTypeError``, so the one-line error reads ``argument --mem: '1X' is not a size ...``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tjob.units import parse_duration, parse_size


def size(unit: int = 1, *, minimum: int = 1, maximum: int = 2**64 - 1) -> Callable[[str], int]:
    """A size flag whose bare numbers are in ``unit`` bytes (``--mem 20``, ``--mem 1G``)."""

    def parse(text: str) -> int:
        try:
            return parse_size(text, unit, minimum=minimum, maximum=maximum)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def duration(*, allow_zero: bool = False) -> Callable[[str], float]:
    """A duration flag in seconds (``-t 0``, ``--retention 7d``)."""

    def parse(text: str) -> float:
        try:
            return parse_duration(text, allow_zero=allow_zero)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def count(maximum: int) -> Callable[[str], int]:
    """A whole number from 1 to ``maximum`` (``--cpu 20``, ``--pids 64``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 0 < value <= maximum:
            raise argparse.ArgumentTypeError(f"{value} is not between 1 and {maximum}")
        return value

    return parse
