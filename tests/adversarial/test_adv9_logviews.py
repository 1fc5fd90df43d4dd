"""Log views (issue 16) under hostile jobs and clients: output shaped as frames, extreme and
inverted windows, a damaged log. Each gets its true answer or a clear refusal, and no hang."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from advkit import Case
from apiharness import ALICE, BOB, HANG, ROOT
from support.oldlogs import frames, offset_of

from tjob.api.tjob.v1 import tjob_pb2 as pb
from tjob.jobdir import LOG_FILE
from tjob.logstore import END, HEADER, TRAILER, frame_crc

pytestmark = ROOT

INT64_MAX = 2**63 - 1


def chunks(stub: Any, **fields: Any) -> list[pb.LogChunk]:
    return list(stub.Logs(pb.LogsRequest(**fields), timeout=HANG))


def finished(case: Case, argv: list[str]) -> pb.JobStatus:
    stub = case.stub()
    st = stub.Run(pb.RunRequest(argv=argv), timeout=HANG)
    end: pb.JobStatus = stub.Wait(pb.JobRef(id=st.id), timeout=HANG)
    return end


def test_output_shaped_as_frames_is_only_output(case: Case, scratch: Path) -> None:
    """A job's last bytes shaped as a TJOBLOG3 end frame with a trailer pointing at it: the
    backward walk reads the writer's trailers only, so --tail gives them back as output and
    the job's status is its own."""
    header = HEADER.pack(END, 2, 1)
    fake = header + b"{}" + TRAILER.pack(frame_crc(header, b"{}"), 2)
    fake += TRAILER.pack(0, len(fake) - HEADER.size - TRAILER.size)
    (scratch / "fake").write_bytes(b"first\n" + fake)
    (scratch / "fake").chmod(0o644)
    end = finished(case, ["sh", "-c", f"cat {scratch}/fake; exit 3"])
    assert (end.state, end.exit_code) == (pb.JOB_STATE_EXITED, 3)
    got = chunks(case.stub(), id=end.id, tail=1)
    assert b"".join(c.data for c in got) == fake and not any(c.truncated for c in got)
    assert b"".join(c.data for c in chunks(case.stub(), id=end.id)) == b"first\n" + fake


@pytest.mark.parametrize(
    "fields",
    [
        {"tail": 2**64 - 1},
        {"since_unix_nanos": -(2**63)},
        {"until_unix_nanos": INT64_MAX},
        {"since_unix_nanos": -(2**63), "until_unix_nanos": INT64_MAX, "timestamps": True},
        {"tail": 0, "follow": True},
    ],
    ids=["largest tail", "earliest since", "latest until", "widest window", "tail 0 of an end"],
)
def test_extreme_views_are_answered(case: Case, fields: dict[str, Any]) -> None:
    end = finished(case, ["sh", "-c", "echo one; echo two"])
    got = b"".join(c.data for c in chunks(case.stub(), id=end.id, **fields))
    assert got == (b"" if fields.get("tail") == 0 else b"one\ntwo\n")


def test_an_inverted_window_is_refused_and_others_cannot_view(case: Case) -> None:
    end = finished(case, ["echo", "x"])
    req = pb.LogsRequest(id=end.id, since_unix_nanos=2, until_unix_nanos=1)
    with pytest.raises(grpc.RpcError) as err:
        chunks(case.stub(), **{f.name: v for f, v in req.ListFields()})
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "until is before since" in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        chunks(case.stub(BOB), id=end.id, tail=1)
    assert err.value.code() is grpc.StatusCode.NOT_FOUND  # "unauthorized", as logs
    assert chunks(case.stub(ALICE), id=end.id, tail=1)[0].data == b"x\n"


def test_a_damaged_log_viewed_from_its_end(case: Case) -> None:
    """A trailer that disagrees with its header (a garbled disk block): the walk back stops
    there and the view begins after it with the truncation mark; no hang, the last line."""
    end = finished(case, ["sh", "-c", "echo one; sleep 0.1; echo two; sleep 0.1; echo three"])
    assert case.h.engine is not None
    log = case.h.engine.get(end.id).dir / LOG_FILE
    data = bytearray(log.read_bytes())
    at = offset_of(data, 0)  # the first frame ("one\n", unless the supervisor was slow)
    length = HEADER.unpack_from(data, at)[1]
    data[at + HEADER.size + length + 4] ^= 0x7F  # its trailer's length
    log.write_bytes(bytes(data))
    after = b"".join(p for s, p, _t in frames(bytes(data))[1:] if s != END)
    assert after.endswith(b"three\n")
    got = chunks(case.stub(), id=end.id, tail=5)
    assert got[0].truncated and b"".join(c.data for c in got) == after
