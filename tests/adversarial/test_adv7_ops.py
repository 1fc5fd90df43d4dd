"""Hostile clients against the operations parts (issue 17): metrics, audit log, revocation.

A client cannot grow the metrics without bound by connecting under many names, cannot grow the
audit log past its rotation, cannot forge or break an audit line with control characters, never
gets an environment value into it, and cannot hold the metrics endpoint (or the API) with a
half-sent HTTP request. A revoked client that reconnects in a loop stays refused while others
are served.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from apiharness import ALICE, BOB, HANG, ROOT, rpc_error
from cgparent import remove_parent
from opsharness import OpsHarness, client_cert

from tjob.api import certstore
from tjob.api.metrics import OTHER, TOP_CLIENTS
from tjob.api.tjob.v1 import tjob_pb2 as pb

pytestmark = ROOT

AUDIT_MAX, AUDIT_KEEP = 16 << 10, 2


@pytest.fixture(scope="module")
def h() -> Iterator[OpsHarness]:
    root = Path(tempfile.mkdtemp(prefix="tjob-adv7-"))
    root.chmod(0o755)
    parent = f"tjob-adv7-{uuid.uuid4().hex[:8]}"
    try:
        with OpsHarness(
            root, cgroup_parent=parent, audit_max_size=AUDIT_MAX, audit_keep=AUDIT_KEEP
        ) as harness:
            yield harness
    finally:
        remove_parent(parent)
        shutil.rmtree(root, ignore_errors=True)


def test_many_names_add_a_bounded_number_of_series(h: OpsHarness) -> None:
    names = [f"sybil-{i:02}" for i in range(TOP_CLIENTS + 6)]
    ids = []
    for name in names:
        client_cert(h.certs, name, name)
        ids.append((name, h.run(["sleep", "60"], stem=name).id))
    try:
        series = {
            dict(labels)["client"]: value
            for (metric, labels), value in h.scrape().items()
            if metric == "tjob_client_running_jobs"
        }
        assert len(series) == TOP_CLIENTS + 1 and OTHER in series
        assert sum(series.values()) == h.sample("tjob_jobs_running") == len(names)
        # An unknown method is answered by grpclib (UNIMPLEMENTED) and adds no series.
        before = {k for k in h.scrape() if k[0] == "tjob_rpcs_total"}
        channel = h.channel(ALICE)
        call = channel.unary_unary("/tjob.v1.JobService/Nope" + "x" * 200)
        with pytest.raises(grpc.RpcError) as info:
            call(b"", timeout=HANG)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert {k for k in h.scrape() if k[0] == "tjob_rpcs_total"} == before
        # On a connection refused before any handler (no clientAuth), the path is the client's
        # to choose: it is counted as method "other", however many there are.
        client_cert(h.certs, "noeku", "noeku", eku=False)
        for i in range(5):
            call = h.channel("noeku").unary_unary(f"/tjob.v1.JobService/Made{i}")
            with pytest.raises(grpc.RpcError) as info:
                call(b"", timeout=HANG)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        new = {k for k in h.scrape() if k[0] == "tjob_rpcs_total"} - before
        assert new == {("tjob_rpcs_total", (("code", "UNAUTHENTICATED"), ("method", "other")))}
    finally:
        for name, job_id in ids:
            h.stub(name).Stop(pb.StopRequest(id=job_id, grace_seconds=0), timeout=HANG)
            h.stub(name).Remove(pb.JobRef(id=job_id), timeout=HANG)


def test_audit_log_growth_is_bounded_by_rotation(h: OpsHarness) -> None:
    stub = h.stub(BOB)
    for i in range(600):  # refused stops of jobs that are not bob's: each is a line
        rpc_error(stub.Stop, pb.StopRequest(id=f"{i:032x}"))
    files = sorted(h.audit_path.parent.glob("audit.log*"))
    assert [f.name for f in files] == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all(f.stat().st_size <= AUDIT_MAX for f in files)
    last = json.loads(h.audit_path.read_text().splitlines()[-1])
    assert last["job"] == f"{599:032x}" and last["reason"] == "unauthorized"


def test_control_characters_and_env_values_never_break_or_enter_a_line(h: OpsHarness) -> None:
    forged = '\n{"time":"2026-01-01T00:00:00Z","identity":"admin","method":"remove"}\x1b[2J\r'
    secret = "hunter2-value"
    env = {f"K{i}": secret for i in range(300)}
    st = h.run(["echo", forged], env=env)
    nul = rpc_error(h.stub(ALICE).Run, pb.RunRequest(argv=["echo", "\x00"], env=env))
    assert nul.code() == grpc.StatusCode.INVALID_ARGUMENT  # audited, refused, argv escaped
    rpc_error(h.stub(BOB).Remove, pb.JobRef(id=forged))  # a bad reference, as given
    client_cert(h.certs, "esc", "eve\x1b[2J\nadmin")
    rpc_error(h.stub("esc").Stop, pb.StopRequest(id=st.id))
    raw = b"".join(p.read_bytes() for p in h.audit_path.parent.glob("audit.log*"))
    assert b"hunter2" not in raw and b"\x1b" not in raw and b"\r" not in raw
    assert b"\x00" not in raw
    lines = [json.loads(x) for x in h.audit_path.read_text().splitlines()]
    run = next(x for x in lines if x.get("job") == st.id and x["method"] == "run")
    assert run["argv"] == ["echo", forged]  # exact, escaped by JSON
    refused = lines[-3]
    assert refused["argv"] == ["echo", "\x00"] and refused["result"] == "refused"
    assert len(run["env_keys"]) == 256 and all(k.startswith("K") for k in run["env_keys"])
    assert not any(x.get("identity") == "admin" for x in lines)
    bad = lines[-2]
    assert bad["method"] == "remove" and bad["code"] == "INVALID_ARGUMENT"
    assert bad["job"] == forged
    esc = lines[-1]
    assert esc["identity"] is None and esc["code"] == "UNAUTHENTICATED"


def test_half_sent_metrics_requests_hold_nothing(h: OpsHarness) -> None:
    held = []
    try:
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", h.metrics_port), timeout=HANG)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
            held.append(s)
        assert h.sample("tjob_jobs_queued") == 0.0  # another scrape is served
        h.stub(ALICE).List(pb.ListRequest(), timeout=HANG)
    finally:
        for s in held:
            s.close()


def test_a_revoked_client_reconnecting_stays_refused(h: OpsHarness) -> None:
    client_cert(h.certs, "leaked", "leaked")
    h.stub("leaked").List(pb.ListRequest(), timeout=HANG)
    certstore.revoke(h.certs, "leaked")
    assert h.api is not None
    api = h.api

    async def reload() -> object:
        return api.reload()

    h.call(reload())
    for _ in range(20):
        err = rpc_error(h.stub("leaked").List, pb.ListRequest())
        assert err.code() == grpc.StatusCode.UNAVAILABLE
    h.stub(ALICE).List(pb.ListRequest(), timeout=HANG)
    h.stub(BOB).List(pb.ListRequest(), timeout=HANG)
