"""The server's per-client limits, output shares, log hygiene and listing pages, as units.

The attacks they answer run against a real tjobs in tests/adversarial/test_adv5_*.py.
"""

from __future__ import annotations

import logging

import pytest

from tjob.api import listing
from tjob.api.limits import ClientQuota, LimitExceeded, ServerLimits
from tjob.api.logtext import RepeatFilter, shown, shown_argv
from tjob.api.output import MAX_CHUNK, MIN_READ, OutputShares
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.api.tls import identity_from_peercert, usable_identity
from tjob.errors import InvalidSpec


def test_calls_follows_and_stats_are_counted_per_client_and_named() -> None:
    q = ClientQuota(ServerLimits(client_calls=3, client_follows=2, client_stats=1, max_follows=3))
    with q.call("alice", follow=True), q.call("alice", follow=True):
        with pytest.raises(LimitExceeded, match="--client-follows"), q.call("alice", follow=True):
            pass
        # bob has a count of his own; then the server-wide one is full for carol
        with q.call("bob", follow=True), pytest.raises(LimitExceeded, match="--max-follows"):
            stack = q.call("carol", follow=True)
            stack.__enter__()
        with q.call("alice", stats=True), pytest.raises(LimitExceeded, match="--client-calls"):
            q.call("alice").__enter__()
    assert not q.calls and not q.follows and not q.stats  # every count given back


def test_request_bytes_being_received_are_bounded_per_client() -> None:
    q = ClientQuota(ServerLimits())
    with (
        q.receiving("alice", 4 << 20),
        q.receiving("alice", 4 << 20),
        q.receiving("alice", 4 << 20),
    ):
        with q.receiving("alice", 4 << 20), pytest.raises(LimitExceeded, match="at once"):
            q.receiving("alice", 4 << 20).__enter__()
        with q.receiving("alice", 100):  # small requests are not counted
            pass
        with q.receiving("bob", 4 << 20):
            pass
    assert not q.incoming


def test_rate_allows_a_burst_then_the_rate() -> None:
    q = ClientQuota(ServerLimits(client_rate=1.0, client_burst=5))
    for _ in range(5):
        q.admit("alice")
    with pytest.raises(LimitExceeded, match="--client-rate"):
        q.admit("alice")
    q.admit("bob")  # a bucket per client


def test_output_budget_is_split_by_client_then_by_stream() -> None:
    shares = OutputShares(total=64 << 20)
    shares.add("alice")
    assert shares.share("alice") == MAX_CHUNK  # one follower: big reads
    for _ in range(99):
        shares.add("alice")
    shares.add("bob")
    assert shares.share("bob") == MAX_CHUNK  # half the budget is bob's, whatever alice holds
    assert shares.share("alice") == max(MIN_READ, (32 << 20) // 100)
    for _ in range(100):
        shares.remove("alice")
    assert set(shares.streams) == {"bob"}


def test_log_text_cannot_start_a_line() -> None:
    assert shown("alice") == "alice"
    assert shown("a\nb\x1b[2J\x00\u2028") == "a\\nb\\x1b[2J\\x00\\u2028"
    assert shown("back\\slash") == "back\\\\slash"
    line = shown_argv(["echo", "\n2026/01/01 run admin", "x" * 500])
    assert "\n" not in line and line.startswith("echo '\\n2026") and line.endswith("...")


def test_repeated_lines_are_held_to_one_per_interval() -> None:
    f = RepeatFilter(interval=3600)
    rec = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "accept failed", (), None)
    assert f.filter(rec)
    assert not any(f.filter(rec) for _ in range(1000))
    other = logging.LogRecord("tjobs", logging.INFO, __file__, 1, "run %s", ("alice",), None)
    assert f.filter(other)
    f.interval = 0  # the interval is over: the next one passes and says how many were held
    assert f.filter(rec) and "1000 more" in str(rec.msg)


@pytest.mark.parametrize(
    ("cn", "ok"),
    [
        ("alice", True),
        ("Admin", True),  # exact names: not "admin"
        ("alice@example.org", True),
        ("admin ", False),
        (" admin", False),
        ("admin\x00", False),
        ("alice\nrun admin", False),
        ("bob\x1b[2J", False),
        ("", False),
    ],
)
def test_usable_identity(cn: str, ok: bool) -> None:
    assert usable_identity(cn) is ok
    cert = {"subject": ((("commonName", cn),),)}
    assert (identity_from_peercert(cert) == cn) is ok


def test_argv_prefix_is_bounded() -> None:
    assert listing.argv_prefix(["echo", "hi"]) == (["echo", "hi"], False)
    short, cut = listing.argv_prefix(["x" * 1000] * 240)
    assert cut and sum(map(len, short)) == listing.ARGV_PREFIX
    msg = pb.JobStatus(argv=["y" * 5000])
    listing.shorten(msg)
    assert msg.argv_truncated and len(msg.argv[0]) == listing.ARGV_PREFIX


def test_a_page_token_not_from_the_server_is_invalid() -> None:
    for token in ("nonsense", "1.5", "x/abc"):
        with pytest.raises(InvalidSpec, match="page_token"):
            listing.page([], pb.ListRequest(page_token=token))
    assert listing.page([], pb.ListRequest()).next_page_token == ""
