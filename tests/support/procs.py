"""Waiting for processes to end by pidfd: opened before they are killed, so a pid the kernel
reuses afterwards is never mistaken for one still running."""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Iterable, Iterator

from support.timeouts import HANG


@contextlib.contextmanager
def pidfds(pids: Iterable[int]) -> Iterator[list[int]]:
    """A pidfd of each of ``pids``, closed at the end."""
    fds: list[int] = []
    try:
        for pid in pids:
            fds.append(os.pidfd_open(pid))
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def all_ended(fds: Iterable[int]) -> bool:
    """Whether every process of ``fds`` ends (its pidfd reads ready), each within ``HANG``."""
    return all(select.select([fd], [], [], HANG)[0] for fd in fds)
