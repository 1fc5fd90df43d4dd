"""Hostile input to the job lifecycle (issue 15): names, labels, timeouts, signals and filters
as a client may send them, bypassing the CLI's checks; names across clients; a queue flood.
Every bad part is refused with INVALID_ARGUMENT naming it, and the server holds nothing of it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from advkit import Case, finish
from apiharness import ALICE, BOB, HANG, ROOT, Harness

from tjob.api.tjob.v1 import tjob_pb2 as pb

pytestmark = ROOT

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def refused(call: Any, req: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(req, timeout=HANG)
    return err.value


BAD_RUNS = [
    ("empty-looking name", {"name": " "}, "name ' ' is not valid"),
    ("name with a slash", {"name": "../etc"}, "is not valid"),
    ("name with ESC", {"name": "a\x1b[2J"}, "is not valid"),
    ("name with NUL", {"name": "a\x00b"}, "is not valid"),
    ("long name", {"name": "n" * 129}, "longer than 128"),
    ("33 labels", {"labels": {f"k{i}": "v" for i in range(33)}}, "at most 32"),
    ("label key with =", {"labels": {"a=b": "c"}}, "label key 'a=b'"),
    ("empty label key", {"labels": {"": "v"}}, "label key ''"),
    ("long label key", {"labels": {"k" * 64: "v"}}, "label key"),
    ("label value with newline", {"labels": {"k": "a\nb"}}, "control characters"),
    ("long label value", {"labels": {"k": "v" * 257}}, "longer than 256"),
    ("negative timeout", {"timeout_seconds": -1.0}, "timeout"),
    ("zero timeout", {"timeout_seconds": 0.0}, "timeout"),
    ("NaN timeout", {"timeout_seconds": float("nan")}, "timeout"),
    ("infinite timeout", {"timeout_seconds": float("inf")}, "timeout"),
    ("century timeout", {"timeout_seconds": 100 * 365 * 86400.0}, "timeout"),
]


@pytest.mark.parametrize(("what", "fields", "words"), BAD_RUNS, ids=[b[0] for b in BAD_RUNS])
def test_bad_run_fields_are_refused(
    case: Case, what: str, fields: dict[str, Any], words: str
) -> None:
    err = refused(case.stub().Run, pb.RunRequest(argv=["true"], **fields))
    assert err.code() is INVALID, (what, err.details())
    assert words in err.details() and "\n" not in err.details()


@pytest.mark.parametrize("sig", ["NOPE", "999", "-9", "0", "SIG", "KILL\x00", "x" * 10000])
def test_bad_signals_are_refused(case: Case, sig: str) -> None:
    job = case.stub().Run(pb.RunRequest(argv=["sleep", "60"]), timeout=HANG)
    try:
        err = refused(case.stub().Signal, pb.SignalRequest(id=job.id, signal=sig))
        assert err.code() is INVALID and "signal" in err.details()
        assert len(err.details()) < 200  # the bad part is shown cut
    finally:
        finish(case.stub(), job.id)


BAD_FILTERS = [
    ["color=red"],
    ["state=sleepy"],
    ["state"],
    ["name="],
    ["name=" + "*" * 129],
    ["label="],
    ["label=k=" + "v" * 257],
    ["state=running"] * 33,
]


@pytest.mark.parametrize("filters", BAD_FILTERS)
def test_bad_filters_are_refused(case: Case, filters: list[str]) -> None:
    err = refused(case.stub().List, pb.ListRequest(filters=filters))
    assert err.code() is INVALID and "filter" in err.details(), err.details()


def test_a_pathological_glob_is_quick(case: Case) -> None:
    stub = case.stub()
    job = stub.Run(pb.RunRequest(argv=["true"], name="a" * 120), timeout=HANG)
    try:
        t0 = time.monotonic()
        listing = stub.List(pb.ListRequest(filters=["name=" + "*a" * 60 + "b"]), timeout=HANG)
        assert time.monotonic() - t0 < 5 and not listing.jobs
    finally:
        stub.Wait(pb.JobRef(id=job.id), timeout=HANG)
        stub.Remove(pb.JobRef(id=job.id), timeout=HANG)


def test_names_are_per_client_and_no_oracle(case: Case) -> None:
    alice, bob = case.stub(ALICE), case.stub(BOB)
    mine = alice.Run(pb.RunRequest(argv=["sleep", "60"], name="shared"), timeout=HANG)
    theirs = bob.Run(pb.RunRequest(argv=["true"], name="shared"), timeout=HANG)  # their own
    try:
        assert mine.id != theirs.id
        # Bob's reference to the name finds his job, never alice's; a signal cannot cross.
        assert bob.Status(pb.JobRef(id="shared"), timeout=HANG).id == theirs.id
        bob.Wait(pb.JobRef(id="shared"), timeout=HANG)
        err = refused(bob.Signal, pb.SignalRequest(id=mine.id))
        assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "unauthorized")
        err = refused(bob.Status, pb.JobRef(id="nobody-has-this"))
        assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "unauthorized")
        # Filters never show another client's jobs (bob's running one is the bystander).
        listed = bob.List(pb.ListRequest(filters=["state=running"]), timeout=HANG).jobs
        assert mine.id not in {j.id for j in listed} and {j.owner for j in listed} <= {"bob"}
    finally:
        finish(alice, mine.id)
        bob.Remove(pb.JobRef(id=theirs.id), timeout=HANG)
        alice.Remove(pb.JobRef(id=mine.id), timeout=HANG)


def test_a_queue_flood_is_bounded_per_client(tmp_path: Path) -> None:
    from dataclasses import replace

    with Harness(tmp_path, max_running=1) as h:
        assert h.api is not None
        h.api.service.policy = replace(h.policy, max_queued=5)
        stub = h.stub(ALICE)
        hold = stub.Run(pb.RunRequest(argv=["sleep", "600"]), timeout=HANG)
        queued = [
            stub.Run(pb.RunRequest(argv=["true"], queue=True), timeout=HANG) for _ in range(5)
        ]
        assert {q.state for q in queued} == {pb.JOB_STATE_QUEUED}
        err = refused(stub.Run, pb.RunRequest(argv=["true"], queue=True))
        assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "5 queued jobs" in err.details() and "--max-queued" in err.details()
        # Another client still queues.
        assert h.stub(BOB).Run(pb.RunRequest(argv=["true"], queue=True), timeout=HANG).state
        for q in queued:
            st = stub.Stop(pb.StopRequest(id=q.id), timeout=HANG)
            assert st.state == pb.JOB_STATE_CANCELLED
        stub.Stop(pb.StopRequest(id=hold.id, grace_seconds=0), timeout=HANG)


def test_runs_racing_for_the_last_slot_never_exceed_max_running(tmp_path: Path) -> None:
    """Concurrent direct Runs of two clients race for the one slot left: one gets it, the
    others are refused naming the cap, and queued Runs then wait for a slot (issue 15)."""
    with Harness(tmp_path, max_running=2) as h:
        assert h.engine is not None
        alice, bob = h.stub(ALICE), h.stub(BOB)
        hold = alice.Run(pb.RunRequest(argv=["sleep", "600"]), timeout=HANG)
        sleep = pb.RunRequest(argv=["sleep", "600"])
        queued = pb.RunRequest(argv=["true"], queue=True)
        direct = [(s, s.Run.future(sleep, timeout=HANG)) for s in (alice, bob) * 4]
        got, refusals = [], []
        for stub, call in direct:
            try:
                got.append((stub, call.result()))
            except grpc.RpcError as err:
                assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                refusals.append(err.details())
        assert len(got) == 1 and got[0][1].state == pb.JOB_STATE_RUNNING
        assert len(refusals) == 7 and all("--max-running 2" in r for r in refusals)
        waits = [(s, s.Run.future(queued, timeout=HANG)) for s in (alice, bob)]
        waiting = [(stub, call.result()) for stub, call in waits]
        assert {w.state for _, w in waiting} == {pb.JOB_STATE_QUEUED}
        assert h.engine.running_count() == 2
        winner, won = got[0]
        winner.Stop(pb.StopRequest(id=won.id, grace_seconds=0), timeout=HANG)
        alice.Stop(pb.StopRequest(id=hold.id, grace_seconds=0), timeout=HANG)
        for stub, w in waiting:  # the freed slots went to the queued jobs
            assert stub.Wait(pb.JobRef(id=w.id), timeout=HANG).exit_code == 0


def test_a_request_id_is_no_key_to_another_clients_job(tmp_path: Path) -> None:
    """A client that sends another's request id (seen in a log, guessed) gets a job of its
    own, never the other's, queued or direct; an oversized id is refused (issue 19)."""
    with Harness(tmp_path, max_running=1) as h:
        alice, bob = h.stub(ALICE), h.stub(BOB)
        hold = alice.Run(pb.RunRequest(argv=["sleep", "600"], request_id="r1"), timeout=HANG)
        waits = alice.Run(pb.RunRequest(argv=["true"], queue=True, request_id="r2"), timeout=HANG)
        again = alice.Run(pb.RunRequest(argv=["true"], queue=True, request_id="r2"), timeout=HANG)
        assert again.id == waits.id and again.state == pb.JOB_STATE_QUEUED
        for rid in ("r1", "r2"):
            theirs = bob.Run(pb.RunRequest(argv=["true"], queue=True, request_id=rid), timeout=HANG)
            assert theirs.id not in (hold.id, waits.id) and theirs.owner != hold.owner
            bob.Stop(pb.StopRequest(id=theirs.id), timeout=HANG)
        err = refused(alice.Run, pb.RunRequest(argv=["true"], request_id="x" * 129))
        assert err.code() is INVALID and "request_id" in err.details()
        alice.Stop(pb.StopRequest(id=waits.id), timeout=HANG)
        alice.Stop(pb.StopRequest(id=hold.id, grace_seconds=0), timeout=HANG)
