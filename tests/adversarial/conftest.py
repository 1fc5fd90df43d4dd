"""Fixtures of the adversarial suite.

Each module gets one real tjobs server (the in-process Harness: real engine, real TLS, default
job user nobody); its cases run inside ``case``: before each, a snapshot of what the server
holds and a bystander job of another client; after each, the bystander must be intact, the
server healthy and holding exactly what it held before.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from advkit import (
    MAX_JOBS,
    OUTPUT_CAP,
    Bystander,
    Case,
    Clients,
    Snapshot,
    Stalled,
    Tjobs,
    checkup,
    finish,
    output,
    settle,
)
from apiharness import ADMIN, ALICE, BOB, HANG, Harness
from cgparent import remove_parent

from tjob.api import pki
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.spec import DEFAULT_LIMITS


@dataclass
class Adv:
    h: Harness
    clients: Clients
    root: Path  # mode 0755, so only the modes tjob gives its own files protect them


def _remove_parent(parent: str) -> None:
    remove_parent(parent)


@pytest.fixture(scope="session")
def stalled() -> Iterator[Stalled]:
    """A handshake stalled first thing, so the server's 60 s timeout for it runs out while the
    other cases run (test_adv4_late checks it). It lives in the session but holds no thread
    here, so later test files that count this process's threads see none of it."""
    root = Path(tempfile.mkdtemp(prefix="tjob-adv-stalled-"))
    pki.init_dir(root / "certs")
    server = Tjobs(root / "certs", root / "state", pump=False)
    try:
        server.expect("listen on")
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=HANG)
        sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # the first bytes of a ClientHello, no more
        try:
            yield Stalled(server, sock)
        finally:
            sock.close()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def adv(stalled: Stalled) -> Iterator[Adv]:
    root = Path(tempfile.mkdtemp(prefix="tjob-adv-"))
    root.chmod(0o755)
    parent = f"tjob-adv-{uuid.uuid4().hex[:8]}"
    try:
        with Harness(root, max_jobs=MAX_JOBS, output_cap=OUTPUT_CAP, cgroup_parent=parent) as h:
            assert h.policy.caps == DEFAULT_LIMITS  # the clients' jobs get the stock caps
            clients = Clients(h)
            try:
                # Warm up what is started once and kept (the watcher thread, the first spare).
                stub = clients.stub(ALICE)
                st = stub.Run(pb.RunRequest(argv=["echo", "warm"]), timeout=HANG)
                assert output(stub, st.id) == b"warm\n"
                for stem in (BOB, ADMIN):  # every identity's connection, opened once
                    clients.stub(stem).List(pb.ListRequest(), timeout=HANG)
                yield Adv(h, clients, root)
            finally:
                clients.close()
    finally:
        _remove_parent(parent)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A world-readable directory for scripts and files a job (running as nobody) must reach."""
    d = Path(tempfile.mkdtemp(prefix="tjob-adv-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def case(adv: Adv) -> Iterator[Case]:
    """Run a case between a snapshot and a checkup, with a bystander of bob's running through
    it."""
    h = adv.h
    assert h.engine is not None
    for job in h.engine.jobs():  # a clean slate, even after a failed case
        if not job.status().state.finished:
            finish(adv.clients.stub(ADMIN), job.id)
    settle(h)
    before = Snapshot.take(h)
    bystander = Bystander(adv.clients)
    yield Case(h, adv.clients, adv.root, bystander)
    bystander.check()
    bystander.finish()
    checkup(h, adv.clients, before)
