"""The ``tjob`` command line: the commands ``tjob -h`` lists, which parser each has, and
:func:`parse_args`, which splits the global options from the command's and builds only the
parser of the command given (start-up time). The parsers are :mod:`.jobargs` and
:mod:`.setupargs`, over the kit of :mod:`.parser`; nothing here imports grpc.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from .errors import EXIT_USAGE, CliError
from .jobargs import (
    attach_parser,
    events_parser,
    kill_parser,
    logs_parser,
    ps_parser,
    rm_parser,
    run_parser,
    stats_parser,
    stop_parser,
    wait_parser,
)
from .parser import Parser, main_parser

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
    "exec": ("[OPTIONS] JOB COMMAND [ARG...]", "run a command inside a running job"),
    "attach": ("[OPTIONS] JOB", "connect to a running -i/-t job's stdin and output"),
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


def context_parser() -> Parser:
    from .setupargs import context_parser

    return context_parser()


def completion_parser() -> Parser:
    from .setupargs import completion_parser

    return completion_parser()


def exec_parser() -> Parser:
    from .execargs import exec_parser

    return exec_parser()


def version_parser() -> Parser:
    from .setupargs import version_parser

    return version_parser()


PARSERS: dict[str, Callable[[], Parser]] = {
    "run": run_parser,
    "stop": stop_parser,
    "ps": ps_parser,
    "logs": logs_parser,
    "wait": wait_parser,
    "stats": stats_parser,
    "rm": rm_parser,
    "kill": kill_parser,
    "events": events_parser,
    "exec": exec_parser,
    "attach": attach_parser,
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
    elif command == "exec":
        opts, words = split_options(parser, rest)
        parser.parse_args(opts + words[:1], namespace=args)
        args.argv = words[1:]
        if not args.argv:
            raise CliError("exec needs a JOB and a COMMAND (see 'tjob exec -h')", EXIT_USAGE)
    else:
        parser.parse_args(rest, namespace=args)
        if command in ("stop", "rm") and not args.jobs and not args.filters:
            raise CliError(
                f"{command} needs a JOB or a --filter (see 'tjob {command} -h')", EXIT_USAGE
            )
    return args
