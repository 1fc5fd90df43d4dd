"""The parsers of the job commands: ``run``, ``kill``, ``events``, ``stop``, ``ps``, ``logs``,
``wait``, ``rm`` and ``stats``. Each is built only when its command is given.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .parser import Parser, command_parser

JOB_HELP = "a job's name or id, or a unique prefix of its id (at least 8 characters)"
FILTER_HELP = "state=STATE, name=GLOB or label=KEY[=VALUE]; repeatable, all must match"
UINT32_MAX = 2**32 - 1  # the proto's Limits fields: cpu_percent and pids are uint32
UINT64_MAX = 2**64 - 1  # memory_mb, rbps, wbps


def run_parser() -> Parser:
    from tjob.cli import flags
    from tjob.units import MIB

    p, o = command_parser(
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
    o.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="send our stdin to the job (EOF closes its stdin); stream its output and exit "
        "with its code, as -a",
    )
    o.add_argument(
        "-t",
        "--tty",
        action="store_true",
        help="give the job a terminal (ours goes raw while attached; TERM passed on); "
        "usually -it. Ctrl-P Ctrl-Q detaches",
    )
    o.add_argument(
        "--detach-keys", metavar="KEYS", help="the detach sequence with -t (default ctrl-p,ctrl-q)"
    )
    o.add_argument("--cpu", type=flags.count(UINT32_MAX), metavar="PCT", help="percent of one CPU")
    o.add_argument(
        "--mem",
        type=flags.size(MIB, maximum=UINT64_MAX),
        metavar="MB",
        help="memory in MB (or 512M, 1G)",
    )
    o.add_argument("--pids", type=flags.count(UINT32_MAX), metavar="N", help="most processes")
    o.add_argument(
        "--rbps",
        type=flags.size(maximum=UINT64_MAX),
        metavar="BYTES",
        help="disk reads per second (or 20M)",
    )
    o.add_argument(
        "--wbps",
        type=flags.size(maximum=UINT64_MAX),
        metavar="BYTES",
        help="disk writes per second",
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
    o.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="NAME:/DIR[:ro|:rw]",
        help="mount the server's volume NAME at DIR (tjobs --volume); repeatable",
    )
    _lifecycle_run_flags(o)
    p.epilog = "Limits not given are the server's defaults; above its caps is refused."
    return p


def _checked(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse ``type=`` from a validator of :mod:`tjob.naming` / :mod:`tjob.filters`:
    its one-line message becomes the usage error (before any call)."""
    from tjob.errors import InvalidSpec

    def check(text: str) -> object:
        try:
            return parse(text)
        except InvalidSpec as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return check


def _lifecycle_run_flags(o: argparse._ArgumentGroup) -> None:
    from tjob import naming
    from tjob.cli import flags

    o.add_argument("--name", type=_checked(naming.check_name), help="a name for the job")
    o.add_argument(
        "-l",
        "--label",
        dest="labels",
        action="append",
        default=[],
        type=_checked(naming.parse_label),
        metavar="K=V",
        help="a label to find the job by; repeatable",
    )
    o.add_argument(
        "--timeout",
        type=flags.duration(),
        metavar="DURATION",
        help="stop the job (as stop does) after this long, e.g. 30s, 10m, 2h",
    )
    o.add_argument(
        "--queue",
        action="store_true",
        help="over a running-job limit, wait in the queue (state queued) rather than be refused",
    )


def _filter_flag(o: argparse._ArgumentGroup) -> None:
    from tjob import filters

    o.add_argument(
        "--filter",
        dest="filters",
        action="append",
        default=[],
        type=_checked(lambda t: str(filters.parse(t) and t)),  # checked, sent as typed
        metavar="FILTER",
        help=FILTER_HELP,
    )


def kill_parser() -> Parser:
    from tjob import naming

    p, o = command_parser(
        "kill",
        "[OPTIONS] JOB...",
        "Send a signal to each job's command (as docker kill: the job is not marked stopped); "
        "print each id.",
    )
    o.add_argument(
        "-s",
        "--signal",
        type=_checked(naming.parse_signal),
        default="KILL",
        metavar="SIGNAL",
        help="a name (TERM, SIGHUP) or number (default KILL)",
    )
    o.add_argument("--all", action="store_true", help="to every process of the job")
    p.add_argument("jobs", nargs="+", metavar="JOB", help=JOB_HELP)
    return p


def events_parser() -> Parser:
    from tjob import events
    from tjob.cli import flags

    p, o = command_parser(
        "events",
        "[OPTIONS]",
        "Print your jobs' lifecycle events as they happen (admins: everyone's), until Ctrl+C.",
    )
    o.add_argument(
        "--filter",
        dest="filters",
        action="append",
        default=[],
        type=_checked(lambda t: (events.parse_filter(t), t)[1]),  # checked, sent as typed
        metavar="FILTER",
        help="kind=KIND, name=GLOB or label=KEY[=VALUE]; repeatable, all must match",
    )
    o.add_argument(
        "--since",
        type=flags.duration(allow_zero=True),
        metavar="DURATION",
        help="first the kept events of this long ago, e.g. 10m, 1h",
    )
    o.add_argument("--json", action="store_true", help="one JSON object per line")
    return p


def stop_parser() -> Parser:
    from tjob.cli import flags
    from tjob.spec import DEFAULT_GRACE

    p, o = command_parser("stop", "[OPTIONS] JOB...", "Stop jobs; print each id stopped.")
    o.add_argument(
        "-t",
        "--time",
        type=flags.duration(allow_zero=True),
        default=DEFAULT_GRACE,
        metavar="GRACE",
        help="seconds (or 90s, 5m) between SIGTERM and SIGKILL "
        f"(default {DEFAULT_GRACE:g}; 0 kills at once)",
    )
    _filter_flag(o)
    p.add_argument("jobs", nargs="*", metavar="JOB", help=JOB_HELP + " (or --filter)")
    return p


def ps_parser() -> Parser:
    p, o = command_parser(
        "ps",
        "[OPTIONS] [JOB...]",
        "Show the status of the given jobs, or of all your jobs, newest first.",
    )
    out = o.add_mutually_exclusive_group()
    out.add_argument("-q", "--quiet", action="store_true", help="only print ids")
    out.add_argument("--json", action="store_true", help="print the full statuses as JSON")
    _filter_flag(o)
    o.add_argument(
        "-a",
        "--all",
        action="store_true",
        help="every job, finished ones too (the default: see README)",
    )
    p.add_argument("jobs", nargs="*", metavar="JOB", help=JOB_HELP)
    return p


def attach_parser() -> Parser:
    p, o = command_parser(
        "attach",
        "[OPTIONS] JOB",
        "Connect to a running job run with -i or -t: its output from now on (tjob logs has the "
        "rest) and, with a terminal, our keyboard to its stdin; exit with its code when it "
        "ends. Ctrl-P Ctrl-Q detaches and leaves it running.",
    )
    o.add_argument(
        "--no-stdin",
        dest="stdin",
        action="store_false",
        help="only read its output (any number of readers; one writer at a time)",
    )
    o.add_argument(
        "--detach-keys", metavar="KEYS", help="the detach sequence (default ctrl-p,ctrl-q)"
    )
    p.add_argument("job", metavar="JOB", help=JOB_HELP)
    return p


def logs_parser() -> Parser:
    p, o = command_parser(
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


def wait_parser() -> Parser:
    p, _ = command_parser(
        "wait",
        "JOB...",
        "Wait for jobs to end, print each one's exit code, exit with the last one's.",
    )
    p.add_argument("jobs", nargs="+", metavar="JOB", help=JOB_HELP)
    return p


def rm_parser() -> Parser:
    p, o = command_parser(
        "rm", "JOB...", "Remove finished jobs (their record and output); print each id removed."
    )
    _filter_flag(o)
    p.add_argument("jobs", nargs="*", metavar="JOB", help=JOB_HELP + " (or --filter)")
    return p


def stats_parser() -> Parser:
    p, o = command_parser(
        "stats",
        "[OPTIONS] [JOB...]",
        "Live resource use of the given jobs, or of all your running jobs, refreshed each "
        "second until Ctrl+C (or until the given jobs end).",
    )
    o.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    p.add_argument("jobs", nargs="*", metavar="JOB", help=JOB_HELP)
    return p
