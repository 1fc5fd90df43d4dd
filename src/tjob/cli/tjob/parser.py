"""tjob's argparse kit: help in the seed's shape, usage errors as one line, the global options
(``--host --ca --cert --key``, before or after the subcommand, in GNU spelling or the Go
prototype's single-dash one) and a command's parser. Nothing here imports grpc (start-up time).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

from .errors import EXIT_USAGE, CliError

PROG = "tjob"

# name -> (default, environment variable, help)
GLOBALS: dict[str, tuple[str, str, str]] = {
    "host": ("localhost:8080", "TJOB_HOST", "server address"),
    "ca": (".tjob/ca.crt", "TJOB_CA", "CA cert file"),
    "cert": (".tjob/cli.crt", "TJOB_CERT", "cli cert file"),
    "key": (".tjob/cli.key", "TJOB_KEY", "cli key file"),
}


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


class Formatter(argparse.HelpFormatter):
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


class Parser(argparse.ArgumentParser):
    """Usage errors as one line that points at the help, not argparse's usage dump."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see '{self.prog} -h')", EXIT_USAGE)


def add_globals(parser: argparse.ArgumentParser, *, show: bool) -> None:
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


def command_parser(
    name: str, usage: str, description: str
) -> tuple[Parser, argparse._ArgumentGroup]:
    """A command's parser and its "Options" group (global options listed after it)."""
    p = Parser(**parser_style(f"{PROG} {name}", usage, description))
    opts = options_group(p)
    add_globals(p, show=True)
    return p, opts


def parser_style(prog: str, usage: str, description: str) -> dict[str, Any]:
    """The keywords of every tjob parser: ``prog``'s usage and description, our help, no
    abbreviations."""
    return {
        "prog": prog,
        "usage": f"{prog} {usage}",
        "description": description,
        "formatter_class": Formatter,
        "add_help": False,
        "allow_abbrev": False,
    }


def options_group(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``p``'s "Options" group, with -h, after its "Arguments"."""
    p._positionals.title = "Arguments"
    opts = p.add_argument_group("Options")
    opts.add_argument("-h", "--help", action="help", help="show this help")
    return opts


def main_parser() -> Parser:
    """The options before COMMAND: the global ones and -h (its help is MAIN_HELP)."""
    p = Parser(prog=PROG, add_help=False, allow_abbrev=False, formatter_class=Formatter)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--version", action="store_true")
    add_globals(p, show=False)
    return p
