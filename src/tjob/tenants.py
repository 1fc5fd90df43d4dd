"""One uid per client: each owner (the API server's certificate CN) runs its jobs as a uid and
gid of its own, allocated once from a configured range and kept in the state database.

The model is systemd's ``DynamicUser=``: the ids have no passwd entry (a job gets ``HOME=/``
and ``USER=tjob-<uid>``), and nothing else on the host may use them, which is checked against
the account databases (NSS) when the engine starts. The gid is the uid's number: systemd does
the same, so a file's group never names another client.
"""

from __future__ import annotations

import grp
import pwd
import threading
from collections.abc import Callable

from .errors import InvalidSpec

# systemd's range for dynamic users (DynamicUser=): free of accounts on a normal host.
DEFAULT_RANGE = (61184, 65519)
SYNTHETIC_PREFIX = "tjob-"


def parse_range(text: str) -> tuple[int, int]:
    """``"61184-65519"`` -> ``(61184, 65519)``; raise :class:`InvalidSpec` otherwise."""
    lo, sep, hi = text.partition("-")
    if not sep or not lo.isdigit() or not hi.isdigit():
        raise InvalidSpec(f"a uid range is FIRST-LAST, e.g. 61184-65519, not {text!r}")
    first, last = int(lo), int(hi)
    if not 0 < first <= last < 2**31 - 1:
        raise InvalidSpec(f"uid range {text} must be ascending, above 0 and below 2^31-1")
    return first, last


def check_free(first: int, last: int) -> None:
    """Refuse a range that any account or group of the host (NSS) already uses."""
    ids = range(first, last + 1)
    taken = [f"user {p.pw_name} ({p.pw_uid})" for p in pwd.getpwall() if p.pw_uid in ids]
    taken += [
        f"group {g.gr_name} ({g.gr_gid})" for g in grp.getgrall() if first <= g.gr_gid <= last
    ]
    if taken:
        shown = ", ".join(taken[:3]) + (f" and {len(taken) - 3} more" if len(taken) > 3 else "")
        raise InvalidSpec(f"uid range {first}-{last} overlaps existing accounts: {shown}")


def synthetic_name(uid: int) -> str:
    """USER and LOGNAME of a job run as a client's uid (there is no passwd entry)."""
    return f"{SYNTHETIC_PREFIX}{uid}"


class Tenants:
    """owner -> uid, from the store's table (``allocate`` is the store's one write), cached.

    ``allocate(owner, first, last)`` returns the owner's uid, allocating the lowest free one of
    the range if it has none, or raises :class:`InvalidSpec` when the range is used up.
    """

    def __init__(
        self,
        first: int,
        last: int,
        allocate: Callable[[str, int, int], int | None],
        given: tuple[int, int] | None = None,
    ) -> None:
        check_free(first, last)
        # A client keeps its uid for good: a range that no longer holds every uid given (the
        # lowest and highest, ``given``) could let one of them collide with a new account.
        if given is not None and not (first <= given[0] and given[1] <= last):
            raise InvalidSpec(
                f"uid range {first}-{last} leaves out uids already given to clients "
                f"({given[0]}-{given[1]} are in use); widen it"
            )
        self.first, self.last = first, last
        self._allocate = allocate
        self._cache: dict[str, int] = {}
        self._lock = threading.Lock()

    def uid(self, owner: str) -> int:
        with self._lock:
            uid = self._cache.get(owner)
            if uid is None:
                uid = self._allocate(owner, self.first, self.last)
                if uid is None:
                    raise InvalidSpec(
                        f"no uid left for a new client: all of {self.first}-{self.last} are "
                        "taken (tjobs --uid-range)"
                    )
                self._cache[owner] = uid
            return uid
