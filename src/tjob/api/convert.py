"""Translate between the engine's data (``tjob.spec`` / ``tjob.status``) and the wire messages.

Pure functions, no I/O: the server calls them, the client CLI may too.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..errors import InvalidSpec
from ..spec import MIB, Limits
from ..status import JobState, JobStatus, ResolvedLimits, Stream, Usage
from ..volumes import Volume
from .tjob.v1 import tjob_pb2 as pb

if TYPE_CHECKING:
    from ..events import Event
    from ..execs import ExecResult

_STATE_TO_PB: dict[JobState, pb.JobState] = {
    JobState.RUNNING: pb.JOB_STATE_RUNNING,
    JobState.EXITED: pb.JOB_STATE_EXITED,
    JobState.STOPPED: pb.JOB_STATE_STOPPED,
    JobState.FAILED: pb.JOB_STATE_FAILED,
    JobState.LOST: pb.JOB_STATE_LOST,
    JobState.DAMAGED: pb.JOB_STATE_DAMAGED,
    JobState.QUEUED: pb.JOB_STATE_QUEUED,
    JobState.CANCELLED: pb.JOB_STATE_CANCELLED,
    JobState.STARTING: pb.JOB_STATE_STARTING,
}
_STATE_FROM_PB: dict[int, JobState] = {v: k for k, v in _STATE_TO_PB.items()}

_SELECT_FROM_PB: dict[int, Stream] = {
    pb.STREAM_SELECT_BOTH: Stream.BOTH,
    pb.STREAM_SELECT_STDOUT: Stream.STDOUT,
    pb.STREAM_SELECT_STDERR: Stream.STDERR,
}

_STREAM_TO_PB: dict[Stream, pb.Stream] = {
    Stream.STDOUT: pb.STREAM_STDOUT,
    Stream.STDERR: pb.STREAM_STDERR,
}

_LIMIT_FIELDS = ("cpu_percent", "memory_mb", "pids", "rbps", "wbps")


# --- volumes ------------------------------------------------------------------------------------

_MODE_FROM_PB: dict[int, bool | None] = {
    pb.VOLUME_MODE_DECLARED: None,
    pb.VOLUME_MODE_READ_ONLY: True,
    pb.VOLUME_MODE_READ_WRITE: False,
}


def volume_from_pb(msg: pb.VolumeMount) -> Volume:
    if msg.mode not in _MODE_FROM_PB:
        raise InvalidSpec(f"volume {msg.name}: unknown mode {msg.mode}")
    return Volume(msg.name, msg.target, _MODE_FROM_PB[msg.mode]).validate()


def volume_to_pb(v: Volume) -> pb.VolumeMount:
    mode = {None: pb.VOLUME_MODE_DECLARED, True: pb.VOLUME_MODE_READ_ONLY}.get(
        v.read_only, pb.VOLUME_MODE_READ_WRITE
    )
    return pb.VolumeMount(name=v.name, target=v.target, mode=mode)


# --- limits -------------------------------------------------------------------------------------


def limits_from_pb(msg: pb.Limits) -> Limits:
    """Requested limits: proto3's 0 / "" mean "not asked for" (the server's default)."""
    values: dict[str, Any] = {f: getattr(msg, f) or None for f in _LIMIT_FIELDS}
    return Limits(**values, device=msg.device or None)


def limits_to_pb(limits: Limits | ResolvedLimits) -> pb.Limits:
    """Requested or resolved limits as a message; None (not asked for) becomes 0."""
    msg = pb.Limits()
    for f in _LIMIT_FIELDS:
        value = getattr(limits, f)
        if value:
            setattr(msg, f, value)
    if limits.device:
        msg.device = limits.device
    return msg


def limits_from_status_pb(msg: pb.Limits) -> ResolvedLimits:
    """A status message's limits as the engine's (unset fields 0, no device None)."""
    values: dict[str, int] = {f: getattr(msg, f) for f in _LIMIT_FIELDS}
    return ResolvedLimits(**values, device=msg.device or None)


def memory_limit_bytes(limits: ResolvedLimits) -> int:
    """The memory limit of a status in bytes (0: none known)."""
    return limits.memory_mb * MIB


# --- states, streams ----------------------------------------------------------------------------


def state_to_pb(state: JobState) -> pb.JobState:
    return _STATE_TO_PB[state]


def state_from_pb(value: int) -> JobState | None:
    """A state filter: None for JOB_STATE_UNSPECIFIED; InvalidSpec for an unknown number."""
    if value == pb.JOB_STATE_UNSPECIFIED:
        return None
    try:
        return _STATE_FROM_PB[value]
    except KeyError:
        raise InvalidSpec(f"unknown job state {value}") from None


def select_from_pb(value: int) -> Stream:
    """Which streams a Logs request wants; InvalidSpec for an unknown number."""
    try:
        return _SELECT_FROM_PB[value]
    except KeyError:
        raise InvalidSpec(f"unknown stream selection {value}") from None


def stream_to_pb(stream: Stream) -> pb.Stream:
    return _STREAM_TO_PB[stream]


# --- status -------------------------------------------------------------------------------------


def _present(**fields: Any) -> dict[str, Any]:
    """The fields that have a value: an unset proto3 ``optional`` field reads back as None."""
    return {k: v for k, v in fields.items() if v is not None}


def usage_to_pb(usage: Usage) -> pb.Usage:
    return pb.Usage(**_present(**dataclasses.asdict(usage)))


def usage_from_pb(msg: pb.Usage) -> Usage:
    def opt(name: str) -> Any:
        return getattr(msg, name) if msg.HasField(name) else None

    return Usage(
        cpu_seconds=opt("cpu_seconds"),
        memory_peak_bytes=opt("memory_peak_bytes"),
        memory_current_bytes=opt("memory_current_bytes"),
        pids_current=opt("pids_current"),
        io_read_bytes=opt("io_read_bytes"),
        io_write_bytes=opt("io_write_bytes"),
    )


def status_to_pb(st: JobStatus) -> pb.JobStatus:
    return pb.JobStatus(
        id=st.id,
        state=state_to_pb(st.state),
        argv=st.argv,
        owner=st.owner,
        oom_killed=st.oom_killed,
        stopped=st.stopped,
        error=st.error or "",
        output_truncated=st.output_truncated,
        created_at=st.created_at,
        usage=usage_to_pb(st.usage),
        limits=limits_to_pb(st.limits),
        name=st.name,
        labels=dict(st.labels),
        timed_out=st.timed_out,
        node=st.node,
        **_present(
            timeout_seconds=st.timeout,
            pid=st.pid,
            exit_code=st.exit_code,
            signal=st.signal,
            started_at=st.started_at,
            ended_at=st.ended_at,
        ),
    )


def status_from_pb(msg: pb.JobStatus) -> JobStatus:
    """The engine's :class:`JobStatus` back from the wire (for clients and tests)."""
    state = state_from_pb(msg.state)
    if state is None:
        raise InvalidSpec("job status without a state")
    return JobStatus(
        id=msg.id,
        state=state,
        argv=tuple(msg.argv),
        owner=msg.owner,
        pid=msg.pid if msg.HasField("pid") else None,
        exit_code=msg.exit_code if msg.HasField("exit_code") else None,
        signal=msg.signal if msg.HasField("signal") else None,
        oom_killed=msg.oom_killed,
        stopped=msg.stopped,
        error=msg.error or None,
        output_truncated=msg.output_truncated,
        created_at=msg.created_at,
        started_at=msg.started_at if msg.HasField("started_at") else None,
        ended_at=msg.ended_at if msg.HasField("ended_at") else None,
        usage=usage_from_pb(msg.usage),
        limits=limits_from_status_pb(msg.limits),
        name=msg.name,
        labels=dict(msg.labels),
        timeout=msg.timeout_seconds if msg.HasField("timeout_seconds") else None,
        timed_out=msg.timed_out,
        node=msg.node,
    )


def event_to_pb(e: Event) -> pb.Event:
    return pb.Event(
        seq=e.seq,
        time=e.time,
        kind=e.kind,
        id=e.id,
        owner=e.owner,
        name=e.name,
        labels=dict(e.labels),
        error=e.error or "",
        **_present(exit_code=e.exit_code, signal=e.signal),
    )


def exec_exit_to_pb(end: ExecResult) -> pb.ExecExit:
    """How an exec ended (issue 16)."""
    msg = pb.ExecExit(error=end.error, output_truncated=end.output_truncated)
    if end.exit_code is not None:
        msg.exit_code = end.exit_code
    if end.signal is not None:
        msg.signal = end.signal
    return msg
