"""Authorization: identity from the certificate, owner-or-admin, and no existence oracle.

The guard's prefix rules are checked against a stand-in engine whose ids the test chooses (real
ids are random, so two sharing an 8-character prefix cannot be arranged); the full matrix runs
against a real server, real TLS and real jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import grpc
import pytest
from apiharness import ADMIN, ALICE, BOB, HANG, Harness, logs, needs_root, rpc_error

from tjob.api.authz import Caller, Guard, Unauthenticated, Unauthorized, parse_job_ref
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.errors import AmbiguousJobId, InvalidSpec, JobNotFound

# --- the guard on its own -----------------------------------------------------------------------


@dataclass
class FakeJob:
    id: str
    owner: str


class FakeEngine:
    """Only what the guard uses: ``get`` (prefix lookup, as the engine's) and ``jobs``."""

    def __init__(self, jobs: list[FakeJob]) -> None:
        self._jobs = jobs

    def get(self, prefix: str) -> FakeJob:
        found = [j for j in self._jobs if j.id.startswith(prefix)]
        if not found:
            raise JobNotFound(f"no job {prefix!r}")
        if len(found) > 1:
            raise AmbiguousJobId(f"{prefix!r} matches {len(found)} jobs")
        return found[0]

    def jobs(self) -> list[FakeJob]:
        return list(self._jobs)

    def find(self, owner: str, name: str) -> FakeJob | None:
        return None  # these jobs have no names


A1 = FakeJob("aaaaaaaa" + "1" * 24, "alice")
A2 = FakeJob("aaaaaaaa" + "2" * 24, "alice")
B1 = FakeJob("bbbbbbbb" + "1" * 24, "bob")
B2 = FakeJob("aaaaaaaa" + "3" * 24, "bob")  # shares alice's prefix


@pytest.fixture
def guard() -> Guard:
    return Guard(cast(Any, FakeEngine([A1, A2, B1, B2])), admins=["root-ops"])


def cert(*cns: str) -> dict[str, object]:
    return {"subject": tuple(((("commonName", cn),)) for cn in cns)}


def test_caller_is_the_certificate_cn(guard: Guard) -> None:
    assert guard.caller(cert("alice")) == Caller("alice", admin=False)
    assert guard.caller(cert("root-ops")) == Caller("root-ops", admin=True)
    for bad in (None, {}, cert(), cert("a", "b")):
        with pytest.raises(Unauthenticated):
            guard.caller(bad)


@pytest.mark.parametrize(
    "ref", ["", "abc", "aaaaaaa", "zzzzzzzz", "a" * 33, "aaaa-aaaa", "aaaaaaa\0"]
)
def test_malformed_ids_are_invalid(ref: str) -> None:
    with pytest.raises(InvalidSpec, match="at least 8"):
        parse_job_ref(ref)


def test_ids_are_normalized() -> None:
    assert parse_job_ref(" AAAAAAAA ") == "aaaaaaaa"


def test_prefix_resolves_among_the_callers_jobs_only(guard: Guard) -> None:
    alice, bob = Caller("alice"), Caller("bob")
    # "aaaaaaaa3" is bob's: for alice it does not exist, in the same words as a missing job.
    with pytest.raises(Unauthorized) as other:
        guard.job(alice, "aaaaaaaa3")
    with pytest.raises(Unauthorized) as missing:
        guard.job(alice, "cccccccc")
    assert str(other.value) == str(missing.value) == "unauthorized"
    # "aaaaaaaa" matches three jobs, two of alice's: ambiguous for her, counting only hers.
    with pytest.raises(AmbiguousJobId, match="matches 2 of your jobs"):
        guard.job(alice, "aaaaaaaa")
    # For bob the same prefix is unique: his one job, no hint that alice has two.
    assert guard.job(bob, "aaaaaaaa") is B2
    assert guard.job(alice, A1.id.upper()) is A1


def test_admin_sees_everyone(guard: Guard) -> None:
    admin = Caller("root-ops", admin=True)
    assert guard.job(admin, B1.id) is B1
    with pytest.raises(AmbiguousJobId, match="matches 3"):
        guard.job(admin, "aaaaaaaa")
    assert len(guard.jobs(admin)) == 4
    assert guard.jobs(Caller("bob")) == [B1, B2]


# --- the whole matrix over the wire -------------------------------------------------------------

WHO = {ALICE: "alice", BOB: "bob", ADMIN: "admin"}


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with Harness(tmp_path_factory.mktemp("authz")) as harness:
        yield harness


@pytest.fixture(scope="module")
def finished(h: Harness) -> pb.JobStatus:
    st = h.run(["sh", "-c", "echo out; echo err >&2"])
    return h.stub(ALICE).Wait(pb.JobRef(id=st.id), timeout=HANG)


def answer(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as err:
        return err.code(), err.details()
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("stem", [ALICE, BOB, ADMIN])
@needs_root
def test_anyone_may_run_and_owns_the_job(h: Harness, stem: str) -> None:
    st = h.run(["true"], stem)
    assert st.owner == WHO[stem]


ALLOWED = {ALICE: True, BOB: False, ADMIN: True}


@pytest.mark.parametrize("stem", [ALICE, BOB, ADMIN])
@pytest.mark.parametrize("rpc", ["Status", "Logs", "Wait", "Stop"])
@needs_root
def test_owner_or_admin_only(h: Harness, finished: pb.JobStatus, stem: str, rpc: str) -> None:
    stub = h.stub(stem)
    if rpc == "Stop":
        job_id = h.run(["sleep", "300"]).id  # a running job of alice's, per case
        call: Callable[[str], Any] = lambda i: stub.Stop(  # noqa: E731
            pb.StopRequest(id=i, grace_seconds=0), timeout=HANG
        )
    elif rpc == "Logs":
        job_id = finished.id
        call = lambda i: logs(stub, i)  # noqa: E731
    else:
        job_id = finished.id
        call = lambda i: getattr(stub, rpc)(pb.JobRef(id=i), timeout=HANG)  # noqa: E731

    code, details = answer(lambda: call(job_id))
    short = answer(lambda: call(job_id[:8]))
    if ALLOWED[stem]:
        assert (code, short[0]) == (grpc.StatusCode.OK, grpc.StatusCode.OK), details
    else:
        # Someone else's job: exactly the answer for a job that does not exist.
        nonexistent = answer(lambda: call("0123456789abcdef" * 2))
        assert (
            (code, details) == short == nonexistent == (grpc.StatusCode.NOT_FOUND, "unauthorized")
        )
    if rpc == "Stop":
        st = h.stub(ALICE).Status(pb.JobRef(id=job_id), timeout=HANG)
        assert (st.state == pb.JOB_STATE_STOPPED) is ALLOWED[stem]
        if not ALLOWED[stem]:
            h.stub(ALICE).Stop(pb.StopRequest(id=job_id, grace_seconds=0), timeout=HANG)


@needs_root
def test_owner_and_admin_see_the_same_output(h: Harness, finished: pb.JobStatus) -> None:
    assert logs(h.stub(ALICE), finished.id) == logs(h.stub(ADMIN), finished.id) == b"out\nerr\n"


@needs_root
def test_list_shows_own_jobs_admins_all(h: Harness) -> None:
    a = h.run(["true"], ALICE).id
    b = h.run(["true"], BOB).id

    def ids(stem: str) -> list[str]:
        return [j.id for j in h.stub(stem).List(pb.ListRequest(), timeout=HANG).jobs]

    def owners(stem: str) -> set[str]:
        return {j.owner for j in h.stub(stem).List(pb.ListRequest(), timeout=HANG).jobs}

    assert a in ids(ALICE) and b not in ids(ALICE)
    assert b in ids(BOB) and a not in ids(BOB)
    assert {a, b} <= set(ids(ADMIN))
    assert owners(ALICE) == {"alice"} and owners(BOB) == {"bob"}
    assert {"alice", "bob", "admin"} <= owners(ADMIN)


@needs_root
def test_stats_follows_the_same_rule(h: Harness, finished: pb.JobStatus) -> None:
    req = pb.StatsRequest(ids=[finished.id], interval_seconds=0.2)
    for stem in (ALICE, ADMIN):
        (resp,) = list(h.stub(stem).Stats(req, timeout=HANG))
        assert [j.id for j in resp.jobs] == [finished.id]
    err = rpc_error(h.stub(BOB).Stats, req)
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "unauthorized")


@needs_root
def test_refusals_are_logged(
    h: Harness, finished: pb.JobStatus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tjobs")
    rpc_error(h.stub(BOB).Status, pb.JobRef(id=finished.id))
    assert "refused status from bob: NOT_FOUND unauthorized" in caplog.text
