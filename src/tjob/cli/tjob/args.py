"""The ``tjob`` command line: global options, one parser per command, the Go seed's spellings.

Global options (``--host --ca --cert --key``) are accepted before or after the subcommand, in
GNU spelling or the Go prototype's single-dash one (``-cert .tjob/other.crt``), and default to
``$TJOB_HOST`` etc., then the prototype's defaults. Only the parser of the command given is
built, and nothing here imports grpc (start-up time).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

from .errors import EXIT_USAGE, CliError

PROG = "tjob"

# name -> (default, environment variable, help)
GLOBALS: dict[str, tuple[str, str, str]] = {
    "host": ("localhost:8080", "TJOB_HOST", "server address"),
    "ca": (".tjob/ca.crt", "TJOB_CA", "CA cert file"),
    "cert": (".tjob/cli.crt", "TJOB_CERT", "cli cert file"),
    "key": (".tjob/cli.key", "TJOB_KEY", "cli key file"),
}
JOB_HELP = "a job's name or id, or a unique prefix of its id (at least 8 characters)"
FILTER_HELP = "state=STATE, name=GLOB or label=KEY[=VALUE]; repeatable, all must match"
UINT32_MAX = 2**32 - 1  # the proto's Limits fields: cpu_percent and pids are uint32
UINT64_MAX = 2**64 - 1  # memory_mb, rbps, wbps

# The commands `tjob -h` lists: name -> (usage, summary). `__complete` is the shells' helper.
JOB_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("[OPTIONS] COMMAND [ARG...]", "run a command as a job and print its id"),
    "stop": ("[OPTIONS] JOB...", "stop jobs"),
    "ps": ("[OPTIONS] [JOB...]", "show jobs (all of yours without JOB)"),
    "logs": ("[OPTIONS] JOB", "print a job's output, following it until it ends"),
    "wait": ("JOB...", "wait for jobs to end; exit with the last one's code"),
    "stats": ("[OPTIONS] [JOB...]", "live resource use of running jobs"),
    "rm": ("JOB...", "remove finished jobs and their output"),
    "kill": ("[-s SIGNAL] JOB...", "send a signal to jobs (default SIGKILL)"),
    "events": ("[OPTIONS]", "stream your jobs' lifecycle events"),
}
SETUP_COMMANDS: dict[str, tuple[str, str]] = {
    "context": ("add|use|ls|rm|show", "server contexts: addresses with their certificates"),
    "completion": ("bash|zsh|fish", "print a shell completion script"),
    "version": ("", "print the client's and the server's versions"),
}
COMMANDS = JOB_COMMANDS | SETUP_COMMANDS


def _listing(commands: dict[str, tuple[str, str]], width: int) -> str:
    return "".join(f"  {n:<{width}}{u:<{36 - width}}{t}\n" for n, (u, t) in commands.items())


# What `tjob -h` prints: the seed's shape (commands, then options), with our additions.
MAIN_HELP = f"""\
Usage: tjob [OPTIONS] COMMAND

Run Linux commands as isolated, resource-limited jobs on a tjobs server.

Commands:
{_listing(JOB_COMMANDS, 7)}
Setting up:
{_listing(SETUP_COMMANDS, 12)}
Options (before or after COMMAND; -ca, -cert, -host, -key work too):
  --ca FILE       CA cert file (default ".tjob/ca.crt", or $TJOB_CA)
  --cert FILE     cli cert file (default ".tjob/cli.crt", or $TJOB_CERT)
  --context NAME  a stored context (default the current one, or $TJOB_CONTEXT)
  --host ADDR     server address (default "localhost:8080", or $TJOB_HOST)
  --key FILE      cli key file (default ".tjob/cli.key", or $TJOB_KEY)
  -h, --help      show this help
  --version       print the client's and the server's versions

Each of --host, --ca, --cert and --key is taken from its flag, else its environment variable,
else the context in use, else the default.
Run 'tjob COMMAND -h' for a command's options.
"""


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
    """``--host/--ca/--cert/--key`` (and hidden ``-host`` ...), defaults left to ``resolve``.

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
    group.add_argument(
        "--context",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="a stored context (default the current one, or $TJOB_CONTEXT)"
        if show
        else argparse.SUPPRESS,
    )


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
    p.add_argument("--version", action="store_true")
    _add_globals(p, show=False)
    return p


def run_parser() -> _Parser:
    from tjob.cli import flags
    from tjob.units import MIB

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


def kill_parser() -> _Parser:
    from tjob import naming

    p, o = _command_parser(
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


def events_parser() -> _Parser:
    from tjob import events
    from tjob.cli import flags

    p, o = _command_parser(
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


def stop_parser() -> _Parser:
    from tjob.cli import flags
    from tjob.spec import DEFAULT_GRACE

    p, o = _command_parser("stop", "[OPTIONS] JOB...", "Stop jobs; print each id stopped.")
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


def ps_parser() -> _Parser:
    p, o = _command_parser(
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
    p, o = _command_parser(
        "rm", "JOB...", "Remove finished jobs (their record and output); print each id removed."
    )
    _filter_flag(o)
    p.add_argument("jobs", nargs="*", metavar="JOB", help=JOB_HELP + " (or --filter)")
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


def context_parser() -> _Parser:
    from .setupargs import context_parser

    return context_parser()


def completion_parser() -> _Parser:
    from .setupargs import completion_parser

    return completion_parser()


def version_parser() -> _Parser:
    p, _ = _command_parser("version", "[OPTIONS]", "Print the client's version and the server's.")
    return p


PARSERS: dict[str, Callable[[], _Parser]] = {
    "run": run_parser,
    "stop": stop_parser,
    "ps": ps_parser,
    "logs": logs_parser,
    "wait": wait_parser,
    "stats": stats_parser,
    "rm": rm_parser,
    "kill": kill_parser,
    "events": events_parser,
    "context": context_parser,
    "completion": completion_parser,
    "version": version_parser,
}
COMPLETE = "__complete"  # the shells' hidden helper: its words are not parsed here


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
    if args.version and not args.help:
        rest = ["version"]
    if args.help or not rest:
        args.command = None
        return args
    command, rest = rest[0], rest[1:]
    if command == COMPLETE:
        args.command, args.words = command, rest
        return args
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
        if command in ("stop", "rm") and not args.jobs and not args.filters:
            raise CliError(
                f"{command} needs a JOB or a --filter (see 'tjob {command} -h')", EXIT_USAGE
            )
    return args
