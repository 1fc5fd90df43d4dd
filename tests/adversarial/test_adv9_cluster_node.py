"""Hostile clients against a cluster node's tjobs (issue 18). A node serves its gateway only:
a client with a certificate of the same CA is refused, also when it names an owner in the
header the gateway uses; the gateway acts on a job only as the owner it names, so one owner's
job stays invisible to calls on behalf of another. Runs without Ray: the node's servicer on a
real engine and real TLS."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from apiharness import ALICE, HANG, ROOT, Harness, rpc_error
from cgparent import remove_parent

from tjob.api import pki
from tjob.api.server import ApiServer
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.cluster.services import GATEWAY, NodeService

pytestmark = ROOT
OWNER = "tjob-owner"


class NodeHarness(Harness):
    async def _start(self, ctx: Any, sock: Any) -> ApiServer:
        assert self.engine is not None
        api = ApiServer(self.engine, self.policy, ctx, service=NodeService)
        await api.start(sock=sock)
        return api


@pytest.fixture(scope="module")
def node() -> Iterator[NodeHarness]:
    tmp = Path(tempfile.mkdtemp(prefix="tjob-adv9-"))
    parent = f"tjob-adv9-{uuid.uuid4().hex[:8]}"
    try:
        with NodeHarness(tmp, cgroup_parent=parent, admins=()) as h:
            pki.add_client(h.certs, GATEWAY)
            yield h
    finally:
        remove_parent(parent)
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_client_of_the_same_ca_is_refused(node: NodeHarness) -> None:
    stub = node.stub(ALICE)
    for meta in ((), ((OWNER, "alice"),), ((OWNER, GATEWAY),)):
        err = rpc_error(stub.Run, pb.RunRequest(argv=["true"]), metadata=meta)
        assert err.code() is grpc.StatusCode.UNAUTHENTICATED, err.details()
        assert "gateway only" in (err.details() or "")
        err = rpc_error(stub.List, pb.ListRequest(), metadata=meta)
        assert err.code() is grpc.StatusCode.UNAUTHENTICATED
    assert node.engine is not None and not node.engine.jobs()


def test_the_gateway_acts_as_the_owner_it_names(node: NodeHarness) -> None:
    gw = node.stub(GATEWAY)
    st = gw.Run(pb.RunRequest(argv=["true"]), metadata=((OWNER, "alice"),), timeout=HANG)
    assert st.owner == "alice"
    gw.Wait(pb.JobRef(id=st.id), metadata=((OWNER, "alice"),), timeout=HANG)
    err = rpc_error(gw.Status, pb.JobRef(id=st.id), metadata=((OWNER, "bob"),))
    assert err.code() is grpc.StatusCode.NOT_FOUND
    listed = gw.List(pb.ListRequest(), metadata=((OWNER, "bob"),), timeout=HANG)
    assert st.id not in [j.id for j in listed.jobs]
    everyone = gw.List(pb.ListRequest(), timeout=HANG)  # no owner: the gateway's own view
    assert st.id in [j.id for j in everyone.jobs]


@pytest.mark.parametrize("owner", ["", " alice", "alice "])
def test_an_unusable_owner_is_refused(node: NodeHarness, owner: str) -> None:
    gw = node.stub(GATEWAY)
    err = rpc_error(gw.Run, pb.RunRequest(argv=["true"]), metadata=((OWNER, owner),))
    assert err.code() is grpc.StatusCode.UNAUTHENTICATED, (owner, err.details())
