"""The audit log: one JSON line per run/stop/remove, allowed or refused, never env values."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from apiharness import ALICE, BOB, HANG, needs_root, rpc_error
from opsharness import OpsHarness, client_cert

from tjob.api.audit import AuditLog
from tjob.api.tjob.v1 import tjob_pb2 as pb

SECRET = "s3cr3t-value-never-logged"


@pytest.fixture
def h(tmp_path: Path, cgroup_parent: str) -> Iterator[OpsHarness]:
    with OpsHarness(tmp_path, cgroup_parent=cgroup_parent, max_jobs=1) as harness:
        yield harness


@needs_root
def test_lines_for_allowed_and_refused_calls(h: OpsHarness) -> None:
    st = h.run(["sleep", "60"], env={"TOKEN": SECRET})
    h.stub(ALICE).Status(pb.JobRef(id=st.id), timeout=HANG)  # reads are not audited
    bob = rpc_error(h.stub(BOB).Stop, pb.StopRequest(id=st.id))
    assert bob.code() == grpc.StatusCode.NOT_FOUND
    over = rpc_error(h.stub(ALICE).Run, pb.RunRequest(argv=["true"]))
    assert over.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    h.stub(ALICE).Stop(pb.StopRequest(id=st.id[:8], grace_seconds=0), timeout=HANG)
    h.stub(ALICE).Remove(pb.JobRef(id=st.id), timeout=HANG)
    # A certificate without clientAuth is refused for its connection; one whose name is no
    # identity (a control character) at the call.
    client_cert(h.certs, "noeku", "carol", eku=False)
    client_cert(h.certs, "esc", "eve\x1b[2J")
    for stem in ("noeku", "esc"):
        err = rpc_error(h.stub(stem).Stop, pb.StopRequest(id=st.id))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED

    text = h.audit_path.read_text()
    assert SECRET not in text
    lines = h.audit_lines()
    assert [(x["method"], x["identity"], x["result"], x["code"]) for x in lines] == [
        ("run", "alice", "ok", "OK"),
        ("stop", "bob", "refused", "NOT_FOUND"),
        ("run", "alice", "refused", "RESOURCE_EXHAUSTED"),
        ("stop", "alice", "ok", "OK"),
        ("remove", "alice", "ok", "OK"),
        ("stop", "carol", "refused", "UNAUTHENTICATED"),
        ("stop", None, "refused", "UNAUTHENTICATED"),
    ]
    run, bob_stop, over_run, stop, remove, noeku, esc = lines
    assert run["job"] == st.id and run["argv"] == ["sleep", "60"]
    assert run["env_keys"] == ["TOKEN"]
    assert run["peer"].startswith("127.0.0.1:") and "reason" not in run
    assert bob_stop["reason"] == "unauthorized" and bob_stop["job"] == st.id
    assert "tjobs --max-jobs" in over_run["reason"] and "job" not in over_run
    assert stop["job"] == st.id  # the full id, though the call gave a prefix
    assert remove["job"] == st.id
    assert "clientAuth" in noeku["reason"]
    assert esc["peer"].startswith("127.0.0.1:") and "job" not in esc  # refused unread
    for line in lines:
        assert line["time"].endswith("Z") and "T" in line["time"]


def test_control_characters_stay_inside_one_line() -> None:
    out = io.StringIO()
    audit = AuditLog(None, stream=out)
    audit.record(identity='eve\n{"forged":1}\x1b[2J', method="run", argv=["a\rb", "\x00"])
    text = out.getvalue()
    assert text.count("\n") == 1 and "\x1b" not in text and "\r" not in text
    assert json.loads(text)["identity"] == 'eve\n{"forged":1}\x1b[2J'


def test_rotation_bounds_the_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditLog(path, max_size=4096, keep=2)
    for i in range(1000):
        audit.record(identity="alice", method="run", job=f"{i:032x}")
    audit.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all((tmp_path / f).stat().st_size <= 4096 for f in files)
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["job"] == f"{999:032x}"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
