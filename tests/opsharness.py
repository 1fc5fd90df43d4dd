"""The API harness with the operations parts on: metrics (served on a free port), the audit
log (a file in the test's directory), and certificate files known to the server for reload."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

from apiharness import HANG, Harness
from prometheus_client.parser import text_string_to_metric_families
from support.certs import client_cert  # noqa: F401 (re-exported: the suites import it from here)

from tjob.api import tls
from tjob.api.audit import AuditLog
from tjob.api.certstore import crl_path
from tjob.api.metrics import Metrics
from tjob.api.server import ApiServer
from tjob.api.tls import ServerFiles


class OpsHarness(Harness):
    def __init__(
        self, tmp: Path, *, audit_max_size: int = 64 << 20, audit_keep: int = 5, **kw: Any
    ) -> None:
        super().__init__(tmp, **kw)
        self.metrics = Metrics()
        self.audit_path = tmp / "audit.log"
        self.audit = AuditLog(self.audit_path, max_size=audit_max_size, keep=audit_keep)
        self.metrics_port = 0

    @property
    def server_files(self) -> ServerFiles:
        ca, cert, key = self.files("svc")
        return ServerFiles(ca, cert, key, crl_path(ca))

    async def _start(self, ctx: Any, sock: socket.socket) -> ApiServer:
        assert self.engine is not None
        f = self.server_files
        ctx = tls.server_context(f.ca, f.cert, f.key, f.crl)
        api = ApiServer(
            self.engine, self.policy, ctx, files=f, metrics=self.metrics, audit=self.audit
        )
        await api.start(sock=sock)
        self.metrics_port = self.metrics.serve("127.0.0.1", 0)[1]
        return api

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.metrics.close()
        self.audit.close()

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of the metrics endpoint: (name, sorted labels) -> value."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=HANG) as reply:
            text = reply.read().decode()
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def sample(self, name: str, **labels: str) -> float:
        return self.scrape().get((name, tuple(sorted(labels.items()))), 0.0)

    def until_sample(self, name: str, value: float, **labels: str) -> None:
        """Scrape until ``name`` has ``value`` (HANG guards a hang: the value is asserted)."""
        deadline = time.monotonic() + HANG
        while self.sample(name, **labels) != value and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.sample(name, **labels) == value, (name, labels, self.sample(name, **labels))

    def audit_lines(self) -> list[dict[str, Any]]:
        import json

        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]
