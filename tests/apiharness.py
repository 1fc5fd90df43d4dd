"""A real tjobs API server for tests: real engine, real TLS, grpclib on its own loop thread.

Clients are grpcio, as in the product's CLI. Certificates come from the product's own pki.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from support.timeouts import HANG

from tjob import Engine
from tjob.api import pki, tls
from tjob.api.limits import ServerLimits
from tjob.api.policy import Policy
from tjob.api.quotas import StoreQuota
from tjob.api.server import ApiServer
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.api.tjob.v1.tjob_pb2_grpc import JobServiceStub
from tjob.cgroups import ClientLimits
from tjob.spec import DEFAULT_LIMITS, Limits
from tjob.status import JobState

# Per-client limits far above what the suites ask of them: a test opens a channel per stub and
# keeps them all until the harness closes, and the adversarial suite's older cases hold 1000
# idle connections or 1000 followers of one client on purpose. The limits themselves are
# tested against the product's defaults (tests/adversarial/test_adv5_*.py, test_api_limits.py).
TEST_LIMITS = ServerLimits(
    max_conns=4000,
    client_conns=4000,
    client_calls=20_000,
    client_follows=4000,
    max_follows=4000,
    client_rate=1e6,
    client_burst=1_000_000,
)
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_skip_unless_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: a real engine (cgroups and namespaces)"
)
ROOT = [pytest.mark.root, _skip_unless_root]  # as a module's pytestmark


def needs_root(fn: F) -> F:
    """Mark one test as needing root (skipped with a reason otherwise)."""
    return pytest.mark.root(_skip_unless_root(fn))  # type: ignore[no-any-return]


# Client certificate stems pki.init_dir writes, and their identities.
ALICE, BOB, ADMIN = "cli", "other", "admin"


class Harness:
    """Start with ``with Harness(tmp) as h:``; ``h.stub(ALICE)`` is a grpcio stub as alice."""

    def __init__(
        self,
        tmp: Path,
        *,
        caps: Limits = DEFAULT_LIMITS,
        admins: tuple[str, ...] = ("admin",),
        max_jobs: int = 64,
        job_user: str | int | None = "nobody",
        output_cap: int = 1 << 30,
        cgroup_parent: str = "tjob",
        limits: ServerLimits = TEST_LIMITS,
        uid_range: tuple[int, int] | None = None,
        clients: ClientLimits | None = None,
        store: StoreQuota | None = None,
        volumes: dict[str, Any] | None = None,
        max_running: int | None = None,
    ) -> None:
        self.tmp = tmp
        self.volumes = volumes
        self.certs = tmp / "certs"
        self.state = tmp / "state"
        self.policy = Policy(
            caps=caps,
            admins=frozenset(admins),
            job_user=job_user,
            max_jobs=max_jobs,
            limits=limits,
            store=store or StoreQuota(),
            max_running=max_running,
        )
        self.uid_range, self.clients = uid_range, clients
        self.output_cap = output_cap
        self.cgroup_parent = cgroup_parent
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="api-loop", daemon=True)
        self._channels: list[grpc.Channel] = []
        self.engine: Engine | None = None
        self.api: ApiServer | None = None
        self.port = 0

    def __enter__(self) -> Harness:
        pki.init_dir(self.certs)
        self.engine = Engine(
            self.state,
            defaults=self.policy.caps,
            output_cap=self.output_cap,
            cgroup_parent=self.cgroup_parent,
            clients=self.clients,
            uid_range=self.uid_range,
            volumes=self.volumes,
            max_running=self.policy.max_running,
            owner_max_running=self.policy.max_jobs,
        )
        self._thread.start()
        sock = socket.create_server(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ctx = tls.server_context(*self.files("svc"))
        self.api = self.call(self._start(ctx, sock))
        return self

    async def _start(self, ctx: Any, sock: socket.socket) -> ApiServer:
        assert self.engine is not None
        api = ApiServer(self.engine, self.policy, ctx)
        await api.start(sock=sock)
        return api

    def __exit__(self, *exc: object) -> None:
        for ch in self._channels:
            ch.close()
        if self.engine is not None:
            for job in self.engine.jobs():
                if job.status().state is JobState.RUNNING:
                    job.stop(0)
        if self.api is not None:
            self.call(self.api.shutdown(5.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(HANG)
        self.loop.close()
        if self.engine is not None:
            self.engine.close()

    # --- helpers --------------------------------------------------------------------------------

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def files(self, stem: str) -> tuple[Path, Path, Path]:
        """(ca, cert, key) paths for a certificate stem under the harness's certs dir."""
        return self.certs / "ca.crt", self.certs / f"{stem}.crt", self.certs / f"{stem}.key"

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and return its result."""
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(HANG)

    def channel(self, stem: str = ALICE, **options: Any) -> grpc.Channel:
        creds = tls.client_credentials(*self.files(stem))
        ch = grpc.secure_channel(self.target, creds, options=list(options.items()))
        self._channels.append(ch)
        return ch

    def stub(self, stem: str = ALICE) -> JobServiceStub:
        return JobServiceStub(self.channel(stem))

    def run(self, argv: list[str], stem: str = ALICE, **kw: Any) -> pb.JobStatus:
        st: pb.JobStatus = self.stub(stem).Run(pb.RunRequest(argv=argv, **kw), timeout=HANG)
        return st

    def in_flight(self) -> set[asyncio.Task[Any]]:
        """Handler tasks of the streaming calls the server is serving now."""
        assert self.api is not None
        return set(self.api.service.in_flight())


def rpc_error(fn: Any, *args: Any, **kw: Any) -> grpc.RpcError:
    """Call ``fn`` and return the RpcError it must raise (draining it if it is a stream)."""
    with pytest.raises(grpc.RpcError) as info:
        result = fn(*args, timeout=HANG, **kw)
        if hasattr(result, "__iter__") and not isinstance(result, pb.JobStatus):
            for _ in result:
                pass
    return info.value


def logs(stub: JobServiceStub, job_id: str, follow: bool = True, **kw: Any) -> bytes:
    """All the job's output (by default following it to its end), concatenated."""
    req = pb.LogsRequest(id=job_id, follow=follow, **kw)
    return b"".join(c.data for c in stub.Logs(req, timeout=HANG))


def open_gate(fifo: Path) -> None:
    """Let every job blocked on the ``gate`` fixture's FIFO go on."""
    with open(fifo, "wb"):
        pass


def fds_under(path: Path) -> list[str]:
    """This process's open file descriptors that point into ``path``."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(path)):
                out.append(target)
    return out
