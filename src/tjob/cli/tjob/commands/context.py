"""``tjob context add|use|ls|rm|show``: named servers with their certificate files.

Needs no server. A context stores absolute paths, so it works from any directory; ``--copy``
stores copies (0600) in the config directory instead, so it survives the files it came from.
"""

from __future__ import annotations

import argparse
import os

from .. import contexts
from ..errors import EXIT_USAGE, CliError
from ..parser import GLOBALS
from ..render import escape, out, table, warn
from ..settings import chosen, resolve


def standalone(args: argparse.Namespace) -> int:
    config = contexts.load()
    action = args.action
    if action == "add":
        return add(config, args)
    if action == "use":
        return use(config, args.name)
    if action == "ls":
        return ls(config, args, quiet=args.quiet)
    if action == "rm":
        return rm(config, args.names)
    return show(config, args)


def add(config: contexts.Config, args: argparse.Namespace) -> int:
    name = contexts.check_name(args.name)
    if name in config.contexts and not args.force:
        raise CliError(f"context {name!r} exists (add -f to replace it)", EXIT_USAGE)
    settings = {"host": args.new_host}
    for key in contexts.COPY_NAMES:
        path = getattr(args, f"new_{key}")
        if path is None:
            continue
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            raise CliError(f"--{key} {path}: no such file")
        if not os.access(path, os.R_OK):
            raise CliError(f"--{key} {path}: not readable")
        settings[key] = path
    if name in config.contexts:
        contexts.remove_copies(config, name)
    if args.copy:
        settings = contexts.copy_files(config, name, settings)
    config.contexts[name] = settings
    contexts.save(config)
    out(escape(name))
    return 0


def use(config: contexts.Config, name: str) -> int:
    if name != contexts.DEFAULT:
        config.get(contexts.check_name(name))
    config.current = None if name == contexts.DEFAULT else name
    contexts.save(config)
    out(escape(name))
    if os.environ.get("TJOB_CONTEXT"):
        warn("$TJOB_CONTEXT is set and overrides the current context in this shell")
    return 0


def ls(config: contexts.Config, args: argparse.Namespace, *, quiet: bool) -> int:
    in_use, _why = chosen(args, config)
    names = [contexts.DEFAULT, *sorted(config.contexts)]
    if quiet:
        out("\n".join(escape(n) for n in names))
        return 0
    defaults = {k: v[0] for k, v in GLOBALS.items()}
    rows = []
    for name in names:
        stored = config.contexts.get(name, {})
        mark = " *" if name == (in_use or contexts.DEFAULT) else ""
        host = stored.get("host", defaults["host"])
        rows.append([name + mark, host, stored.get("cert", defaults["cert"])])
    out(table(["NAME", "HOST", "CERT"], rows))
    return 0


def rm(config: contexts.Config, names: list[str]) -> int:
    for name in names:
        config.get(name)
    for name in names:
        del config.contexts[name]
        if config.current == name:
            config.current = None
    contexts.save(config)
    for name in names:
        contexts.remove_copies(config, name)
        out(escape(name))
    return 0


def show(config: contexts.Config, args: argparse.Namespace) -> int:
    """A stored context's settings; without NAME, the ones in effect and where each is from."""
    if args.name is not None:
        stored = config.get(args.name)
        out(table(["SETTING", "VALUE"], [[k, stored[k]] for k in contexts.SETTINGS if k in stored]))
        return 0
    resolve(args, check_files=False)
    rows = [["context", args.context_name or contexts.DEFAULT, args.context_source]]
    for key in contexts.SETTINGS:
        value = getattr(args, key)
        missing = key != "host" and not os.path.exists(value)
        rows.append([key, value + (" (missing)" if missing else ""), args.sources[key]])
    out(table(["SETTING", "VALUE", "FROM"], rows))
    return 0
