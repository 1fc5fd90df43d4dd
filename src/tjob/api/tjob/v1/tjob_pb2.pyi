from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_EXITED: _ClassVar[JobState]
    JOB_STATE_STOPPED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_LOST: _ClassVar[JobState]
    JOB_STATE_DAMAGED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
    JOB_STATE_STARTING: _ClassVar[JobState]

class VolumeMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VOLUME_MODE_DECLARED: _ClassVar[VolumeMode]
    VOLUME_MODE_READ_ONLY: _ClassVar[VolumeMode]
    VOLUME_MODE_READ_WRITE: _ClassVar[VolumeMode]

class StreamSelect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_SELECT_BOTH: _ClassVar[StreamSelect]
    STREAM_SELECT_STDOUT: _ClassVar[StreamSelect]
    STREAM_SELECT_STDERR: _ClassVar[StreamSelect]

class Stream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_UNSPECIFIED: _ClassVar[Stream]
    STREAM_STDOUT: _ClassVar[Stream]
    STREAM_STDERR: _ClassVar[Stream]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_EXITED: JobState
JOB_STATE_STOPPED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_LOST: JobState
JOB_STATE_DAMAGED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_STARTING: JobState
VOLUME_MODE_DECLARED: VolumeMode
VOLUME_MODE_READ_ONLY: VolumeMode
VOLUME_MODE_READ_WRITE: VolumeMode
STREAM_SELECT_BOTH: StreamSelect
STREAM_SELECT_STDOUT: StreamSelect
STREAM_SELECT_STDERR: StreamSelect
STREAM_UNSPECIFIED: Stream
STREAM_STDOUT: Stream
STREAM_STDERR: Stream

class Limits(_message.Message):
    __slots__ = ("cpu_percent", "memory_mb", "pids", "rbps", "wbps", "device")
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    RBPS_FIELD_NUMBER: _ClassVar[int]
    WBPS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    cpu_percent: int
    memory_mb: int
    pids: int
    rbps: int
    wbps: int
    device: str
    def __init__(self, cpu_percent: _Optional[int] = ..., memory_mb: _Optional[int] = ..., pids: _Optional[int] = ..., rbps: _Optional[int] = ..., wbps: _Optional[int] = ..., device: _Optional[str] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("cpu_seconds", "memory_peak_bytes", "memory_current_bytes", "pids_current", "io_read_bytes", "io_write_bytes")
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PEAK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CURRENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    PIDS_CURRENT_FIELD_NUMBER: _ClassVar[int]
    IO_READ_BYTES_FIELD_NUMBER: _ClassVar[int]
    IO_WRITE_BYTES_FIELD_NUMBER: _ClassVar[int]
    cpu_seconds: float
    memory_peak_bytes: int
    memory_current_bytes: int
    pids_current: int
    io_read_bytes: int
    io_write_bytes: int
    def __init__(self, cpu_seconds: _Optional[float] = ..., memory_peak_bytes: _Optional[int] = ..., memory_current_bytes: _Optional[int] = ..., pids_current: _Optional[int] = ..., io_read_bytes: _Optional[int] = ..., io_write_bytes: _Optional[int] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("id", "state", "argv", "owner", "pid", "exit_code", "signal", "oom_killed", "stopped", "error", "output_truncated", "created_at", "started_at", "ended_at", "usage", "limits", "argv_truncated", "name", "labels", "timeout_seconds", "timed_out", "node")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLED_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    ARGV_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: JobState
    argv: _containers.RepeatedScalarFieldContainer[str]
    owner: str
    pid: int
    exit_code: int
    signal: int
    oom_killed: bool
    stopped: bool
    error: str
    output_truncated: bool
    created_at: float
    started_at: float
    ended_at: float
    usage: Usage
    limits: Limits
    argv_truncated: bool
    name: str
    labels: _containers.ScalarMap[str, str]
    timeout_seconds: float
    timed_out: bool
    node: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., argv: _Optional[_Iterable[str]] = ..., owner: _Optional[str] = ..., pid: _Optional[int] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., oom_killed: _Optional[bool] = ..., stopped: _Optional[bool] = ..., error: _Optional[str] = ..., output_truncated: _Optional[bool] = ..., created_at: _Optional[float] = ..., started_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., argv_truncated: _Optional[bool] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., timeout_seconds: _Optional[float] = ..., timed_out: _Optional[bool] = ..., node: _Optional[str] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("argv", "limits", "env", "workdir", "name", "labels", "timeout_seconds", "queue", "volumes", "request_id", "stdin", "tty", "tty_size", "node")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARGV_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    TTY_SIZE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    limits: Limits
    env: _containers.ScalarMap[str, str]
    workdir: str
    name: str
    labels: _containers.ScalarMap[str, str]
    timeout_seconds: float
    queue: bool
    volumes: _containers.RepeatedCompositeFieldContainer[VolumeMount]
    request_id: str
    stdin: bool
    tty: bool
    tty_size: WindowSize
    node: str
    def __init__(self, argv: _Optional[_Iterable[str]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., env: _Optional[_Mapping[str, str]] = ..., workdir: _Optional[str] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., timeout_seconds: _Optional[float] = ..., queue: _Optional[bool] = ..., volumes: _Optional[_Iterable[_Union[VolumeMount, _Mapping]]] = ..., request_id: _Optional[str] = ..., stdin: _Optional[bool] = ..., tty: _Optional[bool] = ..., tty_size: _Optional[_Union[WindowSize, _Mapping]] = ..., node: _Optional[str] = ...) -> None: ...

class VolumeMount(_message.Message):
    __slots__ = ("name", "target", "mode")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    target: str
    mode: VolumeMode
    def __init__(self, name: _Optional[str] = ..., target: _Optional[str] = ..., mode: _Optional[_Union[VolumeMode, str]] = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("id", "grace_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    grace_seconds: float
    def __init__(self, id: _Optional[str] = ..., grace_seconds: _Optional[float] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("state", "limit", "page_token", "filters")
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    limit: int
    page_token: str
    filters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., filters: _Optional[_Iterable[str]] = ...) -> None: ...

class SignalRequest(_message.Message):
    __slots__ = ("id", "signal", "all")
    ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    id: str
    signal: str
    all: bool
    def __init__(self, id: _Optional[str] = ..., signal: _Optional[str] = ..., all: _Optional[bool] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStatus]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("id", "follow", "streams", "skip", "tail", "since_unix_nanos", "until_unix_nanos", "timestamps")
    ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    SKIP_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    id: str
    follow: bool
    streams: StreamSelect
    skip: int
    tail: int
    since_unix_nanos: int
    until_unix_nanos: int
    timestamps: bool
    def __init__(self, id: _Optional[str] = ..., follow: _Optional[bool] = ..., streams: _Optional[_Union[StreamSelect, str]] = ..., skip: _Optional[int] = ..., tail: _Optional[int] = ..., since_unix_nanos: _Optional[int] = ..., until_unix_nanos: _Optional[int] = ..., timestamps: _Optional[bool] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("stream", "data", "truncated", "time_unix_nanos")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANOS_FIELD_NUMBER: _ClassVar[int]
    stream: Stream
    data: bytes
    truncated: bool
    time_unix_nanos: int
    def __init__(self, stream: _Optional[_Union[Stream, str]] = ..., data: _Optional[bytes] = ..., truncated: _Optional[bool] = ..., time_unix_nanos: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("ids", "stream", "interval_seconds")
    IDS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    stream: bool
    interval_seconds: float
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., stream: _Optional[bool] = ..., interval_seconds: _Optional[float] = ...) -> None: ...

class JobStats(_message.Message):
    __slots__ = ("id", "argv", "cpu_percent", "memory_bytes", "memory_limit_bytes", "pids", "io_read_bytes", "io_write_bytes", "state")
    ID_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    IO_READ_BYTES_FIELD_NUMBER: _ClassVar[int]
    IO_WRITE_BYTES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    id: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    cpu_percent: float
    memory_bytes: int
    memory_limit_bytes: int
    pids: int
    io_read_bytes: int
    io_write_bytes: int
    state: JobState
    def __init__(self, id: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., cpu_percent: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., memory_limit_bytes: _Optional[int] = ..., pids: _Optional[int] = ..., io_read_bytes: _Optional[int] = ..., io_write_bytes: _Optional[int] = ..., state: _Optional[_Union[JobState, str]] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStats]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobStats, _Mapping]]] = ...) -> None: ...

class EventsRequest(_message.Message):
    __slots__ = ("filters", "since")
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedScalarFieldContainer[str]
    since: float
    def __init__(self, filters: _Optional[_Iterable[str]] = ..., since: _Optional[float] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("seq", "time", "kind", "id", "owner", "name", "labels", "exit_code", "signal", "error", "missed")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time: float
    kind: str
    id: str
    owner: str
    name: str
    labels: _containers.ScalarMap[str, str]
    exit_code: int
    signal: int
    error: str
    missed: int
    def __init__(self, seq: _Optional[int] = ..., time: _Optional[float] = ..., kind: _Optional[str] = ..., id: _Optional[str] = ..., owner: _Optional[str] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., error: _Optional[str] = ..., missed: _Optional[int] = ...) -> None: ...

class WindowSize(_message.Message):
    __slots__ = ("rows", "cols")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class AttachStart(_message.Message):
    __slots__ = ("id", "stdin", "logs", "size", "exec")
    ID_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    id: str
    stdin: bool
    logs: bool
    size: WindowSize
    exec: ExecRequest
    def __init__(self, id: _Optional[str] = ..., stdin: _Optional[bool] = ..., logs: _Optional[bool] = ..., size: _Optional[_Union[WindowSize, _Mapping]] = ..., exec: _Optional[_Union[ExecRequest, _Mapping]] = ...) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ("start", "data", "eof", "resize", "detach")
    START_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    start: AttachStart
    data: bytes
    eof: bool
    resize: WindowSize
    detach: bool
    def __init__(self, start: _Optional[_Union[AttachStart, _Mapping]] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ..., resize: _Optional[_Union[WindowSize, _Mapping]] = ..., detach: _Optional[bool] = ...) -> None: ...

class AttachReply(_message.Message):
    __slots__ = ("output", "exit", "attached", "exec_exit")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    EXEC_EXIT_FIELD_NUMBER: _ClassVar[int]
    output: LogChunk
    exit: JobStatus
    attached: Attached
    exec_exit: ExecExit
    def __init__(self, output: _Optional[_Union[LogChunk, _Mapping]] = ..., exit: _Optional[_Union[JobStatus, _Mapping]] = ..., attached: _Optional[_Union[Attached, _Mapping]] = ..., exec_exit: _Optional[_Union[ExecExit, _Mapping]] = ...) -> None: ...

class Attached(_message.Message):
    __slots__ = ("tty", "stdin")
    TTY_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    tty: bool
    stdin: bool
    def __init__(self, tty: _Optional[bool] = ..., stdin: _Optional[bool] = ...) -> None: ...

class ExecRequest(_message.Message):
    __slots__ = ("id", "argv", "env", "workdir", "stdin", "tty")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    id: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    workdir: str
    stdin: bool
    tty: bool
    def __init__(self, id: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., workdir: _Optional[str] = ..., stdin: _Optional[bool] = ..., tty: _Optional[bool] = ...) -> None: ...

class ExecExit(_message.Message):
    __slots__ = ("exit_code", "signal", "error", "output_truncated")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    signal: int
    error: str
    output_truncated: bool
    def __init__(self, exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., error: _Optional[str] = ..., output_truncated: _Optional[bool] = ...) -> None: ...

class ExecResponse(_message.Message):
    __slots__ = ("output", "exit")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    output: LogChunk
    exit: ExecExit
    def __init__(self, output: _Optional[_Union[LogChunk, _Mapping]] = ..., exit: _Optional[_Union[ExecExit, _Mapping]] = ...) -> None: ...
