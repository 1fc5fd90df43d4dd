"""What one client may hold of the server at once, and how fast it may ask.

Every limit names its ``tjobs`` flag in the refusal (RESOURCE_EXHAUSTED), so the client's user
knows what was hit and the operator what to raise. Counts are per identity (certificate CN),
across all of that client's connections, in the spirit of Kubernetes' per-user fairness: one
client's load never spends another's share.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import TjobError

# Descriptors the server keeps for itself beyond connections and followers: the job table's
# pidfds (two per running job), the database, the watcher, the fork server, logging.
FD_RESERVE = 1024
FDS_PER_FOLLOWER = 1  # the follower's log file (the watch is on the engine's one inotify fd)
# Request bytes one client may have on their way in at once (a request may be 4 MiB): past it
# a big request is refused unread, and HTTP/2 flow control keeps the rest at the client.
CLIENT_RECEIVING = 16 << 20
SMALL_REQUEST = 64 << 10  # requests this small are not counted


class LimitExceeded(TjobError):
    """A per-client or server-wide limit was hit (RESOURCE_EXHAUSTED, naming the flag)."""


@dataclass(frozen=True)
class ServerLimits:
    """The server's resource limits; each field is the ``tjobs`` flag of the same name."""

    max_conns: int = 1024  # --max-conns: connections at once, all clients together
    client_conns: int = 32  # --client-conns: connections at once per client
    client_calls: int = 512  # --client-calls: calls in flight per client
    client_follows: int = 256  # --client-follows: Logs calls in flight per client
    max_follows: int = 2000  # --max-follows: Logs calls in flight, all clients together
    client_stats: int = 8  # --client-stats: Stats calls in flight per client
    client_rate: float = 1000.0  # --client-rate: calls per second per client (sustained)
    client_burst: int = 2000  # calls a client may make at once before its rate applies
    conn_streams: int = 100  # handlers alive per connection (HTTP/2 MAX_CONCURRENT_STREAMS)
    stall_timeout: float = 60.0  # --stall-timeout: a Logs stream the peer does not read
    handshake_timeout: float = 10.0  # TLS handshake

    def fds_needed(self) -> int:
        """Descriptors the server may need at these limits (checked against RLIMIT_NOFILE)."""
        return self.max_conns + FDS_PER_FOLLOWER * self.max_follows + FD_RESERVE


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class ClientQuota:
    """Per-identity counts of calls in flight, and each identity's request-rate bucket."""

    limits: ServerLimits
    calls: Counter[str] = field(default_factory=Counter)
    follows: Counter[str] = field(default_factory=Counter)
    stats: Counter[str] = field(default_factory=Counter)
    incoming: Counter[str] = field(default_factory=Counter)  # request bytes being received
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def admit(self, name: str) -> None:
        """Spend one call of ``name``'s rate; LimitExceeded when its bucket is empty."""
        lim = self.limits
        now = time.monotonic()
        b = self._buckets.get(name)
        if b is None:
            b = self._buckets[name] = _Bucket(float(lim.client_burst), now)
        b.tokens = min(float(lim.client_burst), b.tokens + (now - b.at) * lim.client_rate)
        b.at = now
        if b.tokens < 1.0:
            raise LimitExceeded(
                f"{name} is calling faster than {lim.client_rate:g} calls per second "
                "(tjobs --client-rate); slow down and retry"
            )
        b.tokens -= 1.0
        if len(self._buckets) > 4 * lim.max_conns:  # full buckets say nothing: drop them
            self._buckets = {k: v for k, v in self._buckets.items() if v.tokens < lim.client_burst}

    @contextlib.contextmanager
    def call(self, name: str, *, follow: bool = False, stats: bool = False) -> Iterator[None]:
        """Count one call of ``name`` while it is served; LimitExceeded over a cap."""
        lim = self.limits
        held: list[Counter[str]] = []
        try:
            _take(self.calls, name, lim.client_calls, "calls in flight", "--client-calls", held)
            if follow:
                if sum(self.follows.values()) >= lim.max_follows:
                    raise LimitExceeded(
                        f"the server is serving {lim.max_follows} Logs calls, its limit "
                        "(tjobs --max-follows); retry later"
                    )
                _take(
                    self.follows, name, lim.client_follows, "Logs calls", "--client-follows", held
                )
            if stats:
                _take(self.stats, name, lim.client_stats, "Stats calls", "--client-stats", held)
            yield
        finally:
            for counter in held:
                counter[name] -= 1
                if not counter[name]:
                    del counter[name]

    @contextlib.contextmanager
    def receiving(self, name: str, size: int) -> Iterator[None]:
        """Count ``size`` bytes of ``name``'s request while it is received."""
        if size <= SMALL_REQUEST:
            yield
            return
        if self.incoming[name] + size > CLIENT_RECEIVING:
            raise LimitExceeded(
                f"{name} is already sending {self.incoming[name]} bytes of requests; a client "
                f"may send at most {CLIENT_RECEIVING} at once (retry once they are answered)"
            )
        self.incoming[name] += size
        try:
            yield
        finally:
            self.incoming[name] -= size
            if not self.incoming[name]:
                del self.incoming[name]


def _take(
    counter: Counter[str], name: str, cap: int, what: str, flag: str, held: list[Counter[str]]
) -> None:
    if counter[name] >= cap:
        raise LimitExceeded(
            f"{name} already has {cap} {what}, the most one client may have (tjobs {flag})"
        )
    counter[name] += 1
    held.append(counter)
