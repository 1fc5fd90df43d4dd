"""The parsers of the commands that set the client up: ``context``, ``completion`` and
``version``.

Apart from :mod:`.jobargs`, the job commands'; built only when given.
"""

from __future__ import annotations

import argparse

from .parser import PROG, Parser, command_parser, options_group, parser_style

CONTEXT_HELP = "a context's name (letters, digits, '.', '_', '-')"


def _action(
    sub: argparse._SubParsersAction[Parser], name: str, usage: str, text: str
) -> tuple[Parser, argparse._ArgumentGroup]:
    """One ``tjob context ACTION`` parser and its "Options" group."""
    summary = text[0].lower() + text[1:].rstrip(".")
    p = sub.add_parser(name, help=summary, **parser_style(f"{PROG} context {name}", usage, text))
    return p, options_group(p)


def context_parser() -> Parser:
    p, _ = command_parser(
        "context",
        "COMMAND [NAME]",
        "Named servers with their certificate files, as `docker context`. The context in use "
        "is --context, else $TJOB_CONTEXT, else the one `tjob context use` chose; each of "
        "--host/--ca/--cert/--key given as a flag or in $TJOB_HOST etc. still wins over it.",
    )
    sub = p.add_subparsers(dest="action", metavar="COMMAND", title="Commands", required=True)
    add, o = _action(
        sub, "add", "NAME --host ADDR [OPTIONS]", "Store a context (file paths made absolute)."
    )
    add.add_argument("name", metavar="NAME", help=CONTEXT_HELP)
    o.add_argument("--host", dest="new_host", metavar="ADDR", required=True, help="server address")
    o.add_argument("--ca", dest="new_ca", metavar="FILE", help="CA cert file")
    o.add_argument("--cert", dest="new_cert", metavar="FILE", help="cli cert file")
    o.add_argument("--key", dest="new_key", metavar="FILE", help="cli key file")
    o.add_argument(
        "--copy",
        action="store_true",
        help="copy the files into the config directory (0600) instead of pointing at them",
    )
    o.add_argument("-f", "--force", action="store_true", help="replace a context of that name")
    use, _ = _action(
        sub, "use", "NAME", "Make NAME the current context ('default': none, the built-ins)."
    )
    use.add_argument("name", metavar="NAME", help=CONTEXT_HELP)
    _, o = _action(sub, "ls", "[-q]", "List the contexts; the current one is marked with *.")
    o.add_argument("-q", "--quiet", action="store_true", help="only print names")
    rm, _ = _action(sub, "rm", "NAME...", "Remove contexts (and the files --copy made).")
    rm.add_argument("names", nargs="+", metavar="NAME", help=CONTEXT_HELP)
    show, _ = _action(
        sub,
        "show",
        "[NAME]",
        "Print a stored context; without NAME, the settings in effect and where each is from.",
    )
    show.add_argument("name", nargs="?", metavar="NAME", help=CONTEXT_HELP)
    return p


def completion_parser() -> Parser:
    p, _ = command_parser(
        "completion",
        "bash|zsh|fish",
        "Print a completion script for the shell: `source <(tjob completion bash)` in "
        "~/.bashrc; `tjob completion zsh > ~/.zfunc/_tjob` (a directory in $fpath); "
        "`tjob completion fish > ~/.config/fish/completions/tjob.fish`.",
    )
    p.add_argument(
        "shell", choices=("bash", "zsh", "fish"), metavar="SHELL", help="bash, zsh or fish"
    )
    return p


def version_parser() -> Parser:
    p, _ = command_parser("version", "[OPTIONS]", "Print the client's version and the server's.")
    return p
