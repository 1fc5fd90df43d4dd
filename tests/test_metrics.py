"""The Prometheus endpoint: its values move with activity (runs, refusals, followers)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from apiharness import ALICE, BOB, HANG, logs, needs_root, open_gate, rpc_error
from opsharness import OpsHarness

from tjob.api.metrics import OTHER, limit_name, top_clients
from tjob.api.tjob.v1 import tjob_pb2 as pb


def test_limit_names_come_from_a_fixed_set() -> None:
    assert limit_name("alice already has 32 calls in flight (tjobs --client-calls)") == (
        "client-calls"
    )
    # A client's name is part of some messages: it cannot make up a label value.
    assert limit_name("x(tjobs --evil) already has 2 Stats calls (tjobs --client-stats)") == (
        "client-stats"
    )
    assert limit_name("x(tjobs --evil) is sending too much") == OTHER


def test_client_labels_are_bounded() -> None:
    many = {f"c{i:03}": i % 7 + 1 for i in range(500)}
    shown = top_clients(many, top=20)
    assert len(shown) == 21 and OTHER in shown
    assert sum(shown.values()) == sum(many.values())
    assert top_clients({"a": 1}) == {"a": 1}


@pytest.fixture
def h(tmp_path: Path, cgroup_parent: str) -> Iterator[OpsHarness]:
    with OpsHarness(tmp_path, cgroup_parent=cgroup_parent, max_jobs=1) as harness:
        yield harness


@needs_root
def test_metrics_move_with_runs_refusals_and_followers(h: OpsHarness, gate: Path) -> None:
    assert h.sample("tjob_jobs_running") == 0
    st = h.run(["sh", "-c", f"cat {gate}; echo hello"])
    assert h.sample("tjob_jobs_started_total") == 1
    assert h.sample("tjob_job_start_seconds_count") == 1
    assert h.sample("tjob_jobs_running") == 1
    assert h.sample("tjob_jobs_queued") == 0
    assert h.sample("tjob_client_running_jobs", client="alice") == 1
    assert h.sample("tjob_rpcs_total", method="run", code="OK") == 1

    # Refusals: bob may not see alice's job; alice has her one running job already.
    assert rpc_error(h.stub(BOB).Status, pb.JobRef(id=st.id)).code() == grpc.StatusCode.NOT_FOUND
    assert h.sample("tjob_rpcs_total", method="status", code="NOT_FOUND") == 1
    err = rpc_error(h.stub(ALICE).Run, pb.RunRequest(argv=["true"]))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert h.sample("tjob_limit_refusals_total", limit="max-jobs") == 1
    assert h.sample("tjob_rpcs_total", method="run", code="RESOURCE_EXHAUSTED") == 1

    # A follower is counted while it follows; what it is sent is counted in bytes.
    got: list[bytes] = []
    follower = threading.Thread(target=lambda: got.append(logs(h.stub(ALICE), st.id)))
    follower.start()
    h.until_sample("tjob_log_followers", 1)
    open_gate(gate)
    follower.join(HANG)
    assert got == [b"hello\n"]
    h.until_sample("tjob_log_followers", 0)
    assert h.sample("tjob_output_streamed_bytes_total") == len(b"hello\n")
    h.until_sample("tjob_jobs_ended_total", 1, state="exited")
    assert h.sample("tjob_jobs_running") == 0
    assert h.sample("tjob_client_running_jobs", client="alice") == 0
    assert h.sample("tjob_rpcs_total", method="logs", code="OK") == 1


def test_metrics_address_defaults_to_localhost() -> None:
    from tjob.cli.ops import metrics_addr

    assert metrics_addr("9100") == ("localhost", 9100)
    assert metrics_addr(":9100") == ("localhost", 9100)
    assert metrics_addr("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert metrics_addr("[::1]:9100") == ("::1", 9100)
    for bad in ("", "x", "host:", "host:70000"):
        with pytest.raises(ValueError, match="--metrics"):
            metrics_addr(bad)


@needs_root
def test_metrics_count_queued_jobs_and_the_output_stored(h: OpsHarness, gate: Path) -> None:
    """tjob_jobs_queued counts the queue; tjob_output_stored_bytes (and per client) is the
    length of the stored output logs, and falls when a job is removed (issue 17)."""
    assert h.engine is not None
    alice, bob = h.stub(ALICE), h.stub(BOB)
    hold = h.run(["sh", "-c", f"cat {gate}; head -c 100000 /dev/zero"])
    later = alice.Run(pb.RunRequest(argv=["echo", "queued"], queue=True), timeout=HANG)
    assert later.state == pb.JOB_STATE_QUEUED
    assert (h.sample("tjob_jobs_queued"), h.sample("tjob_jobs_running")) == (1, 1)
    open_gate(gate)
    for job in (hold, later):
        assert alice.Wait(pb.JobRef(id=job.id), timeout=HANG).exit_code == 0
    theirs = bob.Run(pb.RunRequest(argv=["echo", "bob"]), timeout=HANG)
    assert bob.Wait(pb.JobRef(id=theirs.id), timeout=HANG).exit_code == 0

    def stored(job_id: str) -> int:
        return (h.engine.jobs_dir / job_id / "output.log").stat().st_size  # type: ignore[union-attr]

    mine = stored(hold.id) + stored(later.id)
    assert mine > 100_000
    assert h.sample("tjob_client_output_stored_bytes", client="alice") == mine
    assert h.sample("tjob_client_output_stored_bytes", client="bob") == stored(theirs.id)
    assert h.sample("tjob_output_stored_bytes") == mine + stored(theirs.id)
    assert h.sample("tjob_jobs_queued") == 0
    alice.Remove(pb.JobRef(id=hold.id), timeout=HANG)
    assert h.sample("tjob_client_output_stored_bytes", client="alice") == stored(later.id)
    assert h.sample("tjob_output_stored_bytes") == stored(later.id) + stored(theirs.id)
