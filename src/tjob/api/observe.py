"""What the API server tells the operator about calls and jobs: metrics and the audit log.

The server's handlers and its ``_rpc`` wrapper call in here; this module owns neither the metric
objects (metrics.py) nor the file (audit.py), only when each is told what.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grpclib.const import Status as Code

from .audit import AUDITED, AuditLog
from .metrics import Metrics

if TYPE_CHECKING:
    from ..engine import Job


@dataclass
class Outcome:
    """What one call came to."""

    peer: str
    identity: str | None = None
    code: Code = Code.OK
    reason: str = ""
    note: dict[str, Any] = field(default_factory=dict)  # the audit line's job fields


# The running call's audit fields (each handler task has its own context).
_NOTE: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("tjob_audit_note")


def note(**fields: Any) -> None:
    """Add fields (job id, argv, env keys) to the running call's audit line."""
    _NOTE.get().update(fields)


class Observer:
    """Metrics and audit of one server; either may be off (None)."""

    def __init__(self, metrics: Metrics | None, audit: AuditLog | None) -> None:
        self.metrics = metrics
        self.audit = audit
        self._watchers: set[asyncio.Task[None]] = set()

    @contextlib.contextmanager
    def call(self, method: str, peer: str) -> Iterator[Outcome]:
        """Observe one call: the caller fills in the outcome; it is recorded at the end."""
        out = Outcome(peer=peer)
        token = _NOTE.set(out.note)
        try:
            yield out
        finally:
            _NOTE.reset(token)
            self.record(method, out)

    def record(self, method: str, out: Outcome) -> None:
        """Count a call in the metrics and write its audit line (state-changing calls)."""
        if self.metrics is not None:
            self.metrics.rpcs.labels(method, out.code.name).inc()
            if out.code is Code.RESOURCE_EXHAUSTED:
                self.metrics.refused(out.reason)
        if self.audit is not None and method in AUDITED:
            refused = {"reason": out.reason} if out.code is not Code.OK else {}
            self.audit.record(
                identity=out.identity,
                peer=out.peer,
                method=method,
                **out.note,
                result="refused" if refused else "ok",
                code=out.code.name,
                **refused,
            )

    def started(self, job: Job, seconds: float) -> None:
        """A job started through the API after ``seconds``."""
        if self.metrics is not None:
            self.metrics.start_seconds.observe(seconds)
            self.metrics.started.inc()
            self.count_end(job)

    def count_end(self, job: Job) -> None:
        """Count the job's final state when it ends (a task waits for it)."""
        metrics = self.metrics
        if metrics is None or not job.running:
            return

        async def wait() -> None:
            st = await job.wait_async()
            metrics.ended.labels(st.state.value).inc()

        task = asyncio.get_running_loop().create_task(wait())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    @contextlib.contextmanager
    def following(self) -> Iterator[Callable[[int], object] | None]:
        """Count an active follower while it is served; yields what to tell of bytes sent."""
        if self.metrics is None:
            yield None
            return
        self.metrics.followers.inc()
        try:
            yield self.metrics.streamed.inc
        finally:
            self.metrics.followers.dec()

    def close(self) -> None:
        for task in list(self._watchers):
            task.cancel()
