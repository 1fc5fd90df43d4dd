"""The ``tjob`` CLI's pieces without a server (no root needed): parsing, rendering, errors."""

from __future__ import annotations

import re

import pytest

from tjob.cli.tjob.args import parse_args
from tjob.cli.tjob.client import describe_rpc_error
from tjob.cli.tjob.errors import EXIT_USAGE, CliError, exit_code
from tjob.cli.tjob.render import (
    command_text,
    copy_output,
    escape,
    human_bytes,
    human_duration,
    print_ids,
    ps_table,
    stats_table,
    status_text,
    table,
    warn,
)
from tjob.status import JobState, JobStatus

# What must never reach a terminal from a field we print: C0 (ESC, CR, LF...), DEL and C1.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
HOSTILE = "\x1b[2J\nrm -rf /\r\x9b31m\x07"


def st(**kw: object) -> JobStatus:
    fields: dict[str, object] = {
        "id": "0" * 32,
        "argv": ("x",),
        "created_at": 100.0,
        "state": JobState.EXITED,
        **kw,
    }
    return JobStatus(**fields)  # type: ignore[arg-type]


# --- the command line ---------------------------------------------------------------------------


def test_parse_args_places_and_spellings() -> None:
    a = parse_args(["-cert", "x.crt", "run", "--cpu", "10", "-a", "sh", "-c", "echo", "--host"])
    assert (a.command, a.cert, a.cpu, a.attach) == ("run", "x.crt", 10, True)
    assert a.argv == ["sh", "-c", "echo", "--host"]  # the job's, not ours
    b = parse_args(["ps", "--cert=y.crt", "-key", "y.key", "-q", "0123abcd"])
    assert (b.command, b.cert, b.key, b.quiet, b.jobs) == (
        "ps",
        "y.crt",
        "y.key",
        True,
        ["0123abcd"],
    )
    c = parse_args(["--cert", "before.crt", "logs", "--cert", "after.crt", "--no-follow", "j"])
    assert (c.cert, c.follow, c.stdout) == ("after.crt", False, False)  # the later one wins
    assert parse_args(["logs", "j"]).follow is True
    assert parse_args(["run", "--mem", "1G", "--wbps", "20M", "true"]).mem == 1024
    assert parse_args(["run", "--wbps", "20M", "true"]).wbps == 20 << 20
    assert parse_args(["-h", "ps"]).command is None
    assert parse_args(["stop", "-t", "0", "a", "b"]).time == 0.0


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["run", "--mem", "20", "true"], "mem", 20),  # a bare number is MB, as always
        (["run", "--mem", "512M", "true"], "mem", 512),
        (["run", "--mem", "1.5G", "true"], "mem", 1536),
        (["run", "--mem", "2048K", "true"], "mem", 2),
        (["run", "--rbps", "20971520", "true"], "rbps", 20 << 20),  # bare: bytes/s
        (["run", "--rbps", "50MiB", "true"], "rbps", 50 << 20),
        (["run", "--wbps", "1g", "true"], "wbps", 1 << 30),
        (["stop", "j"], "time", 10.0),
        (["stop", "-t", "1.5", "j"], "time", 1.5),
        (["stop", "--time", "5m", "j"], "time", 300.0),
        (["stop", "-t", "2h", "j"], "time", 7200.0),
    ],
)
def test_units_on_the_command_line(argv: list[str], field: str, value: object) -> None:
    assert getattr(parse_args(argv), field) == value


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["run", "--mem", "lots", "true"], "--mem"),
        (["run", "--mem", "0", "true"], "--mem"),
        (["run", "--mem", "512K", "true"], "--mem"),  # under 1 MB
        (["run", "--mem", "1.5", "true"], "--mem"),
        (["run", "--wbps", "-1", "true"], "--wbps"),
        (["run", "--rbps", "20X", "true"], "--rbps"),
        (["run", "--cpu", "x", "true"], "--cpu"),
        (["stop", "-t", "soon", "j"], "-t/--time"),
        (["stop", "-t", "-1", "j"], "-t/--time"),
    ],
)
def test_bad_values_are_one_line_naming_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(CliError) as caught:
        parse_args(argv)
    message = str(caught.value)
    assert caught.value.code == EXIT_USAGE
    assert message.startswith(f"argument {flag}: '"), message
    assert "\n" not in message and message.endswith(f"(see 'tjob {argv[0]} -h')")


# --- rendering ----------------------------------------------------------------------------------


def test_formatting() -> None:
    assert [human_duration(s) for s in (0, 20.9, 61, 3 * 3600 + 5, 2 * 86400)] == [
        "0s",
        "20s",
        "1m",
        "3h",
        "2d",
    ]
    assert [human_bytes(n) for n in (0, 512, 1536, 20 << 20)] == ["0B", "512B", "1.5KiB", "20MiB"]
    assert command_text(["find", "/", "-name", "*.txt"]) == "\"find / -name '*.txt'\""
    assert command_text(["x" * 40]) == '"' + "x" * 27 + '..."'

    assert status_text(st(state=JobState.RUNNING, started_at=100.0), 120.5) == "Running 20s"
    assert status_text(st(state=JobState.EXITED, exit_code=3), 0) == "Exit (3)"
    assert status_text(st(state=JobState.STOPPED, signal=9, stopped=True), 0) == (
        "Killed (SIGKILL) stopped"
    )
    assert status_text(st(state=JobState.EXITED, signal=9, oom_killed=True), 0) == "OOM killed"
    assert status_text(st(state=JobState.FAILED, error="exec x: No such file"), 0) == (
        "Failed: exec x: No such file"
    )
    assert status_text(st(state=JobState.LOST), 0) == "Lost"
    assert status_text(st(state=JobState.STARTING, created_at=100.0), 131.0) == (
        "Starting 31s (not confirmed yet)"
    )


def test_escape_shows_controls_and_keeps_text() -> None:
    assert escape("\x1b[2J") == "\\x1b[2J"
    assert escape("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert escape("\x00\x7f\x85\x9b") == "\\x00\\x7f\\x85\\x9b"  # NUL, DEL, NEL, CSI
    assert escape("\u202eevil\u2028") == "\\u202eevil\\u2028"  # bidi override, line separator
    assert escape("\udcff") == "\\udcff"  # a lone surrogate would not even encode
    assert escape("café 日本 -- ok") == "café 日本 -- ok"


def test_tables_are_one_line_per_row_whatever_the_fields() -> None:
    assert table(["A", "B"], [["x\ny", "\x1b[31mred"]]).splitlines() == [
        "A     B",
        "x\\ny  \\x1b[31mred",
    ]
    jobs = [
        st(argv=("true", HOSTILE), owner="alice", state=JobState.FAILED, error=HOSTILE),
        st(id="1" * 32, owner=HOSTILE, exit_code=0),
    ]
    text = ps_table(jobs, 200.0)
    lines = text.splitlines()
    assert len(lines) == 3 and lines[0].split() == [
        "JOB",
        "ID",
        "COMMAND",
        "OWNER",
        "CREATED",
        "STATUS",
    ]
    assert not any(CONTROL.search(line) for line in lines)
    assert "\\x1b[2J\\nrm -rf /\\r\\x9b31m\\x07" in lines[1]  # the error, shown in full


def test_stats_table_escapes_and_shows_cpu_of_running_jobs_only() -> None:
    from tjob.api.tjob.v1 import tjob_pb2 as pb

    jobs = [
        pb.JobStats(id="a" * 32, argv=[HOSTILE], state=pb.JOB_STATE_RUNNING, cpu_percent=12.5),
        pb.JobStats(id="b" * 32, argv=["x"], state=pb.JOB_STATE_EXITED, cpu_percent=3.0),
        pb.JobStats(id="c" * 32, argv=["y"], cpu_percent=1.0),  # an older server: no state
    ]
    text = stats_table(jobs)
    assert len(text.splitlines()) == 4
    assert not any(CONTROL.search(line) for line in text.splitlines())
    cpu = [re.split(r"\s{2,}", line)[2] for line in text.splitlines()[1:]]
    assert cpu == ["12.50%", "--", "1.00%"]


def test_messages_are_escaped_but_job_output_is_not(capfd: pytest.CaptureFixture[str]) -> None:
    from tjob.api.tjob.v1 import tjob_pb2 as pb

    warn(f"server says {HOSTILE}")
    copy_output(
        [
            pb.LogChunk(stream=pb.STREAM_STDOUT, data=b"\x1b[2Jout\n"),
            pb.LogChunk(stream=pb.STREAM_STDERR, data=b"\x1b]0;err\x07"),
        ]
    )
    out, err = capfd.readouterr()
    assert out == "\x1b[2Jout\n"  # the data, as the job wrote it
    first, rest = err.split("\n", 1)
    assert first == "tjob: server says \\x1b[2J\\nrm -rf /\\r\\x9b31m\\x07"
    assert rest == "\x1b]0;err\x07"


def test_print_ids_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert print_ids([("a", st()), ("b", None)]) == 1
    assert print_ids([("a", st())]) == 0
    assert capsys.readouterr().out == "00000000\n00000000\n"
    assert exit_code(st(state=JobState.EXITED, exit_code=3)) == 3
    assert exit_code(st(state=JobState.STOPPED, signal=9)) == 128 + 9
    assert exit_code(st(state=JobState.FAILED, error="exec x: No such file or directory")) == 127
    assert exit_code(st(state=JobState.FAILED, error="exec x: Permission denied")) == 126


# --- errors -------------------------------------------------------------------------------------


class _FakeRpcError:
    def __init__(self, code: str, details: str) -> None:
        import grpc

        self._code = getattr(grpc.StatusCode, code)
        self._details = details

    def code(self) -> object:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (
            "UNAVAILABLE",
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:8080: "
            "Failed to connect to remote host: Connection refused",
            "cannot reach tjobs at localhost:8080: connection refused",
        ),
        (
            "UNAVAILABLE",
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:8080: "
            "Custom verification check failed with error: UNAUTHENTICATED: Hostname "
            "Verification Check failed.",
            "cannot reach tjobs at localhost:8080: its certificate is not valid for the name "
            "localhost",
        ),
        (
            "UNAVAILABLE",
            "errors resolving nohost.invalid:8080: [field:hostname lookup error:address lookup "
            "failed for nohost.invalid:8080: Domain name not found]",
            "cannot reach tjobs at localhost:8080: cannot resolve localhost",
        ),
        (
            "UNAVAILABLE",
            "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:8080: "
            "Socket closed",
            "cannot reach tjobs at localhost:8080: it closed the connection (does it trust the "
            "client certificate cli.crt?)",
        ),
        (
            "UNAVAILABLE",
            "Socket closed",  # once connected: the server went away, the certificate was fine
            "tjobs at localhost:8080 closed the connection during the call (stopped or restarted?)",
        ),
        ("UNAVAILABLE", "tjobs is shutting down", "tjobs is shutting down"),
        ("NOT_FOUND", "unauthorized", "unauthorized"),
        ("INTERNAL", "boom", "server error: boom"),
        (
            "DEADLINE_EXCEEDED",
            "Deadline Exceeded",
            "tjobs at localhost:8080 did not answer in time",
        ),
    ],
)
def test_rpc_errors_in_words(code: str, details: str, expected: str) -> None:
    err = _FakeRpcError(code, details)
    assert describe_rpc_error(err, "localhost:8080", "ca.crt", "cli.crt") == expected
