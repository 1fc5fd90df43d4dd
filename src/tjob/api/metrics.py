"""Prometheus metrics of the API server (``tjobs --metrics ADDR``), on a registry of its own.

Events (calls, refusals, starts, ends, bytes sent) are counted where they happen on the event
loop: a ``prometheus_client`` counter increment is about a microsecond (an uncontended
``threading.Lock``). What is a state rather than an event (jobs running and queued, output
stored, per client) is read when Prometheus scrapes: the HTTP thread asks the event loop for
the list of jobs (so the job table is only ever touched on the loop), then reads each job's
state and output size itself (files: never on the loop). A finished job's output no longer
grows: its size is read once.

Label values come from fixed sets (method names, gRPC codes, job states, limit flags) except
``client``, which is bounded: the :data:`TOP_CLIENTS` clients with the most running jobs (or
output stored) by name, the rest summed under ``client="other"`` — a client that connects with
many common names adds at most that many series.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import weakref
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..jobdir import LOG_FILE

TOP_CLIENTS = 20  # clients named in tjob_client_running_jobs; the rest are client="other"
OTHER = "other"
SNAPSHOT_TIMEOUT = 5.0  # seconds a scrape waits for the event loop
# The limits a refusal can name (their tjobs flags without the dashes); anything else is
# "other", so a client cannot make up label values (its name is part of some messages).
LIMITS = frozenset(
    {
        "max-conns",
        "client-conns",
        "client-calls",
        "client-follows",
        "max-follows",
        "client-stats",
        "client-rate",
        "max-jobs",
        "max-running",
        "max-queued",
        "client-jobs",
        "client-disk",
    }
)
_FLAG = re.compile(r"tjobs --([a-z-]+)")
START_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Snapshot = list[Any]  # the engine's jobs (tjob.job.Job), listed on the event loop


def limit_name(message: str) -> str:
    """The limit a refusal message names (its flag, the last one the server wrote), or other."""
    for flag in reversed(_FLAG.findall(message)):
        if flag in LIMITS:
            return str(flag)
    return OTHER


def top_clients(by_client: dict[str, int], top: int = TOP_CLIENTS) -> dict[str, int]:
    """The ``top`` clients with most running jobs by name, the rest summed as ``other``."""
    ranked = sorted(by_client.items(), key=lambda kv: (-kv[1], kv[0]))
    out = dict(ranked[:top])
    rest = sum(n for _, n in ranked[top:])
    if rest or len(ranked) > top:
        out[OTHER] = out.get(OTHER, 0) + rest
    return out


class Metrics:
    """The metric objects; ``serve`` exposes them over plain HTTP."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.started = Counter("tjob_jobs_started", "Jobs started through the API", registry=r)
        self.ended = Counter(
            "tjob_jobs_ended", "Jobs seen ending, by final state", ["state"], registry=r
        )
        self.start_seconds = Histogram(
            "tjob_job_start_seconds",
            "Time from a valid Run request to its job running",
            buckets=START_BUCKETS,
            registry=r,
        )
        self.rpcs = Counter(
            "tjob_rpcs", "RPCs answered, by method and gRPC code", ["method", "code"], registry=r
        )
        self.followers = Gauge("tjob_log_followers", "Logs calls being served now", registry=r)
        self.streamed = Counter(
            "tjob_output_streamed_bytes", "Job output bytes sent to Logs calls", registry=r
        )
        self.refusals = Counter(
            "tjob_limit_refusals", "Calls refused by a limit, by its tjobs flag", ["limit"],
            registry=r,
        )  # fmt: skip
        self._jobs = _JobsCollector()
        r.register(self._jobs)
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def refused(self, message: str) -> None:
        """Count a RESOURCE_EXHAUSTED refusal under the limit its message names."""
        self.refusals.labels(limit_name(message)).inc()

    def watch(self, loop: asyncio.AbstractEventLoop, snapshot: Callable[[], Snapshot]) -> None:
        """List the jobs at each scrape with ``snapshot`` (called on ``loop``)."""
        self._jobs.loop, self._jobs.snapshot = loop, snapshot

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0: any) in a thread; the address bound."""
        http, self._thread = start_http_server(port, host, registry=self.registry)
        self._http = http
        bound = http.server_address
        return str(bound[0]), int(bound[1])

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class _JobsCollector(Collector):
    """Jobs running and queued now, and the output they store, in all and per client
    (bounded); the jobs listed on the loop at each scrape, their files read here."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.snapshot: Callable[[], Snapshot] | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # collected per scrape; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        jobs = self._read()
        running: Tally[str] = Tally()
        stored: Tally[str] = Tally()
        queued = 0
        for job in jobs:
            if job.queued:
                queued += 1
                continue
            if job.running:  # starting ones too: they hold a slot
                running[job.owner] += 1
            stored[job.owner] += output_bytes(job)
        yield _gauge("tjob_jobs_running", "Jobs running (or starting) now", running.total())
        yield _gauge("tjob_jobs_queued", "Jobs waiting in the queue to start", queued)
        yield _per_client(
            "tjob_client_running_jobs",
            f"Running jobs per client: the top {TOP_CLIENTS} by name, the rest as other",
            running,
        )
        yield _gauge(
            "tjob_output_stored_bytes",
            "Length of the output logs of every job not removed",
            stored.total(),
        )
        yield _per_client(
            "tjob_client_output_stored_bytes",
            f"Output stored per client: the top {TOP_CLIENTS} by bytes, the rest as other",
            stored,
        )

    def _read(self) -> Snapshot:
        loop, snapshot = self.loop, self.snapshot
        if loop is None or snapshot is None or loop.is_closed():
            return []

        async def take() -> Snapshot:
            return snapshot()

        try:
            return asyncio.run_coroutine_threadsafe(take(), loop).result(SNAPSHOT_TIMEOUT)
        except Exception:
            return []


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _per_client(name: str, doc: str, by_client: Tally[str]) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["client"])
    for client, n in top_clients(dict(by_client)).items():
        g.add_metric([client], n)
    return g


# A finished job's output log no longer changes: its length is read once (weakly per Job).
_finished: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_finished_lock = threading.Lock()


def output_bytes(job: Any) -> int:
    """The length of a job's output log (its output and framing): 0 while it has none."""
    with _finished_lock:
        known = _finished.get(job)
    if known is not None:
        return known
    running = job.running  # before the stat: an end after it is not remembered too early
    try:
        size = os.stat(os.path.join(job.dir, LOG_FILE)).st_size
    except OSError:
        size = 0
    if not running:
        with _finished_lock:
            _finished[job] = size
    return size
