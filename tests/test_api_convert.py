"""tjob.api.convert: engine data survives the trip over the wire unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tjob.api import convert
from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.errors import InvalidSpec
from tjob.spec import Limits
from tjob.status import JobState, JobStatus, ResolvedLimits, Stream, Usage

opt_int = st.none() | st.integers(0, 2**62)
opt_float = st.none() | st.floats(0, 1e12, allow_nan=False)
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)

usages = st.builds(
    Usage,
    cpu_seconds=opt_float,
    memory_peak_bytes=opt_int,
    memory_current_bytes=opt_int,
    pids_current=st.none() | st.integers(0, 2**31),
    io_read_bytes=opt_int,
    io_write_bytes=opt_int,
)
resolved_limits = st.builds(
    ResolvedLimits,
    cpu_percent=st.integers(0, 10_000),
    memory_mb=st.integers(0, 2**40),
    pids=st.integers(0, 4_000_000),
    rbps=st.integers(0, 2**40),
    wbps=st.integers(0, 2**40),
    device=st.none() | st.just("254:0"),
)
statuses = st.builds(
    JobStatus,
    id=st.text("0123456789abcdef", min_size=32, max_size=32),
    state=st.sampled_from(JobState),
    argv=st.lists(text, min_size=1, max_size=5).map(tuple),
    owner=text,
    pid=st.none() | st.integers(1, 2**22),
    exit_code=st.none() | st.integers(0, 255),
    signal=st.none() | st.integers(1, 64),
    oom_killed=st.booleans(),
    stopped=st.booleans(),
    error=st.none() | text.filter(bool),
    output_truncated=st.booleans(),
    created_at=st.floats(0, 2e9, allow_nan=False),
    started_at=opt_float,
    ended_at=opt_float,
    usage=usages,
    limits=resolved_limits,
)


@given(statuses)
def test_status_round_trip(status: JobStatus) -> None:
    wire = pb.JobStatus.FromString(convert.status_to_pb(status).SerializeToString())
    assert convert.status_from_pb(wire) == status


def test_limits_zero_means_server_default() -> None:
    assert convert.limits_from_pb(pb.Limits()) == Limits()
    got = convert.limits_from_pb(pb.Limits(cpu_percent=50, wbps=7, device="8:0"))
    assert got == Limits(cpu_percent=50, wbps=7, device="8:0")
    assert convert.limits_to_pb(got) == pb.Limits(cpu_percent=50, wbps=7, device="8:0")


def test_memory_limit_bytes() -> None:
    assert convert.memory_limit_bytes(ResolvedLimits(memory_mb=20)) == 20 * 1024 * 1024
    assert convert.memory_limit_bytes(ResolvedLimits()) == 0


@pytest.mark.parametrize(
    ("wire", "streams"),
    [
        (pb.STREAM_SELECT_BOTH, Stream.BOTH),
        (pb.STREAM_SELECT_STDOUT, Stream.STDOUT),
        (pb.STREAM_SELECT_STDERR, Stream.STDERR),
    ],
)
def test_stream_selection(wire: int, streams: Stream) -> None:
    assert convert.select_from_pb(wire) is streams


def test_unknown_enum_numbers_are_invalid() -> None:
    with pytest.raises(InvalidSpec, match="stream selection 7"):
        convert.select_from_pb(7)
    with pytest.raises(InvalidSpec, match="job state 42"):
        convert.state_from_pb(42)
    assert convert.state_from_pb(pb.JOB_STATE_UNSPECIFIED) is None
    assert convert.stream_to_pb(Stream.STDERR) == pb.STREAM_STDERR
