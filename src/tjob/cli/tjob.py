"""``tjob``: the client CLI — run, stop, ps, logs, wait and stats jobs on a ``tjobs`` server.

Thin by design: parse the command line, make one gRPC call (or a stream), print the answer.
Start-up time is most of what a user feels (``tjob ps``), so grpc and the generated messages
are imported only once a command needs them, and nothing here touches the engine.

Global options (``--host --ca --cert --key``) are accepted before or after the subcommand, in
GNU spelling or the Go prototype's single-dash one (``-cert .tjob/other.crt``), and default to
``$TJOB_HOST`` etc., then the prototype's defaults. Every expected failure is one line on stderr
and a non-zero exit; Ctrl+C exits 130, never with a traceback.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import grpc

    from tjob.api.tjob.v1 import tjob_pb2 as pb
    from tjob.status import JobStatus

PROG = "tjob"

# name -> (default, environment variable, help)
GLOBALS: dict[str, tuple[str, str, str]] = {
    "host": ("localhost:8080", "TJOB_HOST", "server address"),
    "ca": (".tjob/ca.crt", "TJOB_CA", "CA cert file"),
    "cert": (".tjob/cli.crt", "TJOB_CERT", "cli cert file"),
    "key": (".tjob/cli.key", "TJOB_KEY", "cli key file"),
}

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl+C
EXIT_CANNOT_EXEC = 126  # as a shell: found but could not be started
EXIT_NOT_FOUND = 127  # as a shell: no such command
EXIT_SIGPIPE = 141  # 128 + SIGPIPE, as `cat` killed by a closed pipe

SHORT_ID = 8
COMMAND_WIDTH = 30
CALL_TIMEOUT = 60.0  # seconds: a guard against a hung server on calls that answer at once
MAX_REPLY = 4 << 20  # the largest reply tjobs sends (tjob.api.server.MAX_REPLY)
DEFAULT_GRACE = 10.0
JOB_HELP = "a job id, or a unique prefix of it (at least 8 characters)"

# What `tjob -h` prints: the seed's shape (commands, then options), with our additions.
MAIN_HELP = """\
Usage: tjob [OPTIONS] COMMAND

Run Linux commands as isolated, resource-limited jobs on a tjobs server.

Commands:
  run    [OPTIONS] COMMAND [ARG...]   run a command as a job and print its id
  stop   [OPTIONS] JOB...             stop jobs
  ps     [OPTIONS] [JOB...]           show jobs (all of yours without JOB)
  logs   [OPTIONS] JOB                print a job's output, following it until it ends
  wait   JOB...                       wait for jobs to end; exit with the last one's code
  stats  [OPTIONS] [JOB...]           live resource use of running jobs
  rm     JOB...                       remove finished jobs and their output

Options (before or after COMMAND; -ca, -cert, -host, -key work too):
  --ca FILE       CA cert file (default ".tjob/ca.crt", or $TJOB_CA)
  --cert FILE     cli cert file (default ".tjob/cli.crt", or $TJOB_CERT)
  --host ADDR     server address (default "localhost:8080", or $TJOB_HOST)
  --key FILE      cli key file (default ".tjob/cli.key", or $TJOB_KEY)
  -h, --help      show this help

Run 'tjob COMMAND -h' for a command's options.
"""


class CliError(Exception):
    """An expected failure: printed as ``tjob: MESSAGE`` and exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# --- command line -------------------------------------------------------------------------------


@functools.cache
def _help_width() -> int:
    """The terminal's width for help text, as argparse would take it, less 2 for the margin.

    argparse builds a formatter for every add_argument and asks shutil for the width: an
    import (~2 ms) every command would pay for help it rarely prints.
    """
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return max(int(columns), 40) - 2
    try:
        return max(os.get_terminal_size(sys.stdout.fileno()).columns, 40) - 2
    except (OSError, ValueError, AttributeError):
        return 78


class _Formatter(argparse.HelpFormatter):
    """argparse's help, with the seed's capitalised ``Usage:`` and wider option column."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=_help_width())

    def add_usage(
        self,
        usage: str | None,
        actions: Iterable[argparse.Action],
        groups: Iterable[argparse._MutuallyExclusiveGroup],
        prefix: str | None = None,
    ) -> None:
        super().add_usage(usage, actions, groups, "Usage: " if prefix is None else prefix)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line that points at the help, not argparse's usage dump."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see '{self.prog} -h')", EXIT_USAGE)


def _add_globals(parser: argparse.ArgumentParser, *, show: bool) -> None:
    """``--host/--ca/--cert/--key`` (and hidden ``-host`` ...), defaults left to ``_resolve``.

    SUPPRESS as the default keeps a subcommand's parser from overwriting a value given before
    the subcommand; the environment and built-in defaults are applied afterwards.
    """
    group = parser.add_argument_group("Global options") if show else parser
    metavars = {"host": "ADDR", "ca": "FILE", "cert": "FILE", "key": "FILE"}
    for name, (default, env, text) in GLOBALS.items():
        group.add_argument(
            f"--{name}",
            dest=name,
            metavar=metavars[name],
            default=argparse.SUPPRESS,
            help=f'{text} (default "{default}", or ${env})' if show else argparse.SUPPRESS,
        )
        # The Go prototype's spelling, kept working but out of the help.
        group.add_argument(f"-{name}", dest=name, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _command_parser(
    name: str, usage: str, description: str
) -> tuple[_Parser, argparse._ArgumentGroup]:
    """A command's parser and its "Options" group (global options listed after it)."""
    p = _Parser(
        prog=f"{PROG} {name}",
        usage=f"{PROG} {name} {usage}",
        description=description,
        formatter_class=_Formatter,
        add_help=False,
        allow_abbrev=False,
    )
    p._positionals.title = "Arguments"
    opts = p.add_argument_group("Options")
    opts.add_argument("-h", "--help", action="help", help="show this help")
    _add_globals(p, show=True)
    return p, opts


def main_parser() -> _Parser:
    """The options before COMMAND: the global ones and -h (its help is MAIN_HELP)."""
    p = _Parser(prog=PROG, add_help=False, allow_abbrev=False, formatter_class=_Formatter)
    p.add_argument("-h", "--help", action="store_true")
    _add_globals(p, show=False)
    return p


def run_parser() -> _Parser:
    p, o = _command_parser(
        "run",
        "[OPTIONS] COMMAND [ARG...]",
        "Run COMMAND as a job and print its short id. Everything after COMMAND belongs to the "
        "job: `tjob run ls -la` runs `ls -la`.",
    )
    o.add_argument(
        "-a",
        "--attach",
        action="store_true",
        help="stream the output and exit with the job's exit code (128+signal when killed); "
        "Ctrl+C stops the job, twice detaches",
    )
    o.add_argument("--cpu", type=_count(2**32 - 1), metavar="PCT", help="percent of one CPU")
    o.add_argument(
        "--mem", type=_size(1 << 20, 2**64 - 1), metavar="MB", help="memory in MB (or 512M, 1G)"
    )
    o.add_argument("--pids", type=_count(2**32 - 1), metavar="N", help="most processes")
    o.add_argument(
        "--rbps", type=_size(1, 2**64 - 1), metavar="BYTES", help="disk reads per second (or 20M)"
    )
    o.add_argument(
        "--wbps", type=_size(1, 2**64 - 1), metavar="BYTES", help="disk writes per second"
    )
    o.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="K=V",
        help="set an environment variable (K alone: copy it from here); repeatable",
    )
    o.add_argument("-w", "--workdir", metavar="DIR", default="", help="working directory")
    p.epilog = "Limits not given are the server's defaults; above its caps is refused."
    return p


def stop_parser() -> _Parser:
    p, o = _command_parser("stop", "[OPTIONS] JOB...", "Stop jobs; print each id stopped.")
    o.add_argument(
        "-t",
        "--time",
        type=_grace,
        default=DEFAULT_GRACE,
        metavar="GRACE",
        help=f"seconds between SIGTERM and SIGKILL (default {DEFAULT_GRACE:g})",
    )
    p.add_argument("jobs", nargs="+", metavar="JOB", help=JOB_HELP)
    return p


def ps_parser() -> _Parser:
    p, o = _command_parser(
        "ps",
        "[OPTIONS] [JOB...]",
        "Show the status of the given jobs, or of all your jobs, newest first.",
    )
    out = o.add_mutually_exclusive_group()
    out.add_argument("-q", "--quiet", action="store_true", help="only print ids")
    out.add_argument("--json", action="store_true", help="print the full statuses as JSON")
    p.add_argument("jobs", nargs="*", metavar="JOB", help=JOB_HELP)
    return p


def logs_parser() -> _Parser:
    p, o = _command_parser(
        "logs",
        "[OPTIONS] JOB",
        "Print a job's output from its first byte, following it until the job ends "
        "(Ctrl+C to stop watching).",
    )
    follow = o.add_mutually_exclusive_group()
    follow.add_argument(
        "-f",
        "--follow",
        dest="follow",
        action="store_true",
        default=True,
        help="follow until the job ends (the default)",
    )
    follow.add_argument(
        "--no-follow", dest="follow", action="store_false", help="print what there is and exit"
    )
    which = o.add_mutually_exclusive_group()
    which.add_argument("--stdout", action="store_true", help="only the job's stdout")
    which.add_argument("--stderr", action="store_true", help="only the job's stderr")
    p.add_argument("job", metavar="JOB", help=JOB_HELP)
    return p


def wait_parser() -> _Parser:
    p, _ = _command_parser(
        "wait",
        "JOB...",
        "Wait for jobs to end, print each one's exit code, exit with the last one's.",
    )
    p.add_argument("jobs", nargs="+", metavar="JOB", help=JOB_HELP)
    return p


def rm_parser() -> _Parser:
    p, _ = _command_parser(
        "rm", "JOB...", "Remove finished jobs (their record and output); print each id removed."
    )
    p.add_argument("jobs", nargs="+", metavar="JOB", help=JOB_HELP)
    return p


def stats_parser() -> _Parser:
    p, o = _command_parser(
        "stats",
        "[OPTIONS] [JOB...]",
        "Live resource use of the given jobs, or of all your running jobs, refreshed each "
        "second until Ctrl+C (or until the given jobs end).",
    )
    o.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    p.add_argument("jobs", nargs="*", metavar="JOB", help=JOB_HELP)
    return p


def split_options(
    parser: argparse.ArgumentParser, args: Sequence[str]
) -> tuple[list[str], list[str]]:
    """``args`` cut before the first word that is not an option of ``parser`` or its value.

    argparse alone cannot do this: it classifies every word up front, so a job's own flags
    (``tjob run sh -c ...``) would be taken for abbreviations of ours (``-ca``, ``-cert``).
    A ``--`` ends the options and is dropped.
    """
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            return list(args[:i]), list(args[i + 1 :])
        if not word.startswith("-") or word == "-":
            break
        flag, has_value, _ = word.partition("=")
        action = parser._option_string_actions.get(flag)
        i += 1
        if action is not None and action.nargs != 0 and not has_value:
            i += 1  # its value, whatever it looks like
    return list(args[:i]), list(args[i:])


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line as a namespace with ``command`` (None: print the help) and its options.

    Only the parser of the command given is built (start-up time).
    """
    top = main_parser()
    head, rest = split_options(top, argv)
    args = top.parse_args(head)
    if args.help or not rest:
        args.command = None
        return args
    command, rest = rest[0], rest[1:]
    make = PARSERS.get(command)
    if make is None:
        raise CliError(f"unknown command {command!r} (see 'tjob -h')", EXIT_USAGE)
    args.command = command
    parser = make()
    if command == "run":
        opts, args.argv = split_options(parser, rest)
        parser.parse_args(opts, namespace=args)
        if not args.argv:
            raise CliError("run needs a COMMAND (see 'tjob run -h')", EXIT_USAGE)
    else:
        parser.parse_args(rest, namespace=args)
    return args


PARSERS: dict[str, Callable[[], _Parser]] = {
    "run": run_parser,
    "stop": stop_parser,
    "ps": ps_parser,
    "logs": logs_parser,
    "wait": wait_parser,
    "stats": stats_parser,
    "rm": rm_parser,
}


def _count(maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not 0 < value <= maximum:
            raise argparse.ArgumentTypeError(f"{value} is not between 1 and {maximum}")
        return value

    return parse


_UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


def _size(unit: int, maximum: int) -> Callable[[str], int]:
    """A size in ``unit`` (a bare number) or with a binary suffix: ``512M``, ``1g``, ``20MiB``."""

    def parse(text: str) -> int:
        t = text.strip().upper().removesuffix("B").removesuffix("I")
        digits = t.rstrip("KMGT")
        suffix = t[len(digits) :]
        if not digits.isdigit() or suffix not in _UNITS:
            raise argparse.ArgumentTypeError(f"{text!r} is not a size (like 20, 512M or 1G)")
        n = int(digits)
        value = n if not suffix else (n << _UNITS[suffix]) // unit
        if not 0 < value <= maximum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive size")
        return value

    return parse


def _grace(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


def _resolve(args: argparse.Namespace) -> None:
    """Fill each global option from the command line, else the environment, else the default."""
    for name, (default, env, _text) in GLOBALS.items():
        if getattr(args, name, None) is None:
            setattr(args, name, os.environ.get(env) or default)


# --- the connection -----------------------------------------------------------------------------


class Client:
    """One grpcio channel to tjobs over mutual TLS, and the error translation for its calls."""

    def __init__(self, args: argparse.Namespace) -> None:
        # Before grpc's first import: its C core logs handshake failures on stderr itself,
        # which would add lines to our one-line errors.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
        from tjob.api.tls import client_credentials
        from tjob.errors import TjobError

        self.host: str = args.host
        self.ca: str = args.ca
        self.cert: str = args.cert
        try:
            creds = client_credentials(args.ca, args.cert, args.key)
        except TjobError as err:
            raise CliError(str(err)) from None

        import grpc

        from tjob.api.tjob.v1 import tjob_pb2

        self.pb = tjob_pb2
        self.grpc = grpc
        # No retries: a refused connection should fail now, not after a backoff.
        # The receive limit is what the server may send: no reply of tjobs is over 4 MiB.
        options = [("grpc.enable_retries", 0), ("grpc.max_receive_message_length", MAX_REPLY)]
        self.channel = grpc.secure_channel(args.host, creds, options=options)

    def close(self) -> None:
        self.channel.close()

    def unary(self, method: str, response: Any) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        return self.channel.unary_unary(
            f"/tjob.v1.JobService/{method}",
            request_serializer=_serialize,
            response_deserializer=response.FromString,
        )

    def stream(self, method: str, response: Any) -> grpc.UnaryStreamMultiCallable[Any, Any]:
        return self.channel.unary_stream(
            f"/tjob.v1.JobService/{method}",
            request_serializer=_serialize,
            response_deserializer=response.FromString,
        )

    def error(self, err: grpc.RpcError) -> CliError:
        """The one line a user should see for a failed call."""
        return CliError(describe_rpc_error(err, self.host, self.ca, self.cert))


def _serialize(msg: Any) -> bytes:
    data: bytes = msg.SerializeToString()
    return data


def describe_rpc_error(err: Any, host: str, ca: str, cert: str) -> str:
    """Turn grpcio's status (code and details) into words a user can act on."""
    code = err.code().name if hasattr(err, "code") else "UNKNOWN"
    details: str = (err.details() if hasattr(err, "details") else None) or ""
    if code == "UNAVAILABLE":
        if details == "tjobs is shutting down":
            return details
        where = f"cannot reach tjobs at {host}"
        low = details.lower()
        if "connection refused" in low:
            return f"{where}: connection refused"
        if "certificate_verify_failed" in low:
            why = details.split("CERTIFICATE_VERIFY_FAILED:", 1)[-1].strip().removesuffix(": OK")
            return f"{where}: its certificate is not trusted by CA {ca} ({why})"
        if "hostname verification" in low or "peer name" in low:
            name = host.rsplit(":", 1)[0]
            return f"{where}: its certificate is not valid for the name {name}"
        if "handshake" in low or "ssl" in low:
            return f"{where}: TLS handshake failed ({details})"
        if "connection reset" in low or "socket closed" in low or "end of tcp stream" in low:
            return (
                f"{where}: it closed the connection (does it trust the client certificate {cert}?)"
            )
        if "resolv" in low or "dns" in low:
            return f"{where}: cannot resolve {host.rsplit(':', 1)[0]}"
        if "timeout" in low or "timed out" in low:
            return f"{where}: connection timed out"
        return f"{where}: {details or 'unavailable'}"
    if code == "DEADLINE_EXCEEDED":
        return f"tjobs at {host} did not answer in time"
    if code in ("INTERNAL", "UNKNOWN"):
        return f"server error: {details}" if details else "server error"
    # NOT_FOUND "unauthorized", INVALID_ARGUMENT (limits over caps, bad ids), UNAUTHENTICATED,
    # RESOURCE_EXHAUSTED...: the server's message is written for users.
    return details or code.lower().replace("_", " ")


# --- formatting ---------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """``20s``, ``3m``, ``5h``, ``2d``: the largest whole unit, as ``docker ps`` abbreviated."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def human_bytes(n: float) -> str:
    """``0B``, ``512B``, ``1.5KiB``, ``20MiB``: binary units, at most one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            text = f"{n:.1f}".removesuffix(".0") if unit != "B" else f"{int(n)}"
            return f"{text}{unit}"
        n /= 1024
    raise AssertionError("unreachable")


def status_text(st: JobStatus, now: float) -> str:
    """The STATUS column: ``Running 20s``, ``Exit (3)``, ``Killed (SIGKILL) stopped`` ..."""
    from tjob.status import JobState

    if st.state is JobState.RUNNING:
        return f"Running {human_duration(now - (st.started_at or st.created_at))}"
    if st.state is JobState.FAILED:
        return f"Failed: {st.error or 'did not start'}"
    if st.state is JobState.LOST:
        return f"Lost: {st.error}" if st.error else "Lost"
    if st.oom_killed:
        text = "OOM killed"
    elif st.signal is not None:
        text = f"Killed ({st.signal_name})"
    else:
        text = f"Exit ({st.exit_code})"
    return f"{text} stopped" if st.stopped else text


def command_text(argv: Sequence[str], width: int = COMMAND_WIDTH) -> str:
    """The COMMAND column: the argv as a shell would read it, quoted, cut to ``width``."""
    import shlex

    text = shlex.join(argv)
    if len(text) > width:
        text = text[: width - 3] + "..."
    return f'"{text}"'


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart (the last one unpadded), as ``docker ps``."""
    rows = [list(header), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def ps_table(statuses: Sequence[JobStatus], now: float) -> str:
    header = ["JOB ID", "COMMAND", "CREATED", "STATUS"]
    owners = {st.owner for st in statuses}
    with_owner = len(owners) > 1  # an admin's listing: say whose each job is
    if with_owner:
        header.insert(2, "OWNER")
    rows = []
    for st in statuses:
        row = [
            st.id[:SHORT_ID],
            command_text(st.argv),
            f"{human_duration(now - st.created_at)} ago",
            status_text(st, now),
        ]
        if with_owner:
            row.insert(2, st.owner)
        rows.append(row)
    return table(header, rows)


def stats_table(jobs: Iterable[pb.JobStats]) -> str:
    rows = []
    for j in jobs:
        running = j.state in (0, 1)  # UNSPECIFIED (older servers) or RUNNING
        limit = j.memory_limit_bytes
        mem = human_bytes(j.memory_bytes) + (f" / {human_bytes(limit)}" if limit else "")
        rows.append(
            [
                j.id[:SHORT_ID],
                command_text(j.argv),
                f"{j.cpu_percent:.2f}%" if running else "--",
                mem,
                f"{100 * j.memory_bytes / limit:.2f}%" if limit else "--",
                str(j.pids),
                f"{human_bytes(j.io_read_bytes)} / {human_bytes(j.io_write_bytes)}",
            ]
        )
    header = ["JOB ID", "COMMAND", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS", "BLOCK I/O"]
    return table(header, rows)


def exit_code(st: JobStatus) -> int:
    """The code a shell would give for the job: its exit code, 128+signal, 126/127 if unstarted."""
    code = st.shell_exit_code
    if code is not None:
        return code
    error = st.error or ""
    if "No such file or directory" in error and error.startswith("exec "):
        return EXIT_NOT_FOUND
    return EXIT_CANNOT_EXEC if st.error else EXIT_ERROR


# --- output -------------------------------------------------------------------------------------


def _write(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` unchanged (no text layer, no buffering to flush later)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _warn(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


# --- commands -----------------------------------------------------------------------------------


def cmd_run(c: Client, args: argparse.Namespace) -> int:
    from tjob.status import JobState

    pb = c.pb
    argv = args.argv
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            if key not in os.environ:
                raise CliError(f"-e {key}: no such variable here (give {key}=VALUE)", EXIT_USAGE)
            value = os.environ[key]
        env[key] = value
    limits = pb.Limits(
        cpu_percent=args.cpu or 0,
        memory_mb=args.mem or 0,
        pids=args.pids or 0,
        rbps=args.rbps or 0,
        wbps=args.wbps or 0,
    )
    req = pb.RunRequest(argv=argv, limits=limits, env=env, workdir=args.workdir)
    try:
        msg = c.unary("Run", pb.JobStatus)(req, timeout=CALL_TIMEOUT)
    except c.grpc.RpcError as err:
        raise c.error(err) from None
    st = _status(msg)
    if st.state is JobState.FAILED:
        # It never started (no such command, bad workdir): a shell's 127/126, the id for ps.
        if not args.attach:
            _out(st.id[:SHORT_ID])
        raise CliError(st.error or "the job did not start", exit_code(st))
    if not args.attach:
        _out(st.id[:SHORT_ID])
        return 0
    return _attach(c, st.id)


def _attach(c: Client, job_id: str) -> int:
    """Stream the job's output until it ends and return its exit code, as ``docker run``.

    Ctrl+C asks the server to stop the job (grace 10 s) and keeps streaming, so the output of
    its shutdown and its real exit code still arrive; a second Ctrl+C leaves it running.
    The stream is read on a thread: the main thread stays free to take Ctrl+C without
    interrupting grpcio in the middle of a read.
    """
    import signal
    import threading

    pb = c.pb
    call = c.stream("Logs", pb.LogChunk)(pb.LogsRequest(id=job_id, follow=True))
    done = threading.Event()
    failure: list[BaseException] = []

    def pump() -> None:
        try:
            _copy_chunks(call)
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=pump, name="logs", daemon=True).start()
    stopping: Any = None
    while True:
        try:
            done.wait()
            break
        except KeyboardInterrupt:
            if stopping is not None:
                _cancel(call)
                raise
            _warn(f"stopping job {job_id[:SHORT_ID]} (Ctrl+C again to leave it running)")
            req = pb.StopRequest(id=job_id, grace_seconds=DEFAULT_GRACE)
            # A second Ctrl+C must not land inside grpcio while it starts the call (it could
            # leave the channel locked): hold SIGINT until the call is on its way.
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                stopping = c.unary("Stop", pb.JobStatus).future(req)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    for exc in failure:
        if isinstance(exc, c.grpc.RpcError):
            raise c.error(exc) from None
        raise exc
    try:
        final = c.unary("Wait", pb.JobStatus)(pb.JobRef(id=job_id))
    except c.grpc.RpcError as err:
        raise c.error(err) from None
    return exit_code(_status(final))


def _copy_chunks(chunks: Iterable[pb.LogChunk]) -> None:
    for chunk in chunks:
        if chunk.truncated:
            _warn("the rest of this job's output was not kept (output cap or full disk)")
            continue
        _write(2 if chunk.stream == 2 else 1, chunk.data)  # STREAM_STDERR


def cmd_logs(c: Client, args: argparse.Namespace) -> int:
    pb = c.pb
    streams = (
        pb.STREAM_SELECT_STDOUT
        if args.stdout
        else pb.STREAM_SELECT_STDERR
        if args.stderr
        else pb.STREAM_SELECT_BOTH
    )
    req = pb.LogsRequest(id=args.job, follow=args.follow, streams=streams)
    call = c.stream("Logs", pb.LogChunk)(req)
    try:
        _copy_chunks(call)
    except c.grpc.RpcError as err:
        raise c.error(err) from None
    except BaseException:
        _cancel(call)  # Ctrl+C or a closed pipe: tell the server to stop sending
        raise
    return 0


def _cancel(call: Any) -> None:
    """Cancel a grpcio call (untyped in grpc-stubs)."""
    call.cancel()


def _status(msg: pb.JobStatus) -> JobStatus:
    from tjob.api.convert import status_from_pb

    return status_from_pb(msg)


def _each(
    c: Client, method: str, requests: Sequence[tuple[str, Any]], timeout: float | None
) -> Iterator[tuple[str, JobStatus | None]]:
    """Issue the calls at once (stop or wait on several jobs in parallel); yield in order.

    A call refused for its job (unauthorized, malformed id) prints the reason, prefixed with
    the job when there are several, and yields None for it; any other failure (the server
    cannot be reached) ends the command with one line, not one per job.
    """
    per_job = {"NOT_FOUND", "PERMISSION_DENIED", "INVALID_ARGUMENT", "FAILED_PRECONDITION"}
    call = c.unary(method, c.pb.JobStatus)
    futures = [(ref, call.future(req, timeout=timeout)) for ref, req in requests]
    try:
        for ref, fut in futures:
            try:
                yield ref, _status(fut.result())
            except c.grpc.RpcError as err:
                if err.code().name not in per_job:
                    raise c.error(err) from None
                message = str(c.error(err))
                _warn(f"{ref}: {message}" if len(requests) > 1 else message)
                yield ref, None
    finally:
        for _ref, fut in futures:
            _cancel(fut)


def _ids_of(c: Client, method: str, reqs: Sequence[tuple[str, Any]], timeout: float) -> int:
    """Issue the calls; print each job's short id as its call succeeds."""
    failed = False
    for _ref, st in _each(c, method, reqs, timeout):
        if st is None:
            failed = True
        else:
            _out(st.id[:SHORT_ID])
    return EXIT_ERROR if failed else 0


def cmd_stop(c: Client, args: argparse.Namespace) -> int:
    reqs = [(ref, c.pb.StopRequest(id=ref, grace_seconds=args.time)) for ref in args.jobs]
    return _ids_of(c, "Stop", reqs, args.time + CALL_TIMEOUT)


def cmd_rm(c: Client, args: argparse.Namespace) -> int:
    reqs = [(ref, c.pb.JobRef(id=ref)) for ref in args.jobs]
    return _ids_of(c, "Remove", reqs, CALL_TIMEOUT)


def cmd_wait(c: Client, args: argparse.Namespace) -> int:
    pb = c.pb
    reqs = [(ref, pb.JobRef(id=ref)) for ref in args.jobs]
    code, failed = 0, False
    for _ref, st in _each(c, "Wait", reqs, None):
        if st is None:
            failed = True
            continue
        code = exit_code(st)
        _out(str(code))
    return EXIT_ERROR if failed else code


def cmd_ps(c: Client, args: argparse.Namespace) -> int:
    pb = c.pb
    failed = False
    if args.jobs:
        reqs = [(ref, pb.JobRef(id=ref)) for ref in args.jobs]
        found = list(_each(c, "Status", reqs, CALL_TIMEOUT))
        statuses = [st for _ref, st in found if st is not None]
        failed = len(statuses) < len(found)
        if not statuses:
            return EXIT_ERROR
    else:
        statuses = []
        token = ""
        while True:  # the server answers in pages
            try:
                listing = c.unary("List", pb.ListResponse)(
                    pb.ListRequest(page_token=token), timeout=CALL_TIMEOUT
                )
            except c.grpc.RpcError as err:
                raise c.error(err) from None
            statuses += [_status(m) for m in listing.jobs]
            token = listing.next_page_token
            if not token:
                break
    if args.quiet:
        for st in statuses:
            _out(st.id[:SHORT_ID])
    elif args.json:
        import json

        _out(json.dumps([st.to_dict() for st in statuses], indent=2))
    else:
        _out(ps_table(statuses, time.time()))
    return EXIT_ERROR if failed else 0


def cmd_stats(c: Client, args: argparse.Namespace) -> int:
    pb = c.pb
    req = pb.StatsRequest(ids=args.jobs, stream=not args.no_stream, interval_seconds=1.0)
    call = c.stream("Stats", pb.StatsResponse)(req)
    # A terminal gets docker's redraw in place; a pipe gets one table per sample.
    clear = "\x1b[H\x1b[J" if sys.stdout.isatty() and not args.no_stream else ""
    try:
        for sample in call:
            _out(clear + stats_table(sample.jobs))
    except c.grpc.RpcError as err:
        raise c.error(err) from None
    except BaseException:
        _cancel(call)
        raise
    return 0


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "run": cmd_run,
    "stop": cmd_stop,
    "ps": cmd_ps,
    "logs": cmd_logs,
    "wait": cmd_wait,
    "stats": cmd_stats,
    "rm": cmd_rm,
}


# --- entry point --------------------------------------------------------------------------------


def run(argv: Sequence[str]) -> int:
    """Run one ``tjob`` command line; return its exit code (for callers in this process)."""
    client: Client | None = None
    try:
        args = parse_args(argv)
        if args.command is None:
            (sys.stdout if args.help else sys.stderr).write(MAIN_HELP)
            return 0 if args.help else EXIT_USAGE
        _resolve(args)
        client = Client(args)
        code = COMMANDS[args.command](client, args)
        client.close()
        return code
    except CliError as err:
        _warn(str(err))
        if client is not None:
            client.close()
        return err.code
    except KeyboardInterrupt:
        # Not closing the channel: the interrupt may have left grpcio holding a lock that
        # close() would wait for. The process is ending; the server sees the connection go.
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`tjob logs JOB | head`): quietly, as cat does; point stdout
        # at /dev/null so a later flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """The ``tjob`` console script. Run as the program (no ``argv``), it ends the process itself.

    Ending with ``os._exit`` after flushing skips grpcio's and the interpreter's teardown,
    which measured 20-25 ms, a fifth of a whole ``tjob ps``; nothing of ours needs it.
    """
    if argv is not None:
        return run(argv)
    code = run(sys.argv[1:])
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = EXIT_SIGPIPE
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
